// Recovery reconciles checkpoints, the launcher's pid/status files and what exists under
// --cgroups_root and --work_dir: an agent killed during a pull leaves a container the next
// one reports (destroyed) and REMOVE clears; a checkpoint caught between "launcher asked"
// and "running" is adopted when its workload runs; cgroups, sandboxes, rootfs and runtime
// dirs no checkpoint names are killed and removed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, pushImage } from "../helpers/images.ts";
import { type ProxyServer, startProxy } from "../helpers/proxy.ts";
import { type Registry, startRegistry } from "../helpers/registry.ts";
import {
  NOTHING,
  alpineArchive,
  call,
  cgroupDirsOf,
  dockerArgs,
  eventually,
  isRoot,
  killBody,
  launchBody,
  leftovers,
  listContainers,
  removeBody,
  waitBody,
} from "./support.ts";

const work = tempDir("ucr-recover-");
let images: string;
afterAll(() => rmSync(work, { recursive: true, force: true }));
beforeAll(async () => {
  if (isRoot) images = await alpineArchive(join(work, "images"));
});

/** Agent flags on work dir `wd` (runtime dir inside it), so a restart finds the same state. */
const on = (wd: string, registry = images) => ({
  args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(registry)],
  keepWorkDir: true,
});

async function finish(agent: RunningAgent, wd: string): Promise<void> {
  expect(await agent.stop()).toBe(0);
  rmSync(wd, { recursive: true, force: true });
}

describe.skipIf(!isRoot)("recovery (needs root)", () => {
  test("an agent killed during a pull: the next one reports the container destroyed; REMOVE leaves nothing", async () => {
    const registry: Registry = await startRegistry();
    const layout = join(work, "busybox");
    buildBusyboxImage(layout, { tag: "1" });
    await pushImage(layout, `${registry.host}/slow:1`, { exact: true });
    const proxy: ProxyServer = await startProxy(registry.url, [
      { kind: "throttle", bytesPerSecond: 128 * 1024, path: /\/blobs\//, method: "GET", times: 1 },
    ]);
    const wd = join(work, "wd-pull");
    try {
      const first = await startAgent(on(wd, proxy.url));
      const launching = first.call(launchBody("pulling", "sleep 300", { image: "slow:1" })).catch(() => undefined);
      expect(await eventually(() => proxy.requests().some((r) => /\/blobs\//.test(r.path) && r.bytes > 0), 20_000)).toBe(true);
      expect(await first.stop("SIGKILL")).toBe(137);
      await launching;

      for (let restart = 0; restart < 2; restart++) {
        // Twice: the terminated record outlives another restart, unchanged.
        const again = await startAgent(on(wd, proxy.url));
        try {
          expect(await listContainers(again)).toEqual([{ id: "pulling", running: false }]);
          expect((await call(again, waitBody("pulling"))).json).toEqual({
            type: "WAIT_CONTAINER",
            wait_container: {
              state: "TASK_FAILED",
              reason: "REASON_CONTAINER_LAUNCH_FAILED",
              message: expect.stringMatching(/^The agent restarted while the container was being provisioned .*; it was destroyed$/),
            },
          });
          expect(leftovers(wd, again.cgroupsRoot!)).toEqual({ ...NOTHING, runtimeDirs: ["pulling"] });
          if (restart === 0)
            expect(again.log()).toMatch(/container pulling: the agent stopped while it was being provisioned; destroying it/);
          if (restart === 1) {
            expect((await call(again, removeBody("pulling"))).status).toBe(200);
            expect(leftovers(wd, again.cgroupsRoot!)).toEqual(NOTHING);
            expect(await listContainers(again)).toEqual([]);
          }
        } finally {
          expect(await again.stop()).toBe(0);
        }
      }
    } finally {
      rmSync(wd, { recursive: true, force: true });
      await proxy.stop();
      await registry.stop();
    }
  }, 90_000);

  test("caught between 'launcher asked' and 'running': adopted if its workload runs, destroyed (and said so) if not", async () => {
    const wd = join(work, "wd-launching");
    const first = await startAgent(on(wd));
    for (const id of ["runs", "never", "stranger"])
      expect((await call(first, launchBody(id, "sleep 300", { image: "alpine" }))).status).toBe(200);
    const pid = (id: string) => Number(readFileSync(join(wd, "run/containers", id, "pid"), "utf8"));
    const pids = { runs: pid("runs"), never: pid("never"), stranger: pid("stranger") };
    expect(await first.stop("SIGKILL")).toBe(137);

    // What an agent killed right after asking the launcher leaves: a LAUNCHING checkpoint
    // without a pid. "never": the launcher had not started it. "stranger": its pid file
    // names a process that is not the container's (a pid reused since).
    const stranger = Bun.spawn(["sleep", "300"]);
    for (const id of ["runs", "never", "stranger"] as const) {
      const file = join(wd, "run/containers", id, "container.json");
      const record = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      expect(record).toMatchObject({ version: 1 });
      delete record.pid;
      delete record.pidStart;
      writeFileSync(file, JSON.stringify({ ...record, state: "LAUNCHING" }));
    }
    process.kill(pids.never, "SIGKILL");
    process.kill(pids.stranger, "SIGKILL");
    expect(
      await eventually(() => existsSync(join(wd, "run/containers/never/status")) && existsSync(join(wd, "run/containers/stranger/status"))),
    ).toBe(true);
    for (const f of ["pid", "status"]) rmSync(join(wd, "run/containers/never", f));
    rmSync(join(wd, "run/containers/stranger/status"));
    writeFileSync(join(wd, "run/containers/stranger/pid"), `${stranger.pid}\n`);

    const second = await startAgent(on(wd));
    try {
      const listed = await listContainers(second);
      expect(listed.sort((a, b) => a.id.localeCompare(b.id))).toEqual([
        { id: "never", running: false },
        { id: "runs", pid: pids.runs, running: true },
        { id: "stranger", running: false },
      ]);
      for (const id of ["never", "stranger"]) {
        expect((await call(second, waitBody(id))).json?.wait_container).toMatchObject({
          state: "TASK_FAILED",
          reason: "REASON_CONTAINER_LAUNCH_FAILED",
          message: "The agent restarted while the container was being launched; it was destroyed",
        });
      }
      expect(stranger.exitCode).toBeNull(); // not the container's: left alone
      expect((await call(second, killBody("runs"))).status).toBe(200);
      expect((await call(second, waitBody("runs"))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
      for (const id of ["runs", "never", "stranger"]) expect((await call(second, removeBody(id))).status).toBe(200);
      expect(leftovers(wd, second.cgroupsRoot!)).toEqual(NOTHING);
    } finally {
      stranger.kill("SIGKILL");
      await finish(second, wd);
    }
  }, 60_000);

  test("what no checkpoint names is taken apart: a cgroup with a process, a sandbox, a mounted rootfs dir, a runtime dir", async () => {
    const wd = join(work, "wd-orphans");
    const first = await startAgent(on(wd));
    const root = first.cgroupsRoot!;
    expect(await first.stop()).toBe(0);

    // A cgroup under the agent's root with a process in it, as an older agent's orphan.
    const orphan = Bun.spawn(["sleep", "300"]);
    for (const d of cgroupDirsOf(root)) {
      mkdirSync(join(d, "ghost"), { recursive: true });
      writeFileSync(join(d, "ghost", "cgroup.procs"), String(orphan.pid));
    }
    mkdirSync(join(wd, "containers/lost-sandbox"), { recursive: true });
    writeFileSync(join(wd, "containers/lost-sandbox/stdout"), "hello\n");
    const rootfs = join(wd, "provisioner/containers/lost-rootfs/backends/overlay/rootfses/x");
    mkdirSync(rootfs, { recursive: true });
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "tmpfs", rootfs]).exitCode).toBe(0);
    mkdirSync(join(wd, "run/containers/lost-runtime"), { recursive: true });
    writeFileSync(join(wd, "run/containers/lost-runtime/launch.json"), "{}");

    const second = await startAgent(on(wd));
    try {
      expect(await orphan.exited).toBe(137);
      expect(leftovers(wd, second.cgroupsRoot!)).toEqual(NOTHING);
      expect(await listContainers(second)).toEqual([]);
      const log = second.log();
      expect(log).toMatch(/cgroup ghost under --cgroups_root=\S+ belongs to no container; killing its 1 process\(es\) and removing it/);
      expect(log).toMatch(/sandbox \S+lost-sandbox belongs to no container; removing it/);
      expect(log).toMatch(/rootfs dir \S+lost-rootfs belongs to no container; removing it/);
      expect(log).toMatch(/unmounted \S+lost-rootfs\/backends\/overlay\/rootfses\/x/);
      expect(log).toMatch(/container lost-runtime: a runtime dir without a checkpoint/);
    } finally {
      orphan.kill("SIGKILL");
      await finish(second, wd);
    }
  }, 60_000);
});
