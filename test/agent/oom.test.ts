// OOM of any process ends the container, as Mesos' memory isolator does on its OOM event:
// a child killed by the OOM killer while PID 1 lives on destroys the container, and WAIT
// reports TASK_FAILED / REASON_CONTAINER_LIMITATION_MEMORY; OOM kills counted before the
// launch (a cgroup directory left with that name) do not make a clean exit an OOM; one
// that happened while no agent ran is acted on by the next.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import {
  NOTHING,
  alpineArchive,
  call,
  cgroupDirsOf,
  dockerArgs,
  eventually,
  isRoot,
  launchBody,
  leftovers,
  listContainers,
  removeBody,
  waitBody,
} from "./support.ts";

const work = tempDir("ucr-oom-");
let images: string;
let agent: RunningAgent;

beforeAll(async () => {
  if (!isRoot) return;
  images = await alpineArchive(join(work, "images"));
  agent = await startAgent({ args: dockerArgs(images) });
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

const mem = (mb: number) => ({ resources: [{ name: "mem", type: "SCALAR", scalar: { value: mb } }] });
/** A subshell that doubles a string until the OOM killer stops it. */
const HOG = "(x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done)";
const OOM_WAIT = (mb: number) => ({
  type: "WAIT_CONTAINER",
  wait_container: {
    exit_status: 9,
    state: "TASK_FAILED",
    reason: "REASON_CONTAINER_LIMITATION_MEMORY",
    limitation: { resources: [{ name: "mem", type: "SCALAR", scalar: { value: mb } }] },
    message: expect.stringContaining("Memory limit exceeded"),
  },
});

/** The container's memory cgroup directory (the memory hierarchy on v1). */
function memoryCgroup(root: string, id: string): string {
  const dirs = cgroupDirsOf(root);
  return join(dirs.find((d) => d.includes("/memory/")) ?? dirs[0]!, id);
}

function oomKills(dir: string): number {
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
  const text = readFileSync(join(dir, v2 ? "memory.events" : "memory.oom_control"), "utf8");
  return Number(/^oom_kill (\d+)/m.exec(text)?.[1] ?? 0);
}

describe.skipIf(!isRoot)("OOM (needs root and the memory controller)", () => {
  test("a child OOM-killed while PID 1 lives on: the container is destroyed with Mesos' memory limitation", async () => {
    // PID 1 would sleep on and exit 0; the OOM event ends it first.
    const r = await call(agent, launchBody("child-oom", `${HOG}; echo survived; sleep 10; exit 0`, { image: "alpine", extra: mem(48) }));
    expect({ status: r.status, text: r.text }).toEqual({ status: 200, text: "" });
    expect((await call(agent, waitBody("child-oom"))).json).toEqual(OOM_WAIT(48));
    expect(oomKills(memoryCgroup(agent.cgroupsRoot!, "child-oom"))).toBeGreaterThan(0);
    expect((await call(agent, removeBody("child-oom"))).status).toBe(200);
  }, 60_000);

  test("OOM kills counted before the launch are not the container's: its exit 0 is an exit 0", async () => {
    // A cgroup directory of that name already holds an OOM kill (a process run into its limit).
    const dir = memoryCgroup(agent.cgroupsRoot!, "clean-exit");
    mkdirSync(dir, { recursive: true });
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
    writeFileSync(join(dir, v2 ? "memory.max" : "memory.limit_in_bytes"), String(16 * 1048576));
    const hog = Bun.spawn(["sh", "-c", `echo $$ > ${join(dir, "cgroup.procs")}; ${HOG}`], { stdout: "ignore", stderr: "ignore" });
    await hog.exited;
    expect(oomKills(dir)).toBeGreaterThan(0);

    const r = await call(agent, launchBody("clean-exit", "exit 0", { image: "alpine", extra: mem(64) }));
    expect({ status: r.status, text: r.text }).toEqual({ status: 200, text: "" });
    expect((await call(agent, waitBody("clean-exit"))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
    expect((await call(agent, removeBody("clean-exit"))).status).toBe(200);
  }, 60_000);

  test("an OOM kill while no agent ran: the next agent destroys the container and reports it", async () => {
    const wd = join(work, "wd-restart");
    const args = [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(images)];
    const first = await startAgent({ args, keepWorkDir: true });
    // The hog starts once the agent is gone (the marker appears in the sandbox).
    const script = `while [ ! -e $MESOS_SANDBOX/go ]; do sleep 0.05; done; ${HOG}; sleep 30; exit 0`;
    expect((await call(first, launchBody("away", script, { image: "alpine", extra: mem(48) }))).status).toBe(200);
    expect(await first.stop("SIGKILL")).toBe(137);
    writeFileSync(join(wd, "containers", "away", "go"), "");
    const dir = memoryCgroup(first.cgroupsRoot!, "away");
    expect(await eventually(() => oomKills(dir) > 0, 30_000)).toBe(true);

    const second = await startAgent({ args, keepWorkDir: true });
    try {
      expect((await call(second, waitBody("away"))).json).toEqual(OOM_WAIT(48));
      expect((await listContainers(second)).map((c) => c.id)).toEqual(["away"]);
      expect((await call(second, removeBody("away"))).status).toBe(200);
      expect(leftovers(wd, second.cgroupsRoot!)).toEqual(NOTHING);
    } finally {
      expect(await second.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  }, 90_000);
});
