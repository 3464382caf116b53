// The store holds setuid-root binaries and device nodes from image layers: no other local user
// may reach them. Store and runtime dirs are 0700 (0711 where a container's user passes to its
// sandbox), made so by the agent and by `ucr pull`, tightened when found looser, refused when
// owned by someone else; and containers still run on every backend, as root and as nobody.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { BUSYBOX_CONFIG, addImage, buildBusyboxImage, packTar, pushImage, saveArchive } from "../helpers/images.ts";
import { startRegistry, type Registry } from "../helpers/registry.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-perms-");
let registry: Registry;
const images = join(work, "images");

beforeAll(async () => {
  registry = await startRegistry();
  const suid = await packTar([
    { name: "usr/", type: "directory" },
    { name: "usr/bin/", type: "directory" },
    { name: "usr/bin/su-like", content: "#!/bin/sh\n", mode: 0o4755 },
    { name: "dev-mem", type: "character-device", devmajor: 1, devminor: 1, mode: 0o666 },
    { name: "disk", type: "block-device", devmajor: 8, devminor: 0, mode: 0o666 },
  ]);
  addImage(join(work, "suid"), {
    tag: "1",
    layers: [{ tar: suid, compression: "gzip" }],
    config: BUSYBOX_CONFIG,
  });
  await pushImage(join(work, "suid"), `${registry.host}/suid:1`, { exact: true });
  if (isRoot) {
    mkdirSync(images);
    buildBusyboxImage(join(work, "bb"), { tag: "1" });
    await saveArchive(join(work, "bb"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  }
});
afterAll(async () => {
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
});

const mode = (p: string) => statSync(p).mode & 0o7777;

/** Runs a command as uid/gid 65534 with no groups (what any local user could do). */
function asNobody(cmd: string[]): { code: number; stderr: string } {
  const r = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", ...cmd], { stderr: "pipe" });
  return { code: r.exitCode, stderr: r.stderr.toString() };
}

describe("ucr pull", () => {
  test("makes the store 0700: the setuid file and device nodes it unpacks are out of other users' reach", async () => {
    const root = join(work, "pull-1");
    const r = await runUcr(["pull", `${registry.host}/suid:1`, `--work_dir=${root}`]);
    expect(r.code).toBe(0);
    const store = join(root, "store/docker");
    expect(mode(store)).toBe(0o700);
    const [layer] = readdirSync(join(store, "layers"));
    const rootfs = join(store, "layers", layer!, "rootfs");
    // Kept as the image says (a container may need them) ...
    expect(mode(join(rootfs, "usr/bin/su-like"))).toBe(0o4755);
    expect(lstatSync(join(rootfs, "dev-mem")).isCharacterDevice()).toBe(true);
    expect(lstatSync(join(rootfs, "disk")).isBlockDevice()).toBe(true);
    // ... but nobody else gets there.
    if (isRoot) {
      for (const p of [join(rootfs, "usr/bin/su-like"), join(rootfs, "dev-mem"), join(rootfs, "disk")]) {
        const seen = asNobody(["stat", p]);
        expect(seen.code).not.toBe(0);
        expect(seen.stderr).toContain("Permission denied");
      }
    }
  });

  test("tightens a store left 0755 by an older version, and says so", async () => {
    const root = join(work, "pull-2");
    const store = join(root, "store/docker");
    mkdirSync(store, { recursive: true, mode: 0o755 });
    chmodSync(store, 0o755);
    const r = await runUcr(["pull", `${registry.host}/suid:1`, `--work_dir=${root}`]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`ucr pull: --docker_store_dir ${store}: mode 0755 changed to 0700`);
    expect(mode(store)).toBe(0o700);
  });

  test.skipIf(!isRoot)("refuses a store that belongs to another user (needs root)", async () => {
    const root = join(work, "pull-3");
    const store = join(root, "store/docker");
    mkdirSync(store, { recursive: true });
    chownSync(store, 65534, 65534);
    const r = await runUcr(["pull", `${registry.host}/suid:1`, `--work_dir=${root}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `ucr pull: cannot open the image store at ${store}: ${store} belongs to uid 65534, not to this process (uid 0)`,
    );
    expect(readdirSync(store)).toEqual([]);
  });
});

describe.skipIf(!isRoot)("the agent (needs root)", () => {
  test("creates its directories private, and tightens those it finds loose", async () => {
    const wd = join(work, "agent-wd");
    mkdirSync(join(wd, "provisioner"), { recursive: true });
    chmodSync(wd, 0o755);
    chmodSync(join(wd, "provisioner"), 0o777);
    const agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${join(work, "agent-run")}`], keepWorkDir: true });
    try {
      expect(mode(wd)).toBe(0o711);
      expect(mode(join(wd, "containers"))).toBe(0o711);
      expect(mode(join(wd, "provisioner"))).toBe(0o700);
      expect(mode(join(wd, "store/docker"))).toBe(0o700);
      expect(mode(join(work, "agent-run"))).toBe(0o700);
      expect(mode(join(work, "agent-run/containers"))).toBe(0o700);
      expect(agent.log()).toContain(`--work_dir ${join(wd, "provisioner")}: mode 0777 changed to 0700`);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });

  for (const backend of ["overlay", "copy", "bind"]) {
    for (const user of ["root", "nobody"]) {
      test(`a container runs on the ${backend} backend as ${user}`, async () => {
        const agent = await startAgent({
          args: [
            `--docker_registry=${images}`,
            "--image_providers=docker",
            "--isolation=filesystem/linux,docker/runtime",
            `--image_provisioner_backend=${backend}`,
          ],
        });
        try {
          const id = `${backend}-${user}`;
          const launch = await agent.call({
            type: "LAUNCH_CONTAINER",
            launch_container: {
              container_id: { value: id },
              command: { value: "id -u; ls /bin/sh; test -r /etc/passwd && echo readable", user },
              container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
            },
          });
          expect({ status: launch.status, text: await launch.text() }).toEqual({ status: 200, text: "" });
          const wait = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
          expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
          const out = readFileSync(join(agent.workDir, "containers", id, "stdout"), "utf8")
            .trim()
            .split("\n")
            .map((l) => l.trim());
          expect(out).toEqual([user === "root" ? "0" : "65534", "/bin/sh", "readable"]);
          expect(mode(join(agent.workDir, "store/docker"))).toBe(0o700);
          expect(existsSync(join(agent.workDir, "provisioner"))).toBe(true);
          expect(mode(join(agent.workDir, "provisioner"))).toBe(0o700);
          expect((await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
        } finally {
          expect(await agent.stop()).toBe(0);
        }
      });
    }
  }
});
