// The container launcher under faults, for real (root: namespaces, a tmpfs of our own): a
// status file that cannot be written (full or read-only runtime dir) does not end it; its
// SIGKILL loses no exit status; its descriptors stay flat over thousands of launches, also
// under a 256-file limit. Containers here run without an image (on the host's filesystem).
import { afterAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { runCommand } from "../helpers/command.ts";
import { UCR, requireBinary } from "../helpers/agent.ts";
import { Confinement } from "../../src/agent/confinement.ts";
import { loadFlags } from "../../src/config/flags.ts";
import { call as api } from "../agent/support.ts";
import { launcherAlive } from "../../src/runtime/launcher.ts";

const DEFAULT_CONFINE = new Confinement(loadFlags(["--work_dir=/tmp"], {}).values).forLaunch(undefined, "launcher-test");

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-launcher-");
const mounted: string[] = [];
afterAll(async () => {
  for (const m of mounted.reverse()) await runCommand(["umount", "-l", m]);
  rmSync(work, { recursive: true, force: true });
});

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "";
  }
};
/** Its parent's pid; 0 once it is gone (processes end while a listing is read). */
const ppid = (pid: number) => {
  try {
    return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  } catch {
    return 0;
  }
};
const alive = (pid: number) => {
  try {
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false; // gone
  }
};
const pids = () =>
  readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number);

/** The `ucr __launcher --serve` process serving `socket` (and its reaper, its parent). */
async function findLauncher(socket: string): Promise<{ launcher: number; reaper: number }> {
  for (let i = 0; i < 200; i++) {
    const launcher = pids().find((p) => cmdline(p).includes(`__launcher --serve ${socket}`));
    if (launcher) return { launcher, reaper: ppid(launcher) };
    await Bun.sleep(25);
  }
  throw new Error(`no launcher serves ${socket}`);
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}

/** A container that runs until `<sandbox>/go` exists, then exits with `code` (or kills itself with a signal). */
function gated(id: string, end: string) {
  return {
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: { value: id },
      command: { value: `while [ ! -e "$MESOS_SANDBOX/go" ]; do sleep 0.02; done; ${end}` },
    },
  };
}

async function waitStatus(agent: RunningAgent, id: string): Promise<number | undefined> {
  const w = await api(agent, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
  expect(w.status).toBe(200);
  return (w.json!.wait_container as { exit_status?: number }).exit_status;
}

async function removeAll(agent: RunningAgent, ids: string[]): Promise<void> {
  for (const id of ids) {
    await api(agent, { type: "KILL_CONTAINER", kill_container: { container_id: { value: id } } });
    await waitStatus(agent, id);
    expect((await api(agent, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
  }
}

describe.skipIf(!isRoot)("the launcher survives (needs root)", () => {
  test("a status file that cannot be written (full, then read-only runtime dir) does not end the launcher", async () => {
    const wd = join(work, "full");
    const run = join(wd, "run");
    mkdirSync(run, { recursive: true });
    expect((await runCommand(["mount", "-t", "tmpfs", "-o", "size=1m", "ucr-test-run", run])).code).toBe(0);
    mounted.push(run);
    const agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${run}`], keepWorkDir: true });
    const ids: string[] = [];
    try {
      const socket = join(run, "launcher.sock");
      for (const [id, end] of [
        ["full", "exit 5"],
        ["ro", "exit 7"],
        ["ro2", "sleep 100"],
      ] as const) {
        expect((await api(agent, gated(id, end))).status).toBe(200);
        ids.push(id);
      }
      const { launcher } = await findLauncher(socket);

      // Full: nothing more fits in the runtime dir.
      await runCommand(["sh", "-c", `dd if=/dev/zero of=${run}/filler bs=4k 2>/dev/null; true`]);
      writeFileSync(join(wd, "containers", "full", "go"), "");
      expect(await waitStatus(agent, "full")).toBe(5 << 8);
      expect(alive(launcher)).toBe(true);
      expect(existsSync(join(run, "containers", "full", "status"))).toBe(false);
      // Room again: the status is written after all.
      rmSync(join(run, "filler"));
      await until("the status file after the disk has room", () => existsSync(join(run, "containers", "full", "status")));
      expect(readFileSync(join(run, "containers", "full", "status"), "utf8")).toBe("1280\n");

      // Read-only: each container's runtime dir (a read-only bind over itself; the runtime dir
      // as a whole cannot be remounted read-only while the launcher's log is open in it).
      const roDirs = ["ro", "ro2"].map((id) => join(run, "containers", id));
      for (const d of roDirs) {
        expect((await runCommand(["mount", "--bind", d, d])).code).toBe(0);
        mounted.push(d);
        expect((await runCommand(["mount", "-o", "remount,bind,ro", d])).code).toBe(0);
      }
      writeFileSync(join(wd, "containers", "ro", "go"), "");
      // A signal from outside (PID 1 of its namespace ignores others' unhandled signals but SIGKILL).
      process.kill(Number(readFileSync(join(run, "containers", "ro2", "pid"), "utf8")), "SIGKILL");
      expect(await waitStatus(agent, "ro")).toBe(7 << 8);
      expect(await waitStatus(agent, "ro2")).toBe(9);
      expect(alive(launcher)).toBe(true);
      expect(existsSync(join(run, "containers", "ro", "status"))).toBe(false);
      for (const d of roDirs) {
        expect((await runCommand(["umount", d])).code).toBe(0);
        mounted.splice(mounted.indexOf(d), 1);
      }
      await until(
        "the status files once writable",
        () => existsSync(join(run, "containers", "ro", "status")) && existsSync(join(run, "containers", "ro2", "status")),
      );
      expect(readFileSync(join(run, "containers", "ro", "status"), "utf8")).toBe("1792\n");
      expect(readFileSync(join(run, "containers", "ro2", "status"), "utf8")).toBe("9\n");

      // And it launches as before.
      expect((await api(agent, gated("after", "exit 3"))).status).toBe(200);
      ids.push("after");
      writeFileSync(join(wd, "containers", "after", "go"), "");
      expect(await waitStatus(agent, "after")).toBe(3 << 8);
      expect((await findLauncher(socket)).launcher).toBe(launcher);
      expect(agent.log()).not.toMatch(/launcher went away|using a stage 1 process/);
    } finally {
      await removeAll(agent, ids).catch(() => {});
      expect(await agent.stop()).toBe(0);
    }
  });

  test("an exit status the launcher could not write reaches the agent that starts after it", async () => {
    const wd = join(work, "later");
    const run = join(wd, "run");
    let agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${run}`], keepWorkDir: true });
    const dirOf = join(run, "containers", "late");
    try {
      expect((await api(agent, gated("late", "exit 4"))).status).toBe(200);
      const pid = Number(readFileSync(join(dirOf, "pid"), "utf8"));
      expect((await runCommand(["mount", "--bind", dirOf, dirOf])).code).toBe(0);
      mounted.push(dirOf);
      expect((await runCommand(["mount", "-o", "remount,bind,ro", dirOf])).code).toBe(0);
      // No agent while it ends, and its status file cannot be written.
      expect(await agent.stop("SIGKILL")).toBe(137);
      writeFileSync(join(wd, "containers", "late", "go"), "");
      await until("the workload's end", () => !alive(pid));
      await Bun.sleep(300);
      expect(existsSync(join(dirOf, "status"))).toBe(false);

      agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${run}`], keepWorkDir: true });
      expect(await waitStatus(agent, "late")).toBe(4 << 8);
      expect((await runCommand(["umount", dirOf])).code).toBe(0);
      mounted.splice(mounted.indexOf(dirOf), 1);
      await until("the status file once writable", () => existsSync(join(dirOf, "status")));
      expect(readFileSync(join(dirOf, "status"), "utf8")).toBe("1024\n");
    } finally {
      if (mounted.includes(dirOf)) await runCommand(["umount", dirOf]);
      await removeAll(agent, ["late"]).catch(() => {});
      expect(await agent.stop()).toBe(0);
    }
  });

  test("SIGKILL of the launcher while containers run: their reaper records each exit status, and launches go on", async () => {
    const wd = join(work, "killed");
    const run = join(wd, "run");
    let agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${run}`], keepWorkDir: true });
    const ids = ["five", "six", "three", "later"];
    try {
      const socket = join(run, "launcher.sock");
      expect((await api(agent, gated("five", "exit 5"))).status).toBe(200);
      expect((await api(agent, gated("six", "exit 6"))).status).toBe(200);
      expect((await api(agent, gated("three", "exit 3"))).status).toBe(200);
      const { launcher, reaper } = await findLauncher(socket);
      expect(cmdline(reaper)).toEndWith(`__launcher ${socket}`);
      const workload = (id: string) => Number(readFileSync(join(run, "containers", id, "pid"), "utf8"));

      process.kill(launcher, "SIGKILL");
      // The kernel hands the workloads to the reaper (a child subreaper), not to init.
      await until("the workloads' adoption", () => ["five", "six", "three"].every((id) => ppid(workload(id)) === reaper));
      writeFileSync(join(wd, "containers", "five", "go"), "");
      writeFileSync(join(wd, "containers", "three", "go"), "");
      expect(await waitStatus(agent, "five")).toBe(5 << 8);
      expect(await waitStatus(agent, "three")).toBe(3 << 8);
      expect(readFileSync(join(run, "containers", "five", "status"), "utf8")).toBe("1280\n");

      // A launch now starts a new launcher; the old reaper still cares for "six".
      expect((await api(agent, gated("later", "exit 2"))).status).toBe(200);
      const next = await findLauncher(socket);
      expect(next.launcher).not.toBe(launcher);
      expect(alive(reaper)).toBe(true);

      // The agent restarts too; "six" ends while no agent runs.
      expect(await agent.stop("SIGKILL")).toBe(137);
      writeFileSync(join(wd, "containers", "six", "go"), "");
      await until("six's status file", () => existsSync(join(run, "containers", "six", "status")));
      expect(readFileSync(join(run, "containers", "six", "status"), "utf8")).toBe("1536\n");
      // Its last container recorded, the old reaper is done.
      await until("the old reaper's exit", () => !alive(reaper));

      agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${run}`], keepWorkDir: true });
      expect(await waitStatus(agent, "six")).toBe(6 << 8);
      writeFileSync(join(wd, "containers", "later", "go"), "");
      expect(await waitStatus(agent, "later")).toBe(2 << 8);
    } finally {
      await removeAll(agent, ids).catch(() => {});
      expect(await agent.stop()).toBe(0);
    }
  });
  test("the reaper is a few pages forked from the agent (no binary mapped, one thread, none of the agent's descriptors); its launcher killed, it writes a status it could not write at first once it can, then exits and lets go of its lock", async () => {
    const wd = join(work, "reaper");
    const run = join(wd, "run");
    const agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${run}`], keepWorkDir: true });
    const dirOf = join(run, "containers", "slow");
    try {
      const socket = join(run, "launcher.sock");
      expect((await api(agent, gated("slow", "exit 9"))).status).toBe(200);
      const { launcher, reaper } = await findLauncher(socket);
      expect(cmdline(reaper)).toEndWith(`__launcher ${socket}`);
      expect(readFileSync(`/proc/${reaper}/comm`, "utf8").trim()).toBe("ucr-reaper");
      const binary = readlinkSync(`/proc/${launcher}/exe`);
      expect(readFileSync(`/proc/${reaper}/maps`, "utf8")).not.toContain(binary);
      // libc stays whole (each of its segments, as the launcher maps them): its code runs there.
      const libcSegments = (pid: number) =>
        readFileSync(`/proc/${pid}/maps`, "utf8")
          .split("\n")
          .filter((l) => /\/libc\.so\.6$/.test(l))
          .map((l) => l.split(/\s+/)[2])
          .sort();
      expect(libcSegments(reaper).length).toBeGreaterThan(1);
      expect(libcSegments(reaper)).toEqual(libcSegments(launcher));
      expect(readdirSync(`/proc/${reaper}/task`)).toHaveLength(1);
      const pssKiB = Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${reaper}/smaps_rollup`, "utf8"))![1]);
      expect(pssKiB).toBeLessThan(1024);
      // Its stdio (/dev/null and the launcher's log), its lock, its signalfd and the launcher's pipe: nothing of the agent's.
      const fds = readdirSync(`/proc/${reaper}/fd`).map((fd) => readlinkSync(`/proc/${reaper}/fd/${fd}`));
      expect(fds.filter((f) => !/^(\/dev\/null|anon_inode:\[signalfd\]|pipe:\[\d+\])$/.test(f)).sort()).toEqual([
        `${socket}.lock`,
        `${socket}.log`,
      ]);
      // No signal handler of the runtime it was forked from; only SIGCHLD blocked (for its signalfd).
      const status = readFileSync(`/proc/${reaper}/status`, "utf8");
      expect(/^SigCgt:\s+(\w+)/m.exec(status)![1]).toMatch(/^0+$/);
      expect(/^SigBlk:\s+(\w+)/m.exec(status)![1]).toBe("0000000000010000");
      expect(launcherAlive(socket)).toBe(true);

      process.kill(launcher, "SIGKILL");
      const workload = Number(readFileSync(join(dirOf, "pid"), "utf8"));
      await until("the workload's adoption", () => ppid(workload) === reaper);
      // The launcher gone, its reaper's lock says someone will still write the status.
      await until("the launcher's exit", () => !alive(launcher));
      expect(launcherAlive(socket)).toBe(true);
      // Without the lock file, its title still says so.
      renameSync(`${socket}.lock`, `${socket}.lock.away`);
      expect(launcherAlive(socket)).toBe(true);
      renameSync(`${socket}.lock.away`, `${socket}.lock`);
      expect((await runCommand(["mount", "--bind", dirOf, dirOf])).code).toBe(0);
      mounted.push(dirOf);
      expect((await runCommand(["mount", "-o", "remount,bind,ro", dirOf])).code).toBe(0);
      writeFileSync(join(wd, "containers", "slow", "go"), "");
      const log = join(run, "launcher.sock.log");
      await until("the reaper's first try", () => readFileSync(log, "utf8").includes("trying again"));
      expect(readFileSync(log, "utf8")).toMatch(/container slow \(pid \d+\): cannot write .*status \(errno 30\); trying again/);
      expect(existsSync(join(dirOf, "status"))).toBe(false);
      expect(alive(reaper)).toBe(true);
      expect((await runCommand(["umount", dirOf])).code).toBe(0);
      mounted.splice(mounted.indexOf(dirOf), 1);
      await until("the status file once writable", () => existsSync(join(dirOf, "status")), 20_000);
      expect(readFileSync(join(dirOf, "status"), "utf8")).toBe("2304\n");
      expect(readdirSync(dirOf).filter((f) => f.includes(".tmp"))).toEqual([]);
      expect(readFileSync(log, "utf8")).toMatch(/container slow \(pid \d+\): .*status written after all/);
      // Its last container recorded, it exits, and its lock is free.
      await until("the reaper's exit", () => !alive(reaper));
      expect(launcherAlive(socket)).toBe(false);
      expect(await waitStatus(agent, "slow")).toBe(9 << 8);
    } finally {
      if (mounted.includes(dirOf)) await runCommand(["umount", dirOf]);
      await removeAll(agent, ["slow"]).catch(() => {});
      expect(await agent.stop()).toBe(0);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Straight to the launcher's socket: the agent's HTTP, image and cgroup work adds nothing to
// what is measured here (the launcher's descriptors), and would make 5,000 launches take
// minutes; the launcher's side of each launch (spec, init stage, report pipe, pid and
// status files, exit event) is the same.

class LauncherConn {
  private buffer = "";
  private readonly replies = new Map<number, (m: { pid?: number; error?: string }) => void>();
  private readonly exits = new Map<string, (status: number) => void>();
  /** Requests the launcher said it read. */
  readonly accepted = new Set<number>();
  private nextId = 1;
  greeted!: Promise<void>;
  socket!: Bun.Socket<undefined>;

  static async open(path: string): Promise<LauncherConn> {
    const c = new LauncherConn();
    let hello!: () => void;
    c.greeted = new Promise((r) => (hello = r));
    c.socket = await Bun.connect({
      unix: path,
      socket: {
        data: (_s, chunk) => {
          c.buffer += chunk.toString();
          let nl: number;
          while ((nl = c.buffer.indexOf("\n")) >= 0) {
            const m = JSON.parse(c.buffer.slice(0, nl));
            c.buffer = c.buffer.slice(nl + 1);
            if ("hello" in m) hello();
            else if ("container" in m) c.exits.get(m.container)?.(m.status);
            else if ("accepted" in m) c.accepted.add(m.id);
            else c.replies.get(m.id)?.(m);
          }
        },
      },
    });
    await c.greeted;
    return c;
  }

  /** Launches every one of `runs` with one write (they reach the launcher together): their pids, then exit statuses. */
  async runTogether(runs: ReadonlyArray<{ spec: string; key: string }>): Promise<{ pids: number[]; exits: Promise<number[]> }> {
    const all = runs.map(({ spec, key }) => {
      const id = this.nextId++;
      const exited = new Promise<number>((r) => this.exits.set(key, r));
      const replied = new Promise<{ pid?: number; error?: string }>((r) => this.replies.set(id, r));
      return { id, spec, key, exited, replied };
    });
    this.socket.write(all.map((r) => `${JSON.stringify({ id: r.id, spec: r.spec })}\n`).join(""));
    const pids = await Promise.all(
      all.map(async (r) => {
        const reply = await r.replied;
        this.replies.delete(r.id);
        if (reply.error) throw new Error(reply.error);
        return reply.pid!;
      }),
    );
    const exits = Promise.all(
      all.map(async (r) => {
        const status = await r.exited;
        this.exits.delete(r.key);
        return status;
      }),
    );
    return { pids, exits };
  }

  /** Launches the spec at `specPath` (its id `key`); resolves with the exit status. */
  async run(specPath: string, key: string): Promise<number> {
    const id = this.nextId++;
    const exited = new Promise<number>((r) => this.exits.set(key, r));
    const reply = await new Promise<{ pid?: number; error?: string }>((r) => {
      this.replies.set(id, r);
      this.socket.write(`${JSON.stringify({ id, spec: specPath })}\n`);
    });
    this.replies.delete(id);
    if (reply.error) throw new Error(reply.error);
    const status = await exited;
    this.exits.delete(key);
    return status;
  }
}

function writeSpec(dir: string, key: string, script: string): string {
  const c = join(dir, "c", key);
  mkdirSync(c, { recursive: true });
  writeFileSync(join(c, "hostname"), `${key}\n`);
  const spec = {
    id: key,
    hostname: key,
    sandbox: { host: c, container: c },
    executable: "/bin/sh",
    argv: ["sh", "-c", script],
    env: { PATH: "/usr/bin:/bin" },
    workingDir: "/",
    etc: { hostname: join(c, "hostname") },
    // The agent's default confinement, as every container gets it (stage 2 refuses a spec without one).
    confine: DEFAULT_CONFINE,
    stdout: join(c, "stdout"),
    stderr: join(c, "stderr"),
    statusFile: join(c, "status"),
    pidFile: join(c, "pid"),
  };
  writeFileSync(join(c, "launch.json"), JSON.stringify(spec));
  return join(c, "launch.json");
}

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Starts a launcher (and its reaper) on a socket in `dir`, as the agent does. */
async function ownLauncher(dir: string, limit?: number): Promise<{ conn: LauncherConn; launcher: number; stop: () => void }> {
  requireBinary();
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "launcher.sock");
  const log = join(dir, "launcher.log");
  // prlimit: the reaper, and the launcher it starts, inherit the limit.
  const prefix = limit ? `prlimit --nofile=${limit}:${limit} ` : "";
  const starter = Bun.spawn(["sh", "-c", `exec ${prefix}${UCR} __launcher ${socket} 2>>${log}`], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  await until("the launcher's socket", () => existsSync(socket));
  // The file is there once bound, a moment before it listens.
  let conn: LauncherConn | undefined;
  for (let i = 0; conn === undefined; i++) {
    try {
      conn = await LauncherConn.open(socket);
    } catch (err) {
      if (i >= 100) throw err;
      await Bun.sleep(20);
    }
  }
  const { launcher } = await findLauncher(socket);
  return {
    conn,
    launcher,
    stop: () => {
      conn.socket.end();
      starter.kill("SIGKILL");
      if (alive(launcher)) process.kill(launcher, "SIGKILL");
    },
  };
}

const childrenOf = (launcher: number) => pids().filter((p) => ppid(p) === launcher);

describe.skipIf(!isRoot)("concurrent launches (needs root)", () => {
  test("six at once, twice: each forked into a PID namespace of its own; then the launcher has no child left", async () => {
    const dir = join(work, "burst");
    const { conn, launcher, stop } = await ownLauncher(dir);
    try {
      const specs = Array.from({ length: 6 }, (_, i) => writeSpec(dir, `p${i}`, "readlink /proc/self/ns/pid; echo $$; sleep 0.2"));
      for (let round = 0; round < 2; round++) {
        const statuses = await Promise.all(specs.map((spec, i) => conn.run(spec, `p${i}`)));
        expect(statuses).toEqual([0, 0, 0, 0, 0, 0]);
      }
      const outs = specs.map((_, i) =>
        readFileSync(join(dir, "c", `p${i}`, "stdout"), "utf8")
          .trim()
          .split("\n"),
      );
      // Two runs each (stdout appends): PID 1 every time; six namespaces in each round, all alive
      // at once (a freed namespace's number may come back in the next round).
      for (const out of outs) expect([out[1], out[3]]).toEqual(["1", "1"]);
      for (const at of [0, 2]) expect(new Set(outs.map((out) => out[at])).size).toBe(6);
      await until("the launcher's children gone", () => childrenOf(launcher).length === 0);
    } finally {
      stop();
    }
  }, 60_000);
});

describe.skipIf(!isRoot)("a launcher killed while it sets containers up (needs root)", () => {
  test("20 rounds of SIGKILL at a random moment of a burst: no process half set up is left, no mount, and every workload the reaper knew of is recorded", async () => {
    for (let round = 0; round < 20; round++) {
      const dir = join(work, `midsetup-${round}`);
      const { conn, launcher, stop } = await ownLauncher(dir);
      const socket = join(dir, "launcher.sock");
      const reaper = ppid(launcher);
      try {
        // The setup lane started and ready first (a batch starts it; its thread and its forking
        // thread are named Worker), so the kill also finds processes the lane is setting up.
        const warm = await conn.runTogether(["w0", "w1"].map((key) => ({ key, spec: writeSpec(dir, key, "exit 0") })));
        await warm.exits;
        const laneThreads = () =>
          readdirSync(`/proc/${launcher}/task`).filter((t) => readFileSync(`/proc/${launcher}/task/${t}/comm`, "utf8").trim() === "Worker")
            .length;
        await until("the setup lane's threads", () => laneThreads() >= 2);
        const keys = Array.from({ length: 6 }, (_, i) => `m${i}`);
        for (const [i, key] of keys.entries()) void conn.run(writeSpec(dir, key, `exit ${10 + i}`), key).catch(() => {});
        await Bun.sleep(Math.random() * 20);
        process.kill(launcher, "SIGKILL");
        // The reaper exits once the launcher is gone and every container it knew of is recorded.
        await until("the reaper's exit", () => !alive(reaper));
        // A process being set up shares the launcher's memory and command line: none is left.
        expect(pids().filter((p) => cmdline(p).includes(`__launcher --serve ${socket}`))).toEqual([]);
        // Its mounts were in its own mount namespace: none on the host.
        expect(readFileSync("/proc/self/mountinfo", "utf8").includes(dir)).toBe(false);
        // A workload whose pid was recorded has its status too (from the launcher or the reaper).
        for (const [i, key] of keys.entries()) {
          const c = join(dir, "c", key);
          if (existsSync(join(c, "pid"))) expect(readFileSync(join(c, "status"), "utf8")).toBe(`${(10 + i) << 8}\n`);
        }
      } finally {
        stop();
      }
    }
  }, 120_000);
});

describe.skipIf(!isRoot)("the reaper's title (needs root)", () => {
  test("forked from a process whose own command line is too short for it, the reaper's title takes the environment's room too, as one line (cut where even that is short), and still tells the agent it lives", async () => {
    const dir = join(work, "title");
    mkdirSync(dir, { recursive: true });
    const socket = join(dir, "launcher.sock");
    const src = join(import.meta.dir, "..", "..", "src", "runtime");
    const script = join(dir, "s.ts");
    writeFileSync(
      script,
      `import { startReaper } from ${JSON.stringify(join(src, "reaper.ts"))};\nimport { reaperStart } from ${JSON.stringify(join(src, "launcher.ts"))};\nstartReaper(reaperStart(${JSON.stringify(socket)}, 2));\n`,
    );
    // argv is `bun <script>`; the title (`bun <main.ts> __launcher <socket>`) is longer. With
    // room in the environment it is whole; without (env -i, no variable), cut.
    for (const pad of [400, 0]) {
      const env = pad ? [`PAD=${"x".repeat(pad)}`] : [];
      const starter = Bun.spawn(["env", "-i", ...env, process.execPath, script], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      expect(await starter.exited).toBe(0);
      const { launcher, reaper } = await findLauncher(socket);
      try {
        const raw = readFileSync(`/proc/${reaper}/cmdline`, "utf8");
        const title = `${process.execPath} ${join(src, "..", "main.ts")} __launcher ${socket}`;
        // One line (no NUL inside), never the starter's own command line.
        const shown = raw.split("\0")[0]!;
        expect(raw.replace(/\0+$/, "")).toBe(shown);
        if (pad) expect(shown).toBe(title);
        else {
          expect(shown.length).toBeGreaterThan(process.execPath.length);
          expect(shown.length).toBeLessThan(title.length);
          expect(title.startsWith(shown)).toBe(true);
        }
        if (pad) {
          renameSync(`${socket}.lock`, `${socket}.lock.away`);
          expect(launcherAlive(socket)).toBe(true);
          renameSync(`${socket}.lock.away`, `${socket}.lock`);
        }
      } finally {
        process.kill(launcher, "SIGKILL");
      }
      // No container: with its launcher gone, the reaper is done.
      await until("the reaper's exit", () => !alive(reaper));
      expect(launcherAlive(socket)).toBe(false);
    }
  });
});

/** Lets a workload waiting with `read go < GATE` (a FIFO) go on. */
function openGate(gate: string): void {
  const fd = openSync(gate, constants.O_WRONLY | constants.O_NONBLOCK);
  try {
    writeSync(fd, "go\n");
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(!isRoot)("the reaper with many containers (needs root)", () => {
  test("150 containers running when the launcher is SIGKILLed: the reaper (its table grown past its first 64 entries) adopts each and records each one's own status as it ends, then exits", async () => {
    const dir = join(work, "many");
    const { conn, launcher, stop } = await ownLauncher(dir);
    const reaper = ppid(launcher);
    try {
      const N = 150;
      const runs = Array.from({ length: N }, (_, i) => {
        const key = `k${i}`;
        // Each waits on a FIFO of its own (no CPU while it waits), then exits with its own code.
        const spec = writeSpec(dir, key, `read go < ${join(dir, "c", key, "gate")}; exit ${i % 200}`);
        return { key, spec };
      });
      expect((await runCommand(["mkfifo", ...runs.map((r) => join(dir, "c", r.key, "gate"))])).code).toBe(0);
      const { pids } = await conn.runTogether(runs);
      expect(pids.every((p) => alive(p))).toBe(true);
      process.kill(launcher, "SIGKILL");
      await until("every workload's adoption", () => pids.every((p) => ppid(p) === reaper), 30_000);
      expect(readdirSync(`/proc/${reaper}/task`)).toHaveLength(1);
      for (const r of runs) {
        openGate(join(dir, "c", r.key, "gate"));
      }
      await until("every status file", () => runs.every((r) => existsSync(join(dir, "c", r.key, "status"))), 60_000);
      for (const [i, r] of runs.entries()) expect(readFileSync(join(dir, "c", r.key, "status"), "utf8")).toBe(`${(i % 200) << 8}\n`);
      await until("the reaper's exit", () => !alive(reaper));
      expect(readFileSync(join(dir, "launcher.log"), "utf8").split("after its launcher; recording it").length - 1).toBe(N);
    } finally {
      stop();
    }
  }, 120_000);
});

describe.skipIf(!isRoot)("the reaper's records (needs root)", () => {
  test("a status file path of 4,000 bytes and a 255-byte key (a record over PIPE_BUF): the reaper records it after the launcher's SIGKILL", async () => {
    const dir = join(work, "longpath");
    const { conn, launcher, stop } = await ownLauncher(dir);
    const reaper = ppid(launcher);
    try {
      const key = "k".repeat(255);
      // <long>/c/<key>/status 4,000 bytes: 14 components of 250 bytes, then padding.
      let long = join(dir, "l");
      for (let i = 0; i < 14; i++) long = join(long, String(i).padEnd(250, "d"));
      long = join(long, "p".repeat(4000 - (long.length + "/".length + "/c/".length + key.length + "/status".length)));
      const status = join(long, "c", key, "status");
      expect(status.length).toBe(4000);
      // The record: a 16-byte header, the path, the key: over PIPE_BUF (4096).
      expect(16 + status.length + key.length).toBeGreaterThan(4096);
      const spec = writeSpec(long, key, `read go < ${join(long, "c", key, "gate")}; exit 42`);
      // A hostname is at most 64 bytes: not the key here.
      writeFileSync(spec, JSON.stringify({ ...JSON.parse(readFileSync(spec, "utf8")), hostname: "long" }));
      expect((await runCommand(["mkfifo", join(long, "c", key, "gate")])).code).toBe(0);
      const { pids } = await conn.runTogether([{ key, spec }]);
      process.kill(launcher, "SIGKILL");
      await until("the workload's adoption", () => ppid(pids[0]!) === reaper);
      openGate(join(long, "c", key, "gate"));
      await until("its status file", () => existsSync(status));
      expect(readFileSync(status, "utf8")).toBe(`${42 << 8}\n`);
      await until("the reaper's exit", () => !alive(reaper));
      expect(readFileSync(join(dir, "launcher.log"), "utf8")).toContain(`container ${key} (pid ${pids[0]}) ended with status ${42 << 8}`);
    } finally {
      stop();
    }
  });
});

describe.skipIf(!isRoot)("what a workload inherits (needs root)", () => {
  test("no signal ignored or blocked, no descriptor beyond its stdio, PID 1 of its own namespace", async () => {
    const dir = join(work, "inherit");
    const { conn, stop } = await ownLauncher(dir);
    try {
      const spec = writeSpec(dir, "sig", "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/self/fd; echo pid $$");
      expect(await conn.run(spec, "sig")).toBe(0);
      const out = readFileSync(join(dir, "c", "sig", "stdout"), "utf8")
        .trim()
        .split("\n");
      expect(out).toContain("SigIgn:\t0000000000000000");
      expect(out).toContain("SigBlk:\t0000000000000000");
      // 0-2 and the directory ls reads.
      expect(
        out
          .filter((l) => /^\d+$/.test(l))
          .map(Number)
          .every((fd) => fd <= 3),
      ).toBe(true);
      expect(out).toContain("pid 1");
    } finally {
      stop();
    }
  });
});

describe.skipIf(!isRoot)("the launcher's descriptors (needs root)", () => {
  test("an exec request of many parts (a 300 KB environment) reaches the workload whole; one over 4 MiB is refused", async () => {
    const dir = join(work, "bigenv");
    const { conn, stop } = await ownLauncher(dir);
    try {
      // Three variables of 100,000 bytes (execve takes at most 128 KiB in one string).
      const withEnv = (key: string, parts: string[]) => {
        const spec = writeSpec(dir, key, 'printf %s "$BIG0$BIG1$BIG2" | md5sum');
        const json = JSON.parse(readFileSync(spec, "utf8")) as { env: Record<string, string> };
        parts.forEach((p, i) => {
          json.env[`BIG${i}`] = p;
        });
        writeFileSync(spec, JSON.stringify(json));
        return spec;
      };
      const parts = [0, 1, 2].map((k) => Array.from({ length: 100_000 }, (_, i) => String.fromCharCode(97 + ((i + k) % 26))).join(""));
      expect(await conn.run(withEnv("big", parts), "big")).toBe(0);
      const md5 = new Bun.CryptoHasher("md5").update(parts.join("")).digest("hex");
      expect(readFileSync(join(dir, "c", "big", "stdout"), "utf8").trim()).toBe(`${md5}  -`);
      const huge = Array.from({ length: 48 }, () => "h".repeat(100_000));
      await expect(conn.run(withEnv("huge", huge), "huge")).rejects.toThrow(/exec request|at most|bytes/);
    } finally {
      stop();
    }
  }, 120_000);

  test("launches that arrive together are set up two at a time (the setup lane), each as it would be alone", async () => {
    const dir = join(work, "lane");
    const { conn, launcher, stop } = await ownLauncher(dir);
    try {
      const batch = (round: number, script: (i: number) => string) =>
        Array.from({ length: 4 }, (_, i) => {
          const key = `l${round}-${i}`;
          return { key, spec: writeSpec(dir, key, script(i)) };
        });
      // Each launch of a batch gets its own spec: its own output, its own exit status.
      for (let round = 0; round < 20; round++) {
        const runs = batch(round, (i) => `echo "$(hostname) $$"; exit ${10 + i}`);
        const { exits } = await conn.runTogether(runs);
        expect(await exits).toEqual([10, 11, 12, 13].map((code) => code << 8));
        for (const r of runs) expect(readFileSync(join(dir, "c", r.key, "stdout"), "utf8")).toMatch(new RegExp(`^${r.key} \\d+\n$`));
      }
      // Which thread forked each: /proc/<launcher>/task/<thread>/children lists a thread's own.
      // The launcher's forking thread and the lane's each forked some of a batch.
      const running = batch(99, () => "exec sleep 30");
      const { pids, exits } = await conn.runTogether(running);
      const forkers = new Map<string, number[]>();
      for (const t of readdirSync(`/proc/${launcher}/task`)) {
        const children = readFileSync(`/proc/${launcher}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
        if (children.length > 0) forkers.set(t, children);
      }
      expect([...forkers.values()].flat().sort()).toEqual([...pids].sort());
      expect(forkers.size).toBe(2);
      for (const pid of pids) process.kill(pid, "SIGKILL");
      expect(await exits).toEqual([9, 9, 9, 9]);
      // Later bursts, after a pause, reuse the lane: no thread (or descriptor) per burst.
      const threads = () => readdirSync(`/proc/${launcher}/task`).length;
      const before = { threads: threads(), fds: fdCount(launcher) };
      for (let round = 100; round < 105; round++) {
        await Bun.sleep(300);
        const { exits: later } = await conn.runTogether(batch(round, () => "exit 0"));
        expect(await later).toEqual([0, 0, 0, 0]);
      }
      expect(threads()).toBe(before.threads);
      // The report pipes of the last launches are closed as their ends are read: settled, the count is back.
      await until("the launcher's descriptors to settle", () => fdCount(launcher) === before.fds, 5_000);
    } finally {
      stop();
    }
  }, 120_000);

  test("quiet (nothing runs for 10 s, an agent connected): the lane and its forking thread end, memory goes back, the launcher stays; the next burst starts the lane again, and no spell leaves anything", async () => {
    const dir = join(work, "quiet");
    const { conn, launcher, stop } = await ownLauncher(dir);
    const reaper = ppid(launcher);
    const log = join(dir, "launcher.log");
    const quietLines = () => (existsSync(log) ? readFileSync(log, "utf8").split("idle: nothing runs").length - 1 : 0);
    const tasks = () => readdirSync(`/proc/${launcher}/task`);
    const named = (name: string) => tasks().filter((t) => readFileSync(`/proc/${launcher}/task/${t}/comm`, "utf8").trim() === name).length;
    // The lane's worker thread and the forking thread it starts are both named Worker; the
    // launcher's main thread and its own forking thread, ucr. (The runtime's helper threads
    // come and go on their own.)
    const laneThreads = () => named("Worker");
    const rssKiB = () => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${launcher}/status`, "utf8"))![1]);
    try {
      const spells: Array<{ ucrThreads: number; fds: number }> = [];
      for (let round = 0; round < 3; round++) {
        const before = quietLines();
        const runs = Array.from({ length: 4 }, (_, i) => ({
          key: `q${round}-${i}`,
          spec: writeSpec(dir, `q${round}-${i}`, `echo ${round}-${i}; exit ${i}`),
        }));
        const { exits } = await conn.runTogether(runs);
        expect(await exits).toEqual([0, 1, 2, 3].map((code) => code << 8));
        for (const [i, r] of runs.entries()) expect(readFileSync(join(dir, "c", r.key, "stdout"), "utf8")).toBe(`${round}-${i}\n`);
        await until("the setup lane's threads", () => laneThreads() >= 2);
        const busyRss = rssKiB();
        await until("the launcher quiet", () => quietLines() > before && laneThreads() === 0, 30_000);
        expect(alive(launcher) && alive(reaper)).toBe(true);
        expect(rssKiB()).toBeLessThan(busyRss);
        // A thread the runtime starts is named after its creator ("ucr") until it names itself:
        // the launcher's own two are what stays (a forking thread left behind would too).
        await until("the launcher's own threads", () => named("ucr") === 2, 5_000);
        spells.push({ ucrThreads: named("ucr"), fds: fdCount(launcher) });
      }
      // Each spell ends where the first did: no forking thread or pipe left per lane.
      expect(spells[0]!.ucrThreads).toBe(2);
      expect(spells[1]).toEqual(spells[0]);
      expect(spells[2]).toEqual(spells[0]);
    } finally {
      stop();
    }
  }, 120_000);

  test("5,000 launches under a 256-file limit: every one works and the launcher's fd count stays flat", async () => {
    const dir = join(work, "fds");
    const { conn, launcher, stop } = await ownLauncher(dir, 256);
    try {
      expect(readFileSync(`/proc/${launcher}/limits`, "utf8")).toMatch(/Max open files\s+256\s+256/);
      const PARALLEL = 8;
      const specs = Array.from({ length: PARALLEL }, (_, w) => writeSpec(dir, `w${w}`, "exit 0"));
      const counts: number[] = [];
      let done = 0;
      let failures = 0;
      /** `total` launches, PARALLEL at a time; the fd count sampled every 500. */
      const burst = (total: number) =>
        Promise.all(
          specs.map(async (spec, w) => {
            for (let i = w; i < total; i += PARALLEL) {
              const status = await conn.run(spec, `w${w}`).catch((e: Error) => {
                failures++;
                throw e;
              });
              if (status !== 0) failures++;
              done++;
              if (done % 500 === 0) counts.push(fdCount(launcher));
            }
          }),
        );
      // Between the bursts nothing is in flight: the counts then are the launcher's own
      // descriptors (with the setup lane's thread, which the first burst starts).
      await burst(1000);
      const after1000 = fdCount(launcher);
      await burst(4000);
      const after5000 = fdCount(launcher);
      expect(failures).toBe(0);
      expect(counts.length).toBe(10);
      // Flat: none kept per launch (one per thousand launches would show as +4).
      expect(after5000 - after1000).toBeLessThanOrEqual(2);
      // And bounded under load: what launches in flight hold is returned.
      expect(Math.max(...counts)).toBeLessThan(64);
    } finally {
      stop();
    }
  }, 600_000);
});
