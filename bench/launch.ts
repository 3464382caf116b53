// Benchmark (not a test): how long starting a `/bin/true` container from a cached image takes with
// ucr (LAUNCH+WAIT over the Operator API) against `crun run`, `podman run` and the bare kernel floor,
// one at a time and in bursts (back to back, 10 clients at once), and the memory it keeps.
//
//   bun bench/launch.ts [--runs N] [--quick]
//
// Prints markdown tables (latency: median, p95, min of N runs and peer/ucr ratios; bursts against
// spaced launches; memory of every ucr process idle, after the launches and with 50 containers
// running, against podman's conmon per container) and writes them to bench/results/launch-<date>.md.
// Everything it makes lives in one temp dir (short path: podman's runroot must be < 50 chars).
import { commandRunner, mountsUnder, runBench, writeResult } from "./lib.ts";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { dirname, join } from "node:path";

// ---------------------------------------------------------------------------------------------
// Options and constants

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const runsArg = argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : quick ? 10 : 50;
if (!Number.isInteger(RUNS) || RUNS < 1 || argv.some((a, i) => a !== "--quick" && a !== "--runs" && argv[i - 1] !== "--runs")) {
  console.error("usage: bun bench/launch.ts [--runs N] [--quick]");
  process.exit(2);
}
// Untimed runs per tool first: page cache, podman's and crun's first-run state, JIT in the agent.
const WARMUPS = quick ? 2 : 5;
// Extra ucr launches under `perf record` for the phase breakdown (never part of the timings).
const PROBES = quick ? 5 : 15;
const PROBE_GAP_MS = 100;
// Bursts: spaced launches (100 ms apart), a sequential burst (next launch as soon as the last
// ended), and parallel clients each launching back to back; rounds rotate the tools' order.
const SPACED_N = quick ? 5 : 20;
const SPACED_GAP_MS = 100;
const SEQ_N = quick ? 20 : 50;
const PAR_CLIENTS = 10;
const PAR_EACH = quick ? 2 : 5;
const BURST_ROUNDS = quick ? 1 : 2;
// Containers kept running for the memory table.
const MEM_CONTAINERS = quick ? 10 : 50;

const ROOT = dirname(import.meta.dir);
const BUILT_UCR = join(ROOT, "dist", "ucr");
const PATH = process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// A container start that takes this long is broken, not slow.
const TIMEOUT_MS = 60_000;
// Our container IDs all start with this, so cleanup only ever touches what this run made.
const ID_PREFIX = "ulb";

// ---------------------------------------------------------------------------------------------
// Processes: everything we start is tracked so an interrupted run can kill it.

const { live, exec, reason, mustRun: mustRunFor } = commandRunner({ path: PATH, timeoutMs: TIMEOUT_MS, stdout: false, checkStop: () => checkStop() });
const mustRun = (cmd: string[]) => mustRunFor(cmd, { timeoutMs: 120_000 });

// ---------------------------------------------------------------------------------------------
// Cleanup: containers, the agent, podman's state, the namespace holder and the temp dir go
// away however the run ends.

let base: string | undefined;
let agent: Agent | undefined;
/** Process whose mount namespace has no cgroup2 mount (the crun/podman workaround), if started. */
let holder: Bun.Subprocess | undefined;
/** podman's command prefix once its storage exists, so cleanup can `rm -f` what it left. */
let podmanCmd: string[] | undefined;
let crunCmd: string[] | undefined;
/** ucr containers launched and not yet removed. */
const ucrLive = new Set<string>();
/** cgroup dirs podman makes for conmon that were not there before this run. */
const podmanCgroups: string[] = [];
let cleaning: Promise<void> | undefined;

/** Once cleanup has begun (Ctrl-C), nothing new may start. Called before each step. */
function checkStop(): void {
  if (cleaning) throw new Error("interrupted");
}


/** A command run during cleanup: no checkStop, bounded, never throws. */
function quiet(cmd: string[], timeoutMs = 20_000): Promise<number> {
  try {
    const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", env: { PATH } });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    return p.exited.finally(() => clearTimeout(t));
  } catch {
    return Promise.resolve(127);
  }
}

/** rmdir of a cgroup: it fails, and the cgroup stays, while processes are in it. */
function rmdirQuiet(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // gone already, or still in use: not ours to force
  }
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of live) p.kill("SIGKILL");
    await Promise.race([Promise.all([...live].map((p) => p.exited)), Bun.sleep(3000)]);
    // ucr containers outlive the agent by design, so they are ended through it first.
    if (agent && ucrLive.size > 0) {
      for (const id of [...ucrLive]) {
        try {
          await agent.call("KILL_CONTAINER", { kill_container: { container_id: { value: id } } }, 5000).catch(() => undefined);
          await agent.call("WAIT_CONTAINER", { wait_container: { container_id: { value: id } } }, 5000);
          const r = await agent.call("REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } }, 10_000);
          if (r.status === 200) ucrLive.delete(id);
        } catch {
          // the agent is gone or stuck: the pid files below
        }
      }
    }
    if (agent) await agent.stop();
    if (base && ucrLive.size > 0) {
      // What the agent could not remove: kill the workloads (stage 1 then exits) and drop their cgroups.
      for (const id of ucrLive) {
        try {
          const pid = Number(readFileSync(join(base, "ucr", "run", "containers", id, "pid"), "utf8").trim());
          if (pid > 0) process.kill(pid, "SIGKILL");
        } catch {
          // never started, or already gone
        }
      }
      await Bun.sleep(300);
      for (const ctl of ["cpu", "cpuacct", "memory"]) {
        for (const id of ucrLive) rmdirQuiet(`/sys/fs/cgroup/${ctl}/ucr/${id}`);
      }
      console.error(`cleanup: ucr containers the agent did not remove: ${[...ucrLive].join(", ")} (killed)`);
    }
    if (podmanCmd) await quiet([...podmanCmd, "rm", "-f", "-a", "-t", "0"], 60_000);
    if (crunCmd && base && existsSync(join(base, "crun"))) {
      for (const id of readdirSync(join(base, "crun"))) await quiet([...crunCmd, "delete", "-f", id]);
    }
    // conmon can outlive `podman rm` by a moment, and its cgroup with it.
    for (let i = 0; i < 20 && podmanCgroups.some((d) => existsSync(d)); i++) {
      for (const dir of podmanCgroups.sort((a, b) => b.length - a.length)) rmdirQuiet(dir);
      if (podmanCgroups.some((d) => existsSync(d))) await Bun.sleep(100);
    }
    if (holder) {
      holder.kill("SIGKILL");
      await holder.exited;
    }
    if (base) {
      for (const mp of mountsUnder(base)) {
        if ((await quiet(["umount", mp])) !== 0) await quiet(["umount", "-l", mp]);
      }
      if (mountsUnder(base).length === 0) rmSync(base, { recursive: true, force: true });
      else console.error(`cleanup: ${base} still has mounts; remove it by hand`);
    }
  })();
  return cleaning;
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// The ucr agent and its API

class Agent {
  readonly url: string;

  private constructor(
    readonly proc: Bun.Subprocess<"ignore", "ignore", "pipe">,
    port: number,
    /** Every stderr line so far: the server-side time of each call is logged there. */
    readonly log: string[],
  ) {
    this.url = `http://127.0.0.1:${port}/api/v1`;
  }

  static async start(ucr: string, dir: string, images: string): Promise<Agent> {
    const proc = Bun.spawn(
      [
        ucr,
        "agent",
        "--port=0",
        `--work_dir=${dir}`,
        `--runtime_dir=${join(dir, "run")}`,
        `--docker_registry=${images}`,
        "--image_providers=docker",
        "--isolation=filesystem/linux,docker/runtime",
      ],
      // Its own session: a Ctrl-C at the terminal (SIGINT to the foreground process group) must
      // not stop it before cleanup has used it to remove the containers.
      { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH }, detached: true },
    );
    const log: string[] = [];
    const decoder = new TextDecoder();
    let partial = "";
    let resolvePort!: (port: number) => void;
    const portP = new Promise<number>((r) => (resolvePort = r));
    // Drained for the agent's whole life: a full pipe would block its logging, and so its calls.
    void (async () => {
      for await (const chunk of proc.stderr) {
        partial += decoder.decode(chunk, { stream: true });
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          log.push(line);
          const m = /agent listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
          if (m) resolvePort(Number(m[1]));
        }
      }
    })();
    const port = await Promise.race([
      portP,
      proc.exited.then((code) => {
        throw new Error(`ucr agent exited ${code} before listening: ${log.slice(-3).join(" / ")}`);
      }),
      Bun.sleep(30_000).then(() => {
        throw new Error("ucr agent did not listen within 30 s");
      }),
    ]);
    return new Agent(proc, port, log);
  }

  async call(type: string, body: Record<string, unknown>, timeoutMs = TIMEOUT_MS): Promise<{ status: number; text: string }> {
    const res = await fetch(this.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ type, ...body }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, text: await res.text() };
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const done = await Promise.race([this.proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!done) {
      this.proc.kill("SIGKILL");
      await this.proc.exited;
    }
  }
}

function launchBody(id: string, argv: string[]): Record<string, unknown> {
  return {
    launch_container: {
      container_id: { value: id },
      command: { shell: false, value: argv[0], arguments: [argv[0]!.split("/").pop(), ...argv.slice(1)] },
      container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
    },
  };
}

let ucrSeq = 0;
const nextId = (what: string) => `${ID_PREFIX}-${what}-${++ucrSeq}`;
/** ucr launches so far (for the memory table). */
let ucrLaunches = 0;

interface UcrTiming {
  launchMs: number;
  waitMs: number;
  /** process.hrtime ns at the request and at each response (the perf probe aligns them to the kernel's clock). */
  t0: bigint;
  t1: bigint;
  t2: bigint;
  id: string;
}

/** LAUNCH + WAIT of one /bin/true container (timed), then REMOVE (not timed) unless `keep`. */
async function ucrOnce(a: Agent, keep = false): Promise<UcrTiming> {
  checkStop();
  const id = nextId("t");
  ucrLive.add(id);
  const t0 = process.hrtime.bigint();
  ucrLaunches++;
  const l = await a.call("LAUNCH_CONTAINER", launchBody(id, ["/bin/true"]));
  const t1 = process.hrtime.bigint();
  if (l.status !== 200) throw new Error(`LAUNCH_CONTAINER ${l.status}: ${l.text.trim().slice(0, 200)}`);
  const w = await a.call("WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
  const t2 = process.hrtime.bigint();
  if (w.status !== 200) throw new Error(`WAIT_CONTAINER ${w.status}: ${w.text.trim().slice(0, 200)}`);
  const status = (JSON.parse(w.text) as { wait_container?: { exit_status?: number } }).wait_container?.exit_status;
  if (status !== 0) throw new Error(`/bin/true in ucr exited with wait status ${status}`);
  if (!keep) await ucrRemove(a, id);
  return { launchMs: Number(t1 - t0) / 1e6, waitMs: Number(t2 - t1) / 1e6, t0, t1, t2, id };
}

async function ucrRemove(a: Agent, id: string): Promise<void> {
  const r = await a.call("REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } });
  if (r.status !== 200) throw new Error(`REMOVE_CONTAINER ${r.status}: ${r.text.trim().slice(0, 200)}`);
  ucrLive.delete(id);
}

/** The agent's own "POST /api/v1 LAUNCH_CONTAINER 200 47.7ms" per container ID. */
function serverLaunchMs(log: string[]): Map<string, number> {
  const out = new Map<string, number>();
  let last: string | undefined;
  for (const line of log) {
    const running = /container (\S+) running \(pid/.exec(line);
    if (running) last = running[1];
    const call = /POST \/api\/v1 LAUNCH_CONTAINER 200 ([\d.]+)ms/.exec(line);
    if (call && last) {
      out.set(last, Number(call[1]));
      last = undefined;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Memory: /proc/<pid>/smaps_rollup

interface Mem {
  rssKiB: number;
  pssKiB: number;
  /** Private_Clean + Private_Dirty: what goes away with the process. */
  ussKiB: number;
}

function memOf(pid: number): Mem {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssKiB: kb("Rss"), pssKiB: kb("Pss"), ussKiB: kb("Private_Clean") + kb("Private_Dirty") };
}

const addMem = (a: Mem, b: Mem): Mem => ({ rssKiB: a.rssKiB + b.rssKiB, pssKiB: a.pssKiB + b.pssKiB, ussKiB: a.ussKiB + b.ussKiB });

function cmdlineOf(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
}

/** What a ucr process is, from its command line. */
function ucrRole(cmd: string): string {
  if (/ agent( |$)/.test(cmd)) return "agent";
  if (cmd.includes("__launcher --serve")) return "launcher";
  if (cmd.includes("__launcher")) return "launcher's reaper";
  if (cmd.includes("__init --warm")) return "warm init stage";
  if (cmd.includes("__init")) return "init stage";
  return "other";
}

/** Every process running the binary `exe` (our private copy: nothing else runs it), with its memory. */
function processesOf(exe: string): { pid: number; role: string; mem: Mem }[] {
  const out: { pid: number; role: string; mem: Mem }[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readlinkSync(`/proc/${e}/exe`) !== exe) continue;
      out.push({ pid: Number(e), role: ucrRole(cmdlineOf(Number(e))), mem: memOf(Number(e)) });
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return out;
}

const NO_MEM: Mem = { rssKiB: 0, pssKiB: 0, ussKiB: 0 };

/** Totals of `procs`, and which roles they are ("agent, launcher, 2 warm init stages"). */
function summarize(procs: { role: string; mem: Mem }[]): { mem: Mem; roles: string } {
  const counts = new Map<string, number>();
  for (const p of procs) counts.set(p.role, (counts.get(p.role) ?? 0) + 1);
  const roles = [...counts].map(([r, n]) => (n === 1 ? r : `${n} × ${r}`)).join(", ");
  return { mem: procs.reduce((m, p) => addMem(m, p.mem), NO_MEM), roles };
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}
function median(xs: number[]): number {
  const s = sorted(xs);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
/** Nearest-rank percentile. */
function pct(xs: number[], p: number): number {
  const s = sorted(xs);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
}
const ms = (x: number) => x.toFixed(1);
const mib = (kib: number) => (kib / 1024).toFixed(1);

interface Case {
  name: string;
  /** What exactly is timed, for the method line. */
  what: string;
  isUcr?: boolean;
  /** A reference row (harness or workaround cost), not a peer. */
  reference?: boolean;
  times: number[];
  failure?: string;
  run?: () => Promise<number>;
}

const notes: string[] = [];

/**
 * Which mode the kernel's cgroup threadgroup lock is in, which changes what a cgroup move
 * costs. Default: one global percpu rwsem; a whole-process move (cgroup.procs) takes it for
 * writing, and the first writer in a while waits for an RCU grace period. Once any cgroup
 * hierarchy is mounted with `favordynmods` (Linux 6.18+), the kernel switches to per-process
 * locks for good (until reboot): fork and exit cost a little more, process moves never wait.
 * ucr's v1 join writes 0 to `tasks` (its own thread), which takes neither lock.
 */
async function cgroupLockMode(): Promise<string> {
  const mounted = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter((l) => / cgroup2? /.test(l) && /[ ,]favordynmods[ ,]/.test(l))
    .map((l) => l.split(" ")[1]);
  const r = await exec(["dmesg"], { stdout: true });
  const logged = r.code === 0 && /per threadgroup rwsem mechanism can't be disabled|favordynmods/.test(r.stdout);
  if (mounted.length > 0 || logged) {
    return `per-process (favordynmods) mode since ${mounted.length > 0 ? `the mount of ${mounted.join(", ")}` : "a favordynmods mount earlier in this boot (dmesg)"}; lasts until reboot. Process moves (crun's and podman's cgroup.procs writes) take a per-process lock and never wait for RCU; fork and exit take one more lock. ucr writes 0 to v1 \`tasks\`, which takes no threadgroup lock in either mode.`;
  }
  return r.code === 0 ? "default (global percpu rwsem) mode: no favordynmods mount since boot." : "default mode as far as /proc/mounts shows (dmesg unreadable).";
}

// ---------------------------------------------------------------------------------------------
// Setup of the peers

/** Is there a cgroup2 hierarchy with controllers at /sys/fs/cgroup/unified (crun refuses that)? */
function hybridWithControllers(): boolean {
  try {
    return readFileSync("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").trim() !== "";
  } catch {
    return false;
  }
}

/**
 * crun 1.x refuses the hybrid layout when cgroup2 has controllers (here hugetlb), whatever
 * --cgroup-manager says: it checks before choosing a manager. It decides "hybrid" by statfs of
 * /sys/fs/cgroup/unified, so a private mount namespace without that mount makes it plain v1,
 * without touching the host's cgroups. One long-lived process holds that namespace and each
 * run enters it with nsenter (its cost is measured as its own row).
 */
async function startHolder(dir: string): Promise<string[]> {
  checkStop();
  const ready = join(dir, "holder-ready");
  holder = Bun.spawn(
    ["unshare", "--mount", "--propagation", "private", "sh", "-c", `umount -l /sys/fs/cgroup/unified && : > ${ready} && exec sleep infinity`],
    // Detached like the agent: cleanup after a Ctrl-C still needs the namespace for podman rm.
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH }, detached: true },
  );
  for (let i = 0; i < 100 && !existsSync(ready); i++) {
    if (holder.exitCode !== null) break;
    await Bun.sleep(20);
  }
  if (!existsSync(ready)) {
    const err = holder.exitCode !== null ? await new Response(holder.stderr as ReadableStream).text() : "timed out";
    throw new Error(`could not make a mount namespace without cgroup2: ${err.trim()}`);
  }
  return ["nsenter", `--mount=/proc/${holder.pid}/ns/mnt`];
}

/** crun bundle from the same image: rootfs by umoci, config.json by `crun spec`. */
async function makeBundle(dir: string, archive: string): Promise<string> {
  const layout = join(dir, "oci");
  const bundle = join(dir, "bundle");
  await mustRun(["skopeo", "copy", "--quiet", `docker-archive:${archive}`, `oci:${layout}:t`]);
  await mustRun(["umoci", "unpack", "--image", `${layout}:t`, bundle]);
  // umoci wrote its own config.json; the brief's peer is crun's default spec.
  rmSync(join(bundle, "config.json"));
  const r = await exec(["sh", "-c", `cd '${bundle}' && crun spec`]);
  if (r.code !== 0) throw new Error(`crun spec: ${reason(r)}`);
  const specPath = join(bundle, "config.json");
  const spec = JSON.parse(readFileSync(specPath, "utf8")) as {
    process: { args: string[]; terminal: boolean };
    linux: { namespaces: { type: string }[] };
  };
  spec.process.args = ["/bin/true"];
  spec.process.terminal = false;
  // ucr keeps the host network (as Mesos does); so must crun, or it pays for a netns.
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "network");
  writeFileSync(specPath, JSON.stringify(spec, null, 2));
  return bundle;
}

const PODMAN_NPROC = 32768;

/** Hard limits podman's crun may set without CAP_SYS_RESOURCE (missing in this container). */
function ulimitArgs(): string[] {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = (label: string) => {
    const v = new RegExp(`^${label}\\s+\\S+\\s+(\\S+)`, "m").exec(limits)?.[1];
    return v === undefined || v === "unlimited" ? undefined : Number(v);
  };
  const nofile = hard("Max open files");
  // podman lowers its own RLIMIT_NPROC to 32768 as it starts (strace shows the setrlimit), and
  // crun inherits that: a larger hard limit is refused, even one this shell has.
  const nproc = Math.min(hard("Max processes") ?? PODMAN_NPROC, PODMAN_NPROC);
  return [...(nofile ? ["--ulimit", `nofile=${nofile}:${nofile}`] : []), ...(nproc ? ["--ulimit", `nproc=${nproc}:${nproc}`] : [])];
}

// ---------------------------------------------------------------------------------------------
// The perf probe: where a ucr launch spends its time, from kernel events of the processes
// involved (agent -> `ucr __init` stage 1 -> stage 2 -> exec of the workload).

interface PerfEvent {
  pid: number;
  t: bigint; // ns, CLOCK_MONOTONIC
  event: string;
  trace: string;
}

function parsePerf(text: string): PerfEvent[] {
  const out: PerfEvent[] = [];
  // "ucr  30340/30341  5231.648861234: sched:sched_process_fork: comm=ucr pid=... child_pid=..."
  const re = /^\s*.*?\s(\d+)\/(\d+)\s+(\d+)\.(\d+):\s+([\w:]+):\s*(.*)$/;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (!m) continue;
    const frac = m[4]!.padEnd(9, "0").slice(0, 9);
    out.push({ pid: Number(m[1]), t: BigInt(m[3]!) * 1_000_000_000n + BigInt(frac), event: m[5]!, trace: m[6]! });
  }
  return out;
}

const PHASES = [
  "agent: request to stage-1 exec (HTTP, rootfs dirs, cgroups, spec, spawn)",
  "stage 1 start-up (Bun runtime + init code) to its unshare",
  "stage 1 spawns stage 2 (to its exec)",
  "stage 2 start-up (Bun runtime + init code) to unshare(NEWNS)",
  "stage 2 mounts (overlay, proc, sys, dev, /etc files, sandbox) to pivot_root",
  "stage 2 pivot_root + umount2(old root, MNT_DETACH) returns",
  "stage 2 user, chdir, PATH lookup (JS) to its first cgroup.procs write",
  "that write until the kernel has moved it (v1 attach: waits for an RCU grace period)",
  "stage 2 remaining cgroup attaches to exec of /bin/true",
  "exec of /bin/true to LAUNCH response (fd 3 EOF, pid file, checkpoint, HTTP)",
  "/bin/true runs and exits",
  "workload exit to stage-1 exit (status file, Bun exit)",
  "stage-1 exit to WAIT response (reap, status, HTTP)",
] as const;

/** The same launch through the long-lived launcher and its warm stage 2 (started ahead). */
const LAUNCHER_PHASES = [
  "agent + launcher: request to the warm stage 2's unshare(UTS, IPC) (HTTP, rootfs, cgroups, spec, hand-off, spec read, stdio)",
  "stage 2 new namespaces and mounts (overlay, proc, sys, dev, /etc files, sandbox) to pivot_root",
  "stage 2 pivot_root + umount2(old root, MNT_DETACH) returns",
  "stage 2 user, chdir, PATH lookup (JS) to its first cgroup join write",
  "that write until the kernel has moved it",
  "stage 2 remaining cgroup joins to exec of /bin/true",
  "exec of /bin/true to LAUNCH response (fd 3 EOF, pid file, reply, checkpoint, HTTP)",
  "/bin/true runs and exits",
  "workload exit to WAIT response (launcher reaps, status file, exit event, HTTP)",
] as const;

async function perfProbe(a: Agent, ucr: string, dir: string): Promise<string[]> {
  if (!Bun.which("perf")) return ["(no perf installed: phase breakdown skipped)"];
  const data = join(dir, "perf.data");
  const perf = Bun.spawn(
    [
      "perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-a", "-o", data,
      "-e", "sched:sched_process_fork", "-e", "sched:sched_process_exec", "-e", "sched:sched_process_exit",
      "-e", "syscalls:sys_enter_unshare", "-e", "syscalls:sys_enter_pivot_root", "-e", "syscalls:sys_exit_umount",
      "-e", "cgroup:cgroup_attach_task",
      // Stage 2 is PID 1 of its namespace, so it joins a cgroup by writing the one byte "1".
      "-e", "syscalls:sys_enter_write", "--filter", "count == 1",
    ],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH } },
  );
  live.add(perf);
  // perf has no "ready" signal; it is recording well within this.
  await Bun.sleep(1000);
  const probes: UcrTiming[] = [];
  // process.hrtime counts from this process's start, perf from boot (CLOCK_MONOTONIC): the
  // offset comes from spawns whose exec the kernel records, between our two clock readings.
  const marks: { pid: number; before: bigint; after: bigint }[] = [];
  try {
    if (perf.exitCode !== null) return [`(perf record failed: ${(await new Response(perf.stderr).text()).trim().slice(0, 200)})`];
    for (let i = 0; i < 5; i++) {
      const before = process.hrtime.bigint();
      const p = Bun.spawn(["/bin/true"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
      const after = process.hrtime.bigint();
      marks.push({ pid: p.pid, before, after });
      await p.exited;
    }
    for (let i = 0; i < PROBES; i++) {
      // Spaced as the timed runs are (the other cases run between two ucr launches there):
      // the launcher starts its next warm init stage only after a launch's workload exits,
      // and back-to-back probes would time the wait for it instead.
      await Bun.sleep(PROBE_GAP_MS);
      probes.push(await ucrOnce(a));
    }
    await Bun.sleep(200);
  } finally {
    perf.kill("SIGINT");
    await perf.exited;
    live.delete(perf);
  }
  const script = await exec(["perf", "script", "-i", data, "-F", "comm,pid,tid,time,event,trace", "--ns"], { stdout: true, timeoutMs: 120_000 });
  if (script.code !== 0) return [`(perf script failed: ${reason(script)})`];
  const events = parsePerf(script.stdout);
  if (process.env.LAUNCH_DEBUG) writeFileSync("/tmp/launch-perf-debug.txt", `${JSON.stringify(probes.map((p) => [p.id, String(p.t0), String(p.t1), String(p.t2)]))}\n${script.stdout}`);

  const parent = new Map<number, number>(); // child pid (tid) -> forking process (tgid)
  const execs = new Map<number, { t: bigint; file: string }[]>();
  const unshares = new Map<number, bigint[]>();
  const pivots = new Map<number, bigint>();
  const umounts = new Map<number, bigint>(); // last umount2 return per process
  const attaches = new Map<number, bigint[]>(); // attached pid -> times its cgroup moves completed
  const writes1 = new Map<number, bigint>(); // first one-byte write per process
  const writes1All = new Map<number, bigint[]>(); // every one-byte write per process
  const exits = new Map<number, bigint>(); // tgid -> last thread exit
  for (const e of events) {
    if (e.event === "sched:sched_process_fork") {
      const child = Number(/child_pid=(\d+)/.exec(e.trace)?.[1]);
      parent.set(child, e.pid);
    } else if (e.event === "sched:sched_process_exec") {
      const file = /filename=(\S+)/.exec(e.trace)?.[1] ?? "";
      execs.set(e.pid, [...(execs.get(e.pid) ?? []), { t: e.t, file }]);
    } else if (e.event === "syscalls:sys_enter_unshare") {
      unshares.set(e.pid, [...(unshares.get(e.pid) ?? []), e.t]);
    } else if (e.event === "syscalls:sys_enter_pivot_root") {
      pivots.set(e.pid, e.t);
    } else if (e.event === "syscalls:sys_exit_umount") {
      umounts.set(e.pid, e.t);
    } else if (e.event === "syscalls:sys_enter_write") {
      if (!writes1.has(e.pid)) writes1.set(e.pid, e.t);
      writes1All.set(e.pid, [...(writes1All.get(e.pid) ?? []), e.t]);
    } else if (e.event === "cgroup:cgroup_attach_task") {
      // The task moved, not the writer (the same here: stage 2 joins by itself).
      const moved = Number(/ pid=(\d+)/.exec(e.trace)?.[1] ?? e.pid);
      attaches.set(moved, [...(attaches.get(moved) ?? []), e.t]);
    } else if (e.event === "sched:sched_process_exit") {
      const prev = exits.get(e.pid);
      if (prev === undefined || e.t > prev) exits.set(e.pid, e.t);
    }
  }
  // The tightest bracket wins; its half-width bounds the error of phases 1, 7 and 10.
  let offset: bigint | undefined;
  let width = 0n;
  for (const m of marks) {
    const ex = execs.get(m.pid)?.find((x) => x.file === "/bin/true" || x.file === "/usr/bin/true");
    if (!ex) continue;
    const w = m.after - m.before;
    if (offset === undefined || w < width) {
      offset = ex.t - (m.before + m.after) / 2n;
      width = w;
    }
  }
  if (offset === undefined) return ["(perf probe: no calibration spawn seen in the kernel events)"];
  for (const p of probes) {
    p.t0 += offset;
    p.t1 += offset;
    p.t2 += offset;
  }
  const agentPid = a.proc.pid;
  const stage1s = [...execs.entries()].filter(([pid, ex]) => parent.get(pid) === agentPid && ex.some((x) => x.file === ucr)).map(([pid]) => pid);
  const rows: number[][] = PHASES.map(() => []);
  let matched = 0;
  for (const p of probes) {
    // The stage 1 this LAUNCH started: exec'd by the agent between request and response.
    const s1 = stage1s.find((pid) => {
      const t = execs.get(pid)!.find((x) => x.file === ucr)!.t;
      return t >= p.t0 && t <= p.t1;
    });
    if (s1 === undefined) continue;
    const s2 = [...execs.keys()].find((pid) => parent.get(pid) === s1 && execs.get(pid)!.some((x) => x.file === ucr));
    if (s2 === undefined) continue;
    const s1exec = execs.get(s1)!.find((x) => x.file === ucr)!.t;
    const s1unshare = unshares.get(s1)?.[0];
    const s2exec = execs.get(s2)!.find((x) => x.file === ucr)!.t;
    const s2unshare = unshares.get(s2)?.[0];
    const pivot = pivots.get(s2);
    const umounted = umounts.get(s2);
    const attached = attaches.get(s2)?.[0];
    const written = writes1.get(s2);
    const wexec = execs.get(s2)!.find((x) => x.file !== ucr)?.t;
    const wexit = exits.get(s2);
    const s1exit = exits.get(s1);
    const marks = [p.t0, s1exec, s1unshare, s2exec, s2unshare, pivot, umounted, written, attached, wexec, p.t1, wexit, s1exit, p.t2];
    if (marks.some((m) => m === undefined)) continue;
    const ts = marks as bigint[];
    // The WAIT request goes out at t1; the workload usually exits before that, so the two
    // timelines overlap there: the LAUNCH response and the workload's exit are each measured
    // from exec of /bin/true.
    const d = (x: bigint, y: bigint) => Number(y - x) / 1e6;
    const vals = [
      ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => d(ts[i]!, ts[i + 1]!)), // request .. exec of /bin/true
      d(ts[9]!, ts[10]!), // exec .. LAUNCH response
      d(ts[9]!, ts[11]!), // exec .. workload exit
      d(ts[11]!, ts[12]!), // workload exit .. stage-1 exit
      d(ts[12]!, ts[13]!), // stage-1 exit .. WAIT response
    ];
    vals.forEach((v, i) => rows[i]!.push(v));
    matched++;
  }
  if (matched === 0) {
    // The launcher model: the workload's stage 2 is a child of the launcher, started before
    // the request; it is the process that execs /bin/true between request and response.
    const lrows: number[][] = LAUNCHER_PHASES.map(() => []);
    // Per launch: stage 2's one-byte writes and its cgroup moves before the exec.
    const joins: { writes: number; moves: number }[] = [];
    for (const p of probes) {
      const s2 = [...execs.entries()].find(([, ex]) => ex.some((x) => (x.file === "/bin/true" || x.file === "/usr/bin/true") && x.t >= p.t0 && x.t <= p.t1))?.[0];
      if (s2 === undefined || execs.get(s2)!.every((x) => x.file !== ucr)) continue;
      const wexec = execs.get(s2)!.find((x) => x.file !== ucr)!.t;
      const after = (xs: bigint[] | undefined) => xs?.find((t) => t >= p.t0 && t <= wexec);
      const s2unshare = after(unshares.get(s2));
      const pivot = pivots.get(s2);
      const umounted = umounts.get(s2);
      // The first one-byte write of this launch (a warm stage also wrote one when it was ready).
      const written = after(writes1All.get(s2));
      const attached = after(attaches.get(s2));
      const wexit = exits.get(s2);
      const marks = [p.t0, s2unshare, pivot, umounted, written, attached, wexec];
      if (marks.some((m) => m === undefined) || wexit === undefined) continue;
      const ts = marks as bigint[];
      const d = (x: bigint, y: bigint) => Number(y - x) / 1e6;
      [...[0, 1, 2, 3, 4, 5].map((i) => d(ts[i]!, ts[i + 1]!)), d(wexec, p.t1), d(wexec, wexit), d(wexit, p.t2)].forEach((v, i) => lrows[i]!.push(v));
      const inLaunch = (xs: bigint[] | undefined) => (xs ?? []).filter((t) => t >= p.t0 && t <= wexec).length;
      joins.push({ writes: inLaunch(writes1All.get(s2)), moves: inLaunch(attaches.get(s2)) });
      matched++;
    }
    if (matched === 0) return [`(perf probe: none of ${probes.length} launches could be matched to kernel events; ${events.length} events seen)`];
    const out = [
      `Phases of a ucr LAUNCH + WAIT from kernel events, launcher model (\`perf record -a\` of fork, exec, exit, unshare, pivot_root, umount, one-byte write and cgroup attach; ${matched} of ${probes.length} extra launches, medians; not part of the timings above):`,
      "",
      "| phase | median ms | p95 ms |",
      "|---|---:|---:|",
    ];
    LAUNCHER_PHASES.forEach((name, i) => out.push(`| ${i + 1}. ${name} | ${ms(median(lrows[i]!))} | ${ms(pct(lrows[i]!, 95))} |`));
    const total = probes.map((p) => Number(p.t2 - p.t0) / 1e6);
    out.push("", `(LAUNCH + WAIT: median ${ms(median(total))} ms. Phases 7-9 overlap: the LAUNCH response and the workload's exit are each measured from its exec. Client and kernel clocks aligned within ±${(Number(width) / 2e6).toFixed(2)} ms.)`);
    const kinds = [...new Set(joins.map((j) => `${j.writes} one-byte write(s) and ${j.moves} cgroup move(s)`))];
    out.push(
      "",
      `Cgroup joins seen per launch (stage 2, before its exec): ${kinds.join("; or ")}. A one-byte write to a v1 \`tasks\` file is \`0\`: it moves the writing thread only, which the kernel does without its threadgroup lock in either lock mode (kernel/cgroup/cgroup.c, cgroup_procs_write_start); a pid written to cgroup.procs (several bytes) would take it.`,
    );
    return out;
  }
  const out = [
    `Phases of a ucr LAUNCH + WAIT from kernel events (\`perf record -a\` of fork, exec, exit, unshare, pivot_root, umount, one-byte write and cgroup attach; ${matched} of ${probes.length} extra launches, medians; not part of the timings above):`,
    "",
    "| phase | median ms | p95 ms |",
    "|---|---:|---:|",
  ];
  PHASES.forEach((name, i) => out.push(`| ${i + 1}. ${name} | ${ms(median(rows[i]!))} | ${ms(pct(rows[i]!, 95))} |`));
  const launch = probes.map((p) => Number(p.t1 - p.t0) / 1e6);
  const total = probes.map((p) => Number(p.t2 - p.t0) / 1e6);
  out.push(
    "",
    `(LAUNCH = phases 1-10: median ${ms(median(launch))} ms; LAUNCH + WAIT: ${ms(median(total))} ms. Phases 11-12 start while the LAUNCH response is on its way, so they overlap phase 10 when /bin/true exits first. Client and kernel clocks aligned within ±${(Number(width) / 2e6).toFixed(2)} ms.)`,
  );
  return out;
}

// ---------------------------------------------------------------------------------------------
// Bursts: the same tools launched spaced, back to back, and by parallel clients

interface BurstTool {
  name: string;
  /** One launch of /bin/true to its end; its wall time in ms. */
  once: () => Promise<number>;
  /** Untimed work after each series (ucr: REMOVE of what the series launched). */
  after?: () => Promise<void>;
}

type BurstKind = "spaced" | "seq" | "par";
const BURST_KINDS: { kind: BurstKind; label: string }[] = [
  { kind: "spaced", label: `spaced (${SPACED_N}, ${SPACED_GAP_MS} ms apart)` },
  { kind: "seq", label: `sequential burst of ${SEQ_N}, no gap` },
  { kind: "par", label: `${PAR_CLIENTS} parallel clients × ${PAR_EACH} back to back` },
];

async function runBursts(tools: BurstTool[]): Promise<Map<string, { times: Record<BurstKind, number[]>; failure?: string }>> {
  const out = new Map(tools.map((t) => [t.name, { times: { spaced: [], seq: [], par: [] } as Record<BurstKind, number[]>, failure: undefined as string | undefined }]));
  for (let round = 0; round < BURST_ROUNDS; round++) {
    for (const { kind } of BURST_KINDS) {
      const k = round % tools.length;
      for (const tool of [...tools.slice(k), ...tools.slice(0, k)]) {
        const r = out.get(tool.name)!;
        if (r.failure) continue;
        checkStop();
        // Whatever the last series left running settles first.
        await Bun.sleep(500);
        try {
          if (kind === "spaced") {
            for (let i = 0; i < SPACED_N; i++) {
              await Bun.sleep(SPACED_GAP_MS);
              r.times.spaced.push(await tool.once());
            }
          } else if (kind === "seq") {
            for (let i = 0; i < SEQ_N; i++) r.times.seq.push(await tool.once());
          } else {
            await Promise.all(
              Array.from({ length: PAR_CLIENTS }, async () => {
                for (let i = 0; i < PAR_EACH; i++) r.times.par.push(await tool.once());
              }),
            );
          }
          await tool.after?.();
        } catch (e) {
          if (cleaning) throw e;
          r.failure = `${kind}: ${(e as Error).message}`;
        }
      }
      console.error(`launch: bursts, round ${round + 1}/${BURST_ROUNDS}, ${kind} done`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root (containers, namespaces, podman --root)");
  if (!existsSync(BUILT_UCR)) throw new Error(`${BUILT_UCR} is missing: cd ${ROOT} && bun run build`);
  for (const t of ["crun", "podman", "skopeo", "umoci", "unshare", "nsenter", "chroot"]) {
    if (!Bun.which(t, { PATH })) throw new Error(`${t} is not installed`);
  }
  const started = performance.now();
  const loadBefore = loadavg();
  // Short: podman's runroot must stay under 50 characters.
  base = mkdtempSync("/tmp/ulb-");
  const dir = base;
  // A private copy of the binary: a rebuild of dist/ucr during the run (other work on this
  // tree does that) would otherwise break the agent's `ucr __init` spawns ("(deleted)").
  const ucr = join(dir, "ucr-bin");
  copyFileSync(BUILT_UCR, ucr);
  chmodSync(ucr, 0o755);

  const images = join(dir, "img");
  await mustRun([process.execPath, join(ROOT, "scripts", "make-alpine.ts"), images]);
  const archive = join(images, "alpine.tar");

  // ---- ucr
  const cases: Case[] = [];
  const ucrCase: Case = { name: "ucr (LAUNCH + WAIT)", what: "LAUNCH_CONTAINER then WAIT_CONTAINER over HTTP (fetch, keep-alive)", isUcr: true, times: [] };
  const ucrLaunch: number[] = [];
  const ucrWait: number[] = [];
  const ucrIds: string[] = [];
  agent = await Agent.start(ucr, join(dir, "ucr"), images);
  const a = agent;
  await Bun.sleep(500); // let start-up allocation settle before the idle reading
  const memIdleStart = summarize(processesOf(ucr));
  // The first launch pulls alpine into the store: the cache every later launch uses.
  const pullT0 = performance.now();
  await ucrOnce(a);
  const firstLaunchMs = performance.now() - pullT0;
  await Bun.sleep(300);
  const memPulled = summarize(processesOf(ucr));
  ucrCase.run = async () => {
    const t = await ucrOnce(a);
    ucrLaunch.push(t.launchMs);
    ucrWait.push(t.waitMs);
    ucrIds.push(t.id);
    return t.launchMs + t.waitMs;
  };
  cases.push(ucrCase);

  // ---- crun
  const bundle = await makeBundle(dir, archive);
  const rootfs = join(bundle, "rootfs");
  const crunState = join(dir, "crun");
  mkdirSync(crunState);
  let nsPrefix: string[] = [];
  const crunCase: Case = { name: "crun run", what: "`crun run` of a prepared bundle (container deleted by crun run itself)", times: [] };
  {
    const base = ["crun", "--root", crunState];
    let crunSeq = 0;
    const tryCrun = async (prefix: string[], extra: string[]) => {
      const r = await exec([...prefix, ...base, ...extra, "run", "-b", bundle, `${ID_PREFIX}-c${++crunSeq}`]);
      return r;
    };
    let prefix: string[] = [];
    let extra: string[] = [];
    let r = await tryCrun(prefix, extra);
    const tried: string[] = [];
    if (r.code !== 0 && /hybrid mode/.test(r.stderr)) {
      tried.push(`plain \`crun run\`: ${reason(r)}`);
      r = await tryCrun(prefix, ["--cgroup-manager=disabled"]);
      if (r.code === 0) extra = ["--cgroup-manager=disabled"];
      else {
        tried.push(`\`crun --cgroup-manager=disabled run\`: ${reason(r)} (crun checks the layout before it looks at the manager)`);
        if (hybridWithControllers()) {
          nsPrefix = await startHolder(dir);
          prefix = nsPrefix;
          r = await tryCrun(prefix, extra);
        }
      }
    }
    if (r.code !== 0) {
      crunCase.failure = `${reason(r)}${tried.length ? ` (tried: ${tried.join("; ")})` : ""}`;
    } else {
      crunCmd = [...prefix, ...base];
      if (tried.length) {
        notes.push(
          `crun: ${tried.join("; ")}. What works: running it in a private mount namespace where /sys/fs/cgroup/unified (cgroup2, holding the ${readFileSync("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").trim() || "?"} controller) is unmounted, so crun sees plain cgroup v1 and uses its cgroupfs manager there: \`nsenter --mount=/proc/<holder>/ns/mnt crun run ...\`, with the holder \`unshare --mount --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec sleep infinity'\`. The host's cgroups are not changed. nsenter's own cost is the "nsenter /bin/true" row.`,
        );
        crunCase.name = "crun run (via nsenter, see notes)";
      }
      if (extra.length) notes.push(`crun: ran with \`${extra.join(" ")}\`, so it makes no cgroups (ucr makes three per container).`);
      crunCase.run = async () => {
        const res = await tryCrun(prefix, extra);
        if (res.code !== 0) throw new Error(`crun run: ${reason(res)}`);
        return res.ms;
      };
    }
  }
  cases.push(crunCase);

  // ---- podman
  /** `podman run` argv for a command, once podman is known to work (for the memory step too). */
  let podmanRun: ((cmd: string[], detach?: boolean) => string[]) | undefined;
  const podmanCase: Case = { name: "podman run --rm", what: "`podman run --rm --network host` (container removed by podman itself)", times: [] };
  {
    for (const ctl of readdirSync("/sys/fs/cgroup")) {
      const d = `/sys/fs/cgroup/${ctl}/libpod_parent`;
      if (!existsSync(d) && existsSync(`/sys/fs/cgroup/${ctl}/cgroup.procs`)) podmanCgroups.push(d, `${d}/conmon`);
    }
    const p = join(dir, "p");
    const global = ["podman", "--root", join(p, "r"), "--runroot", join(p, "rr"), "--tmpdir", join(p, "t"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"];
    // podman's crun has the same hybrid-layout problem; it runs in the same namespace as crun.
    podmanCmd = [...nsPrefix, ...global];
    const load = await exec([...podmanCmd, "load", "-q", "-i", archive], { stdout: true, timeoutMs: 120_000 });
    if (load.code !== 0) podmanCase.failure = `podman load: ${reason(load)}`;
    else {
      const runArgs = (extra: string[], cmd: string[]) => [...podmanCmd!, "run", "--rm", "--network", "host", "--pull", "never", ...extra, "localhost/alpine:latest", ...cmd];
      let extra: string[] = [];
      let r = await exec(runArgs(extra, ["/bin/true"]));
      if (r.code !== 0 && /setrlimit/.test(r.stderr)) {
        const first = reason(r);
        extra = ulimitArgs();
        r = await exec(runArgs(extra, ["/bin/true"]));
        if (r.code === 0) {
          notes.push(
            `podman: its default RLIMIT_NOFILE/NPROC (1048576 for root) cannot be set here (${first.replace(/^exit \d+: /, "")}: this container lacks CAP_SYS_RESOURCE), so it runs with \`${extra.join(" ")}\` (the hard nofile limit here; nproc at most 32768, to which podman lowers its own limit as it starts, so crun cannot set more).`,
          );
        }
      }
      if (r.code !== 0) podmanCase.failure = reason(r);
      else {
        if (nsPrefix.length) {
          notes.push("podman: run through the same nsenter namespace as crun (its crun hits the same hybrid-layout check); `--cgroup-manager cgroupfs --events-backend file`, private `--root/--runroot/--tmpdir`, `--pull never`.");
          podmanCase.name = "podman run --rm (via nsenter)";
        }
        const chosen = extra;
        podmanRun = (cmd, detach = false) =>
          detach ? [...podmanCmd!, "run", "-d", "--network", "host", "--pull", "never", ...chosen, "localhost/alpine:latest", ...cmd] : runArgs(chosen, cmd);
        const run = podmanRun;
        podmanCase.run = async () => {
          const res = await exec(run(["/bin/true"]));
          if (res.code !== 0) throw new Error(`podman run: ${reason(res)}`);
          return res.ms;
        };
      }
    }
  }
  cases.push(podmanCase);

  // ---- kernel floor and reference rows
  const floor: Case = { name: "kernel floor: unshare -fpmiu --mount-proc chroot", what: "util-linux unshare (PID, mount, IPC, UTS ns + /proc) + chroot into the bundle's rootfs", times: [] };
  floor.run = async () => {
    const r = await exec(["unshare", "-fpmiu", "--mount-proc", "chroot", rootfs, "/bin/true"]);
    if (r.code !== 0) throw new Error(`unshare: ${reason(r)}`);
    return r.ms;
  };
  cases.push(floor);
  const spawnRef: Case = { name: "reference: spawn /bin/true (no container)", what: "the harness's own process spawn + wait", reference: true, times: [] };
  spawnRef.run = async () => (await exec(["/bin/true"])).ms;
  cases.push(spawnRef);
  if (nsPrefix.length) {
    const nsRef: Case = { name: "reference: nsenter --mount /bin/true", what: "the workaround's cost inside the crun and podman rows", reference: true, times: [] };
    nsRef.run = async () => (await exec([...nsPrefix, "/bin/true"])).ms;
    cases.push(nsRef);
  }
  const ucrStart: Case = { name: "reference: `ucr version` (one start of the binary)", what: "process start of the ucr binary; a launch starts it once (init stage 2, forked by the long-lived launcher)", reference: true, times: [] };
  ucrStart.run = async () => (await exec([ucr, "version"])).ms;
  cases.push(ucrStart);

  // ---- warm-ups, then rounds with the order rotated, so drift and noise hit every tool alike
  const runnable = () => cases.filter((c) => c.run && !c.failure);
  console.error(`launch: ${runnable().length} cases, ${WARMUPS} warm-up(s) + ${RUNS} timed run(s) each`);
  for (const c of runnable()) {
    for (let i = 0; i < WARMUPS; i++) {
      try {
        await c.run!();
      } catch (e) {
        if (cleaning) throw e;
        c.failure = (e as Error).message;
        break;
      }
    }
  }
  ucrLaunch.length = 0;
  ucrWait.length = 0;
  ucrIds.length = 0;
  for (let round = 0; round < RUNS; round++) {
    const order = runnable();
    const k = round % Math.max(1, order.length);
    for (const c of [...order.slice(k), ...order.slice(0, k)]) {
      try {
        c.times.push(await c.run!());
      } catch (e) {
        if (cleaning) throw e;
        c.failure = `${(e as Error).message} (after ${c.times.length} runs)`;
      }
    }
    if ((round + 1) % 10 === 0) console.error(`launch: ${round + 1}/${RUNS} rounds`);
  }

  // ---- bursts, side by side
  const burstTools: BurstTool[] = [];
  {
    const kept: string[] = [];
    burstTools.push({
      name: "ucr",
      once: async () => {
        const t = await ucrOnce(a, true);
        kept.push(t.id);
        return t.launchMs + t.waitMs;
      },
      after: async () => {
        for (const id of kept.splice(0)) await ucrRemove(a, id);
      },
    });
  }
  if (crunCase.run && !crunCase.failure) burstTools.push({ name: crunCase.name, once: crunCase.run });
  if (podmanCase.run && !podmanCase.failure) burstTools.push({ name: podmanCase.name, once: podmanCase.run });
  console.error(`launch: bursts (${burstTools.map((t) => t.name).join(", ")}), ${BURST_ROUNDS} round(s)`);
  const bursts = await runBursts(burstTools);

  await Bun.sleep(300);
  const memAfterLaunches = summarize(processesOf(ucr));
  const launchesSoFar = ucrLaunches;

  // ---- where ucr's time goes
  const server = serverLaunchMs(a.log);
  const serverTimes = ucrIds.map((id) => server.get(id)).filter((x): x is number => x !== undefined);
  let phaseLines: string[] = [];
  try {
    phaseLines = await perfProbe(a, ucr, dir);
  } catch (e) {
    if (cleaning) throw e;
    phaseLines = [`(perf probe failed: ${(e as Error).message})`];
  }

  // ---- memory: idle again, then with containers running
  console.error("launch: memory idle (waiting for the launcher and the worker threads to go), then with containers running");
  const memRows: string[] = [];
  const memRow = (what: string, procs: string, m: Mem | undefined, why?: string) =>
    memRows.push(m ? `| ${what} | ${procs} | ${mib(m.rssKiB)} | ${mib(m.pssKiB)} | ${mib(m.ussKiB)} |` : `| ${what} | failed: ${why ?? "?"} | | | |`);
  memRow("ucr, every process: idle, just started", memIdleStart.roles, memIdleStart.mem);
  memRow(`ucr, every process: idle after the image pull (first launch, ${ms(firstLaunchMs)} ms)`, memPulled.roles, memPulled.mem);
  memRow(`ucr, every process: right after ${launchesSoFar} launches`, memAfterLaunches.roles, memAfterLaunches.mem);
  {
    // The launcher (and its reaper and warm stages) exit once the agent has closed its idle
    // connection (10 s) and 2 s more; the worker threads stop 10 s after their last call, and
    // the agent then gives memory back (it logs "idle: ...").
    const since = performance.now();
    const logged = a.log.length;
    const quiet = () => processesOf(ucr).length === 1 && a.log.slice(logged).some((l) => / idle: /.test(l));
    while (performance.now() - since < 40_000 && !quiet()) await Bun.sleep(250);
    await Bun.sleep(500);
    const idle = summarize(processesOf(ucr));
    memRow(`ucr, every process: idle again (${((performance.now() - since) / 1000).toFixed(0)} s after the last launch)`, idle.roles, idle.mem);
  }
  {
    const ids: string[] = [];
    let failure: string | undefined;
    for (let i = 0; i < MEM_CONTAINERS && !failure; i++) {
      const id = nextId("sleep");
      ucrLive.add(id);
      const l = await a.call("LAUNCH_CONTAINER", launchBody(id, ["/bin/sleep", "600"]));
      if (l.status !== 200) failure = `LAUNCH ${l.status}: ${l.text.trim()}`;
      else ids.push(id);
    }
    await Bun.sleep(500);
    if (failure) memRow(`ucr, ${MEM_CONTAINERS} containers running`, "", undefined, failure);
    else {
      const running = summarize(processesOf(ucr));
      memRow(`ucr, ${MEM_CONTAINERS} containers running: every ucr process`, running.roles, running.mem);
      const workloads = ids.map((id) => memOf(Number(readFileSync(join(dir, "ucr", "run", "containers", id, "pid"), "utf8").trim())));
      const per = workloads.reduce(addMem, NO_MEM);
      memRow(`**ucr, per container: the workload only** (\`sleep\`, mean of ${MEM_CONTAINERS})`, "workload", { rssKiB: per.rssKiB / MEM_CONTAINERS, pssKiB: per.pssKiB / MEM_CONTAINERS, ussKiB: per.ussKiB / MEM_CONTAINERS });
    }
    for (const id of ids) {
      await a.call("KILL_CONTAINER", { kill_container: { container_id: { value: id } } });
      await a.call("WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
      await ucrRemove(a, id).catch(() => {});
    }
  }
  {
    if (!podmanRun || !podmanCmd) memRow("podman per container", "", undefined, podmanCase.failure ?? "podman did not run");
    else {
      const cids: string[] = [];
      let failure: string | undefined;
      for (let i = 0; i < MEM_CONTAINERS && !failure; i++) {
        const r = await exec(podmanRun(["sleep", "600"], true), { stdout: true });
        if (r.code !== 0) failure = reason(r);
        else cids.push(r.stdout.trim());
      }
      await Bun.sleep(500);
      const conmons: Mem[] = [];
      const workloads: Mem[] = [];
      for (const cid of cids) {
        const ins = await exec([...podmanCmd, "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", cid], { stdout: true });
        const [conmon, workload] = ins.stdout.trim().split(/\s+/).map(Number);
        if (ins.code !== 0 || !conmon || !workload) {
          failure ??= `inspect: ${reason(ins)}`;
          continue;
        }
        conmons.push(memOf(conmon));
        workloads.push(memOf(workload));
      }
      if (failure || conmons.length === 0) memRow("podman per container", "", undefined, failure);
      else {
        const mean = (ms: Mem[]) => {
          const t = ms.reduce(addMem, NO_MEM);
          return { rssKiB: t.rssKiB / ms.length, pssKiB: t.pssKiB / ms.length, ussKiB: t.ussKiB / ms.length };
        };
        memRow(`podman, ${conmons.length} containers running: conmon, all together`, `${conmons.length} × conmon`, conmons.reduce(addMem, NO_MEM));
        memRow(`podman, per container: conmon (mean of ${conmons.length})`, "conmon", mean(conmons));
        memRow(`**podman, per container: conmon + workload** (\`sleep\`, mean)`, "conmon, workload", addMem(mean(conmons), mean(workloads)));
      }
      if (cids.length) await exec([...podmanCmd, "rm", "-f", "-t", "0", ...cids], { timeoutMs: 120_000 });
    }
  }

  // ---- report
  const ucrMed = ucrCase.times.length && !ucrCase.failure ? median(ucrCase.times) : undefined;
  const table = ["| case | median ms | p95 ms | min ms | runs | peer/ucr (median) |", "|---|---:|---:|---:|---:|---:|"];
  for (const c of cases) {
    if (c.failure && c.times.length === 0) {
      table.push(`| ${c.name} | failed: ${c.failure.replace(/\|/g, "/")} | | | 0 | |`);
      continue;
    }
    const med = median(c.times);
    const ratio = c.isUcr ? "1.00" : c.reference ? "" : ucrMed ? (med / ucrMed).toFixed(2) : "n/a";
    table.push(`| ${c.name}${c.failure ? ` (then failed: ${c.failure.replace(/\|/g, "/")})` : ""} | ${ms(med)} | ${ms(pct(c.times, 95))} | ${ms(Math.min(...c.times))} | ${c.times.length} | ${ratio} |`);
  }
  if (ucrLaunch.length) {
    table.push(
      `| &nbsp;&nbsp;ucr: LAUNCH_CONTAINER alone | ${ms(median(ucrLaunch))} | ${ms(pct(ucrLaunch, 95))} | ${ms(Math.min(...ucrLaunch))} | ${ucrLaunch.length} | |`,
      `| &nbsp;&nbsp;ucr: WAIT_CONTAINER alone | ${ms(median(ucrWait))} | ${ms(pct(ucrWait, 95))} | ${ms(Math.min(...ucrWait))} | ${ucrWait.length} | |`,
    );
    if (serverTimes.length) {
      table.push(`| &nbsp;&nbsp;ucr: LAUNCH as the agent logs it (server side) | ${ms(median(serverTimes))} | ${ms(pct(serverTimes, 95))} | ${ms(Math.min(...serverTimes))} | ${serverTimes.length} | |`);
    }
  }

  const lockMode = await cgroupLockMode();
  const versions = async (cmd: string[]) => {
    const r = await exec(cmd, { stdout: true });
    return (r.stdout.trim() || r.stderr.trim()).split("\n")[0] ?? "?";
  };
  const loadAfter = loadavg();
  const header = [
    `# ucr container start vs peers, ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`,
    "",
    `Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}; /tmp is ${(await versions(["findmnt", "-no", "FSTYPE", "-T", dir])) || "?"}.`,
    `Tools: ${await versions([ucr, "version"])}; ${(await versions(["crun", "--version"])).trim()}; ${await versions(["podman", "--version"])}; ${await versions(["unshare", "--version"])}.`,
    `Image: \`alpine\` from \`scripts/make-alpine.ts\` (busybox-static, one layer), cached: ucr pulled it once (first launch), podman loaded the same archive, crun and unshare use its rootfs unpacked by umoci.`,
    `Method: ${WARMUPS} untimed warm-up(s) per case, then ${RUNS} rounds, each running every case once in an order rotated per round. Wall time from spawn to exit of the whole command (ucr: from the LAUNCH request to the WAIT response; REMOVE_CONTAINER follows each run, untimed). Container IDs fresh per run. ucr's agent: \`--image_providers=docker --isolation=filesystem/linux,docker/runtime\`, overlay backend, its cgroups (cpu, cpuacct, memory) made and removed per container; all containers keep the host network.`,
    `Kernel cgroup threadgroup lock: ${lockMode}`,
    `Load average (1 min) at start ${loadBefore[0]?.toFixed(2)}, at end ${loadAfter[0]?.toFixed(2)}: other work on the machine shows up here as noise.`,
    `peer/ucr = case median / ucr median: > 1 means ucr is faster.`,
  ];
  const memTable = [
    "Memory (from /proc/<pid>/smaps_rollup, summed over every process running the ucr binary: agent, launcher, its reaper, warm init stages; PSS splits shared pages among the processes mapping them, so a sum of PSS counts each page once; USS = Private_Clean + Private_Dirty, what a process frees when it exits):",
    "",
    "| what | processes | RSS MiB | PSS MiB | USS MiB |",
    "|---|---|---:|---:|---:|",
    ...memRows,
  ];

  // Bursts: each tool's spaced median is its own reference.
  const burstTable = [
    `| tool | ${BURST_KINDS.map((k) => `${k.label}: median ms (p95)`).join(" | ")} | burst / spaced (seq, par) |`,
    `|---|${BURST_KINDS.map(() => "---:").join("|")}|---:|`,
  ];
  const burstMedians = new Map<string, Partial<Record<BurstKind, number>>>();
  for (const [name, r] of bursts) {
    const meds: Partial<Record<BurstKind, number>> = {};
    const cells = BURST_KINDS.map(({ kind }) => {
      const xs = r.times[kind];
      if (xs.length === 0) return "failed";
      meds[kind] = median(xs);
      return `${ms(median(xs))} (${ms(pct(xs, 95))})`;
    });
    burstMedians.set(name, meds);
    const ratio = (k: BurstKind) => (meds[k] !== undefined && meds.spaced ? (meds[k]! / meds.spaced).toFixed(2) : "n/a");
    burstTable.push(`| ${name}${r.failure ? ` (failed: ${r.failure.replace(/\|/g, "/").slice(0, 160)})` : ""} | ${cells.join(" | ")} | ${ratio("seq")}, ${ratio("par")} |`);
  }
  const u = burstMedians.get("ucr") ?? {};
  const c = crunCase.run ? burstMedians.get(crunCase.name) : undefined;
  const goal = (k: BurstKind) => {
    if (u[k] === undefined || !u.spaced) return `${k}: not measured`;
    const within = u[k]! <= u.spaced * 1.1;
    const vsCrun = c?.[k] !== undefined ? ` and ${u[k]! <= c[k]! ? "at or below" : "above"} crun's ${ms(c[k]!)} ms` : "";
    return `${k === "seq" ? "sequential burst" : "parallel clients"} ${ms(u[k]!)} ms: ${within ? "within" : "not within"} 10 % of ucr's spaced ${ms(u.spaced)} ms (${((u[k]! / u.spaced - 1) * 100).toFixed(0)} %)${vsCrun}`;
  };
  burstTable.push("", `Goals (issue #15): ${goal("seq")}; ${goal("par")}.`);
  notes.push(
    "What each timed command includes differs: `crun run` starts from a ready bundle (no image, no overlay; rootfs read-only), `podman run --rm` also resolves the image, mounts an overlay, starts conmon and removes the container before it exits; ucr resolves the image, mounts an overlay, makes cgroups and answers over HTTP, and removes the container in the untimed REMOVE.",
    "crun with `--detach` or without a monitor keeps no process per container; ucr keeps none either: one long-lived launcher (a Bun process, with a small reaper process as its parent; both shared by all containers of the agent, both gone when the agent is idle) waits for every container and reports its exit status; podman keeps conmon per container.",
    `Bursts: ucr launches back to back leave their containers until the series ends (REMOVE afterwards, untimed), so \`next LAUNCH as soon as WAIT answers\`; crun and podman remove theirs as part of the timed command. Parallel clients: ${PAR_CLIENTS} concurrent clients, each launching ${PAR_EACH} times back to back; every launch is one sample. ${BURST_ROUNDS} round(s), tools in rotated order.`,
  );
  const out = [
    ...header,
    "",
    "Latency of starting a container that runs `/bin/true` to its exit:",
    "",
    ...table,
    "",
    "What each row times:",
    "",
    ...cases.map((c) => `- ${c.name}: ${c.what}.`),
    "",
    `Bursts: the same tools spaced, back to back and from ${PAR_CLIENTS} clients at once (\`/bin/true\`, wall time of each launch to its end):`,
    "",
    ...burstTable,
    "",
    ...phaseLines,
    "",
    ...memTable,
    "",
    "Notes:",
    "",
    ...notes.map((n) => `- ${n}`),
    "",
  ].join("\n");
  console.log(`\n${out}`);
  writeResult("launch", out, quick || RUNS < 50, started);
}

await runBench("bench/launch.ts", main, cleanup, () => cleaning !== undefined);
