// Stopping and starting: SIGTERM stops the agent even with a WAIT_CONTAINER blocked (the
// WAIT's connection is closed, the container keeps running and the next agent recovers it); start-up
// does not wait for, or depend on, what an earlier image GC left to delete.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { alive } from "../../src/util/process.ts";
import {
  NOTHING,
  alpineArchive,
  call,
  dockerArgs,
  isRoot,
  killBody,
  launchBody,
  leftovers,
  listContainers,
  removeBody,
  waitBody,
} from "./support.ts";

const work = tempDir("ucr-shutdown-");
let images: string;
/** A file made immutable for a test; made mutable again whatever happens. */
let pinned: string | undefined;
afterAll(() => {
  if (pinned) Bun.spawnSync(["chattr", "-i", pinned]);
  rmSync(work, { recursive: true, force: true });
});
beforeAll(async () => {
  if (isRoot) images = await alpineArchive(join(work, "images"));
});

const on = (wd: string) => ({ args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(images)], keepWorkDir: true });

describe.skipIf(!isRoot)("stopping and starting (needs root)", () => {
  test("SIGTERM with a WAIT blocked: the WAIT's connection is closed, the agent exits 0, the container runs on and is recovered", async () => {
    const wd = join(work, "wd-term");
    const first = await startAgent(on(wd));
    expect((await call(first, launchBody("sleeper", "exec sleep 300", { image: "alpine" }))).status).toBe(200);
    const [listed] = await listContainers(first);
    const pid = listed!.pid!;
    // WAIT answers its status line and headers at once (a Go client gives up after 15 s without
    // them) and its body at exit: the 200 is out before the agent is told to stop.
    const waiting = await first.callStreaming(waitBody("sleeper"));
    expect(waiting.status).toBe(200);
    const body = waiting.text().then(
      (text) => ({ closed: false, text }),
      (err: Error) => ({ closed: true, text: err.message }),
    );
    await Bun.sleep(200); // the WAIT is in, blocked on a container that will not exit
    first.proc.kill("SIGTERM");
    // A bound, not a measurement: the old agent never exited here at all.
    const code = await Promise.race([first.proc.exited, Bun.sleep(15_000).then(() => "still running")]);
    if (code === "still running") first.proc.kill("SIGKILL");
    expect(code).toBe(0);
    // Its connection is closed without a body: no made-up exit status; the client asks the next agent.
    const answer = await body;
    expect(answer.closed || !answer.text.includes("exit_status")).toBe(true);
    // A WAIT that arrives once the agent is stopping gets Mesos' 503 (see server.test.ts).
    expect(await first.stop()).toBe(0);
    expect(first.log()).toContain("agent stopped");
    expect(alive(pid)).toBe(true);

    const second = await startAgent(on(wd));
    try {
      expect(await listContainers(second)).toEqual([{ id: "sleeper", pid, running: true }]);
      expect((await call(second, killBody("sleeper"))).status).toBe(200);
      expect((await call(second, waitBody("sleeper"))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
      expect((await call(second, removeBody("sleeper"))).status).toBe(200);
      expect(leftovers(wd, second.cgroupsRoot!)).toEqual(NOTHING);
    } finally {
      expect(await second.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  }, 60_000);

  test("start-up does not depend on an earlier GC's leftovers: it serves, and a prune queues behind them", async () => {
    const wd = join(work, "wd-gc");
    const gcDir = join(wd, "store/docker/gc");
    // What an agent killed mid-sweep leaves, made undeletable for now (immutable file).
    const stuck = join(gcDir, `${"c".repeat(64)}.1`, "rootfs");
    mkdirSync(stuck, { recursive: true });
    writeFileSync(join(stuck, "pinned"), "x");
    mkdirSync(join(gcDir, `${"d".repeat(64)}.2`, "rootfs/deep"), { recursive: true });
    pinned = join(stuck, "pinned");
    expect(Bun.spawnSync(["chattr", "+i", pinned]).exitCode).toBe(0);
    try {
      const agent = await startAgent(on(wd));
      try {
        expect((await call(agent, { type: "GET_HEALTH" })).status).toBe(200);
        expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
        const failed = /image gc: removing an earlier run's leftovers failed: removed 1, but not c{64}\.1: rm: cannot remove .*pinned/;
        expect(agent.log()).toMatch(failed);
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    } finally {
      Bun.spawnSync(["chattr", "-i", pinned]);
    }
    const again = await startAgent(on(wd));
    try {
      expect((await call(again, { type: "PRUNE_IMAGES" })).status).toBe(200); // queued behind the cleanup
      expect(readdirSync(gcDir)).toEqual([]);
      expect(again.log()).toMatch(/image gc: removed 1 leftover\(s\) of an earlier run's sweep/);
    } finally {
      expect(await again.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  }, 60_000);
});
