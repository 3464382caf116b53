// Benchmark (not a test): LAUNCH+WAIT of `/bin/true` with two (or more) ucr binaries, A and B,
// in one run, interleaved (A B, B A, ...: each round in another order), so the load of
// anything else on a shared machine falls on all alike. For checking what a change to the
// launch path costs.
//
//   bun bench/launch-ab.ts /path/to/ucr-A [/path/to/ucr-B (default dist/ucr)] [more...] [--runs N] [--quick]
//                          [--parallel C] [--pause MS]
//
// --parallel C: each round is a burst per binary instead of one launch: C clients at once,
// each launching 5 times back to back (every launch one sample; REMOVEs after the burst).
// --pause MS: each agent waits MS before its turn (as an orchestrator's bursts have gaps; what
// an agent does when idle, such as making spare directories, then happens between them).
//
// Each binary gets its own agent (own work, runtime and cgroups dirs, the same busybox archive,
// --isolation=filesystem/linux,docker/runtime); a few untimed launches first. Prints medians,
// p25, p90 and the differences to A; writes nothing. On a shared machine, run it under
// `nice -n -20` (the agents inherit it) and compare the lower percentiles too.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { startAgent, type RunningAgent } from "../test/helpers/agent.ts";
import { buildBusyboxImage, saveArchive } from "../test/helpers/images.ts";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const runsAt = argv.indexOf("--runs");
const parallelAt = argv.indexOf("--parallel");
const PARALLEL = parallelAt >= 0 ? Number(argv[parallelAt + 1]) : 0;
const pauseAt = argv.indexOf("--pause");
const PAUSE_MS = pauseAt >= 0 ? Number(argv[pauseAt + 1]) : 0;
const PER_CLIENT = 5;
const RUNS = runsAt >= 0 ? Number(argv[runsAt + 1]) : PARALLEL > 0 ? (quick ? 4 : 12) : quick ? 40 : 150;
const bins = argv.filter((a, i) => !a.startsWith("--") && !["--runs", "--parallel", "--pause"].includes(argv[i - 1] ?? ""));
if (bins.length < 1 || !Number.isInteger(RUNS) || RUNS < 1) {
  console.error("usage: bun bench/launch-ab.ts UCR_A [UCR_B] [--runs N] [--quick]");
  process.exit(2);
}
if (bins.length === 1) bins.push(join(dirname(import.meta.dir), "dist", "ucr"));
const names = bins.map((_, i) => String.fromCharCode(65 + i));
const WARMUPS = 5;
const PATH = process.env.PATH ?? "/usr/bin:/bin";

class Agent {
  private constructor(
    readonly name: string,
    private readonly agent: RunningAgent,
    readonly cgroupsRoot: string,
  ) {}

  /** The shared agent starter (test/helpers/agent.ts), on this run's directory. */
  static async start(name: string, bin: string, dir: string, images: string): Promise<Agent> {
    const cgroupsRoot = `ucr-bench/${dir.split("/").pop()}-${name}`;
    const agent = await startAgent({
      binary: bin,
      args: [
        `--work_dir=${join(dir, name)}`,
        `--runtime_dir=${join(dir, name, "run")}`,
        `--cgroups_root=${cgroupsRoot}`,
        `--docker_registry=${images}`,
        "--image_providers=docker",
        "--isolation=filesystem/linux,docker/runtime",
        "--logging_level=WARNING",
      ],
      env: { PATH },
      detached: true,
      listenTimeoutMs: 30_000,
    });
    return new Agent(name, agent, cgroupsRoot);
  }

  async call(body: unknown): Promise<{ status: number; text: string }> {
    const res = await this.agent.call(body);
    return { status: res.status, text: await res.text() };
  }

  private seq = 0;

  /** LAUNCH alone, and WAIT alone, of each run (ms). */
  readonly parts = { launch: [] as number[], wait: [] as number[] };

  /** LAUNCH + WAIT of /bin/true, timed; REMOVE after, not timed. */
  async once(): Promise<number> {
    const { ms, id } = await this.launchWait();
    await this.remove(id);
    return ms;
  }

  /** CPU (ms) of the agent's main thread and of the whole agent over the timed launches, and their count. */
  readonly cpu = { main: 0, all: 0, launches: 0 };

  private cpuNow(): { main: number; all: number } {
    const pid = this.agent.proc.pid;
    const ticks = (path: string) => {
      const f = readFileSync(path, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
      return (Number(rest[11]) + Number(rest[12])) * 10; // utime + stime, USER_HZ 100
    };
    return { main: ticks(`/proc/${pid}/task/${pid}/stat`), all: ticks(`/proc/${pid}/stat`) };
  }

  /** A burst: `clients` at once, each PER_CLIENT LAUNCH + WAITs back to back (timed); REMOVEs after. */
  async burst(clients: number): Promise<number[]> {
    const before = this.cpuNow();
    const runs = await Promise.all(
      Array.from({ length: clients }, async () => {
        const mine: Array<{ ms: number; id: { value: string } }> = [];
        for (let i = 0; i < PER_CLIENT; i++) mine.push(await this.launchWait());
        return mine;
      }),
    );
    const after = this.cpuNow();
    this.cpu.main += after.main - before.main;
    this.cpu.all += after.all - before.all;
    this.cpu.launches += clients * PER_CLIENT;
    for (const r of runs.flat()) await this.remove(r.id);
    return runs.flat().map((r) => r.ms);
  }

  private async remove(id: { value: string }): Promise<void> {
    const r = await this.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: id } });
    if (r.status !== 200) throw new Error(`${this.name}: REMOVE ${r.status} ${r.text}`);
  }

  private async launchWait(): Promise<{ ms: number; id: { value: string } }> {
    const id = { value: `ab-${this.seq++}` };
    const t0 = performance.now();
    const l = await this.call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: id,
        command: { shell: false, value: "/bin/true", arguments: ["true"] },
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
      },
    });
    if (l.status !== 200) throw new Error(`${this.name}: LAUNCH ${l.status} ${l.text}`);
    const t1 = performance.now();
    const w = await this.call({ type: "WAIT_CONTAINER", wait_container: { container_id: id } });
    const ms = performance.now() - t0;
    this.parts.launch.push(t1 - t0);
    this.parts.wait.push(ms - (t1 - t0));
    if (w.status !== 200) throw new Error(`${this.name}: WAIT ${w.status} ${w.text}`);
    return { ms, id };
  }

  async stop(): Promise<void> {
    await this.agent.stop("SIGTERM", 5000);
    for (const h of ["cpu", "cpuacct", "memory", "pids", "devices", "unified", "."]) {
      try {
        rmdirSync(join("/sys/fs/cgroup", h, this.cgroupsRoot));
      } catch {
        // not there, or not empty (reported by nothing: a benchmark)
      }
    }
  }
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
const median = (xs: number[]) => pct(xs, 50);

const dir = mkdtempSync(join(tmpdir(), "ucr-launch-ab-"));
const agents: Agent[] = [];
try {
  const images = join(dir, "images");
  mkdirSync(images);
  buildBusyboxImage(join(dir, "layout"), { tag: "1" });
  await saveArchive(join(dir, "layout"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  for (const [i, bin] of bins.entries()) agents.push(await Agent.start(names[i]!, bin, dir, images));
  for (let i = 0; i < WARMUPS; i++) for (const x of agents) await x.once();
  for (const x of agents) {
    x.parts.launch.length = 0;
    x.parts.wait.length = 0;
  }
  const times = new Map(names.map((n) => [n, [] as number[]]));
  for (let i = 0; i < RUNS; i++) {
    // Each round starts with another binary and alternates direction: none is always first.
    const order = [...agents.slice(i % agents.length), ...agents.slice(0, i % agents.length)];
    if (i % 2 === 1) order.reverse();
    for (const x of order) {
      if (PAUSE_MS > 0) await Bun.sleep(PAUSE_MS);
      if (PARALLEL > 0) times.get(x.name)!.push(...(await x.burst(PARALLEL)));
      else times.get(x.name)!.push(await x.once());
    }
  }
  const row = (name: string, bin: string) => {
    const t = times.get(name)!;
    return `| ${name} | ${bin} | ${median(t).toFixed(2)} | ${pct(t, 25).toFixed(2)} | ${pct(t, 90).toFixed(2)} | ${Math.min(...t).toFixed(2)} |`;
  };
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  const what =
    (PARALLEL > 0 ? `${RUNS} interleaved bursts of ${PARALLEL} clients x ${PER_CLIENT}` : `${RUNS} interleaved runs`) +
    (PAUSE_MS > 0 ? `, ${PAUSE_MS} ms pause before each` : "");
  console.log(`LAUNCH+WAIT of /bin/true, ${what} each (load ${load})\n`);
  console.log("| | binary | median ms | p25 ms | p90 ms | min ms |\n|---|---|---:|---:|---:|---:|");
  for (const [i, bin] of bins.entries()) console.log(row(names[i]!, bin));
  for (const x of agents) {
    console.log(`${x.name}: LAUNCH median ${median(x.parts.launch).toFixed(2)} ms, WAIT median ${median(x.parts.wait).toFixed(2)} ms`);
    if (x.cpu.launches > 0) {
      const per = (ms: number) => (ms / x.cpu.launches).toFixed(2);
      console.log(`${x.name}: agent CPU per launch in the bursts: main thread ${per(x.cpu.main)} ms, all threads ${per(x.cpu.all)} ms`);
    }
  }
  const a = times.get("A")!;
  for (const n of names.slice(1)) {
    const t = times.get(n)!;
    const d = (p: number) => (pct(t, p) - pct(a, p)).toFixed(2);
    console.log(`\n${n} - A: median ${d(50)} ms, p25 ${d(25)} ms, p90 ${d(90)} ms`);
  }
} finally {
  for (const x of agents) await x.stop();
  rmSync(dir, { recursive: true, force: true });
}
