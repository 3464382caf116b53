// Each provisioner backend on real images: the container sees exactly the tree umoci
// unpack makes of the same image (same busybox listing run inside the container and,
// chrooted, over umoci's rootfs), whiteouts and opaque directories included.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, buildRichImage, saveArchive, umociUnpack } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-backends-");
const images = join(work, "images");
let umoci: { rich: string; busybox: string };

// Mount points and files the runtime provides; they are not part of the image.
const RUNTIME = /^\.\/(proc|sys|dev|mnt\/mesos\/sandbox|etc\/hosts|etc\/resolv\.conf|etc\/hostname)(\/|\|)/;
const LIST =
  "cd / && /bin/busybox find . -xdev | /bin/busybox sort | while read p; do " +
  "t=$(/bin/busybox stat -c '%F' \"$p\"); " +
  'if [ "$t" = \'regular file\' ]; then s="$(/bin/busybox stat -c \'%s\' "$p") $(/bin/busybox md5sum < "$p")"; else s=; fi; ' +
  'if [ "$t" = \'symbolic link\' ]; then l=$(/bin/busybox readlink "$p"); else l=; fi; ' +
  'echo "$p|$t|$(/bin/busybox stat -c \'%a %u %g\' "$p")|$s|$l"; done';

function listing(text: string): string[] {
  return text
    .trim()
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith(".|") && !RUNTIME.test(l));
}

beforeAll(async () => {
  if (!isRoot) return;
  mkdirSync(images);
  buildRichImage(join(work, "rich"), { tag: "1", zstd: false });
  await saveArchive(join(work, "rich"), join(images, "rich.tar"), "rich:latest", { srcTag: "1" });
  buildBusyboxImage(join(work, "bb"), { tag: "1" });
  await saveArchive(join(work, "bb"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  umoci = {
    rich: await umociUnpack(join(work, "rich"), "1", join(work, "umoci-rich")),
    busybox: await umociUnpack(join(work, "bb"), "1", join(work, "umoci-bb")),
  };
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function inContainer(backend: string, image: string): Promise<string[]> {
  const agent = await startAgent({
    args: [
      `--docker_registry=${images}`,
      "--image_providers=docker",
      "--isolation=filesystem/linux,docker/runtime",
      `--image_provisioner_backend=${backend}`,
    ],
  });
  try {
    const id = `${backend}-tree`;
    const launch = await agent.call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: id },
        command: { value: LIST, user: "root" },
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: image } } } },
      },
    });
    expect({ status: launch.status, text: await launch.text() }).toEqual({ status: 200, text: "" });
    const wait = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
    expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
    const out = readFileSync(join(agent.workDir, "containers", id, "stdout"), "utf8");
    expect((await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    return listing(out);
  } finally {
    expect(await agent.stop()).toBe(0);
  }
}

function onHost(rootfs: string): string[] {
  const r = Bun.spawnSync(["chroot", rootfs, "/bin/busybox", "sh", "-c", LIST], { stderr: "pipe" });
  expect(r.stderr.toString()).toBe("");
  return listing(r.stdout.toString());
}

describe.skipIf(!isRoot)("provisioner backends (need root)", () => {
  for (const backend of ["overlay", "copy"]) {
    test(`${backend}: a four-layer image with whiteouts and an opaque dir is the tree umoci makes`, async () => {
      const ours = await inContainer(backend, "rich");
      const theirs = onHost(umoci.rich);
      expect(ours.length).toBeGreaterThan(30);
      expect(ours).toEqual(theirs);
      expect(ours.some((l) => l.startsWith("./etc/rich/old.txt|"))).toBe(false); // whited out
      expect(ours.some((l) => l.startsWith("./opt/opq/a.txt|"))).toBe(false); // under the opaque dir
    });
  }

  test("overlay: the root is a volatile overlay (not synced: the container's writes die with it), and reads back what it wrote", async () => {
    const agent = await startAgent({
      args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
    });
    try {
      const id = "volatile";
      const launch = await agent.call({
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: { value: id },
          command: { value: "echo written > /etc/mine && sync && cat /etc/mine && grep ' / / ' /proc/self/mountinfo" },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
        },
      });
      expect(launch.status).toBe(200);
      const wait = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
      expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
      const [written, root] = readFileSync(join(agent.workDir, "containers", id, "stdout"), "utf8")
        .trim()
        .split("\n");
      expect(written).toBe("written");
      // "<id> <parent> <dev> / / <opts> ... - overlay overlay <super options>"
      expect(root).toMatch(/ - overlay overlay .*\bupperdir=.*\bvolatile\b/);
      expect((await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });

  test("bind: a single-layer image, read-only", async () => {
    const ours = await inContainer("bind", "alpine");
    expect(ours).toEqual(onHost(umoci.busybox));
  });

  test("bind refuses a multi-layer image with a clear 400", async () => {
    const agent = await startAgent({
      args: [
        `--docker_registry=${images}`,
        "--image_providers=docker",
        "--isolation=filesystem/linux,docker/runtime",
        "--image_provisioner_backend=bind",
      ],
    });
    try {
      const r = await agent.call({
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: { value: "multi" },
          command: { value: "true" },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "rich" } } } },
        },
      });
      expect({ status: r.status, text: await r.text() }).toEqual({
        status: 400,
        text: "Multiple layers are not supported by the bind backend",
      });
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });

  const hasAufs = readFileSync("/proc/filesystems", "utf8").includes("\taufs");
  // Where the kernel has aufs this case cannot be shown; this machine's kernel has none.
  test.skipIf(hasAufs)("an explicit backend the kernel lacks stops the agent at start-up", async () => {
    const { runUcr } = await import("../helpers/agent.ts");
    const r = await runUcr(["agent", "--port=0", `--work_dir=${join(work, "aufs")}`, "--image_provisioner_backend=aufs"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flag '--image_provisioner_backend=aufs': the kernel has no aufs filesystem/);
  });
});
