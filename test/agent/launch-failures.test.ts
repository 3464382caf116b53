// A launch that fails at any step leaves nothing: refused resources (the kernel rejects a
// limit after the cgroup was made), a pull error, a provisioning error (bind backend with
// two layers), a URI that cannot be fetched, and a setup error in the init stage. After
// each: no cgroup dir, sandbox, rootfs dir, runtime dir or mount, and WAIT answers 404.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { ContainerCgroup, detectCgroups } from "../../src/runtime/cgroups.ts";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { BUSYBOX_CONFIG, addImage, busyboxLayerTar, saveArchive, tarDir } from "../helpers/images.ts";
import { NOTHING, alpineArchive, call, cgroupDirsOf, dockerArgs, isRoot, launchBody, leftovers } from "./support.ts";

const work = tempDir("ucr-failures-");
let images: string;
let agent: RunningAgent;

beforeAll(async () => {
  if (!isRoot) return;
  images = await alpineArchive(join(work, "images"));
  // Two layers: the bind backend takes one only.
  const src = join(work, "src");
  mkdirSync(src, { recursive: true });
  await Bun.write(join(src, "extra.txt"), "extra\n");
  const layout = join(work, "layout-two");
  addImage(layout, {
    tag: "1",
    layers: [
      { tar: busyboxLayerTar(), compression: "gzip" },
      { tar: tarDir(src), compression: "gzip" },
    ],
    config: BUSYBOX_CONFIG,
  });
  await saveArchive(layout, join(images, "two.tar"), "two:latest", { srcTag: "1" });
  agent = await startAgent({ args: dockerArgs(images) });
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

async function expectFailsCleanly(a: RunningAgent, id: string, body: unknown, status: number[], why: RegExp): Promise<void> {
  const r = await call(a, body);
  expect(status).toContain(r.status);
  expect(r.text).toMatch(why);
  expect(leftovers(a.workDir, a.cgroupsRoot!)).toEqual(NOTHING);
  expect((await call(a, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } })).status).toBe(404);
}

describe.skipIf(!isRoot)("failed launches leave nothing (needs root)", () => {
  test("a cgroup the kernel refuses a limit for is removed before the error is reported", () => {
    const layout = detectCgroups();
    if (layout.kind === "none") throw new Error(`no cgroups here: ${layout.why}`);
    const root = `ucr-test/${work.split("/").pop()}-unit`;
    expect(() => ContainerCgroup.create(layout, root, "refused", { memBytes: -5 * 1048576, cfs: false })).toThrow();
    for (const d of ContainerCgroup.dirsFor(layout, root, "refused")) expect(existsSync(d)).toBe(false);
    for (const d of cgroupDirsOf(root)) if (existsSync(d)) rmdirSync(d);
  });

  test("refused resources, a pull error, an unfetchable URI, a setup error in the init stage", async () => {
    const alpine = { image: "alpine" };
    await expectFailsCleanly(
      agent,
      "neg-mem",
      launchBody("neg-mem", "true", { ...alpine, extra: { resources: [{ name: "mem", type: "SCALAR", scalar: { value: -5 } }] } }),
      // The kernel refuses the limit (500), or the API's schema does before it gets there (400).
      [400, 500],
      /mem|memory|cgroup/i,
    );
    await expectFailsCleanly(
      agent,
      "no-image",
      launchBody("no-image", "true", { image: "nothere" }),
      [400],
      /Failed to find archive for image 'nothere'/,
    );
    await expectFailsCleanly(
      agent,
      "bad-uri",
      launchBody("bad-uri", "", { ...alpine, extra: { command: { value: "true", uris: [{ value: join(work, "no-such-file") }] } } }),
      [400],
      /Failed to fetch '.*no-such-file'/,
    );
    // A mount point under a file of the image: the init stage cannot make it.
    await expectFailsCleanly(
      agent,
      "bad-setup",
      launchBody("bad-setup", "true", {
        extra: {
          container: {
            type: "MESOS",
            mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } },
            volumes: [{ container_path: "/bin/busybox/under-a-file", host_path: work, mode: "RO" }],
          },
        },
      }),
      [400],
      /container setup failed: .*under-a-file/,
    );
  }, 60_000);

  test("a provisioning error (the bind backend and an image of two layers)", async () => {
    const bind = await startAgent({ args: dockerArgs(images, ["--image_provisioner_backend=bind"]) });
    try {
      await expectFailsCleanly(
        bind,
        "two",
        launchBody("two", "true", { image: "two" }),
        [400],
        /Multiple layers are not supported by the bind backend/,
      );
    } finally {
      expect(await bind.stop()).toBe(0);
    }
  }, 60_000);
});
