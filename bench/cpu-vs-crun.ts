// Benchmark (not a test): CPU of the whole machine per container start, ucr against crun, in
// bursts of 10 clients at once (each 10 starts back to back) of `/bin/true`: busy time from
// /proc/stat (every process and kernel thread, the harness included) divided by the starts,
// interleaved rounds. On two cores a 10-client burst is bound by this figure (10 x CPU / 2).
//
//   [UCR_BINARY=path] [ROUNDS=n] bun bench/cpu-vs-crun.ts   (bench/launch/options.ts reads the arguments)
//   (as root, after `bun run build`; needs crun, skopeo, umoci, nsenter)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { call, launchBody, startUcrAgent } from "./launch/ucr.ts";
import { PATH } from "./launch/options.ts";
import { makeBundle, startHolder } from "./launch/peers.ts";
import { exec, state } from "./launch/state.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 4);
const CLIENTS = 10;
const EACH = Number(process.env.EACH ?? 10);
const BINARY = process.env.UCR_BINARY ?? join(import.meta.dir, "..", "dist", "ucr");

/** Busy and total jiffies of the whole machine. */
function jiffies(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + f[4]!; // idle + iowait
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

const dir = mkdtempSync("/tmp/ucr-cpu-vs-crun-");
const images = join(dir, "img");
const made = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "scripts", "make-alpine.ts"), images], {
  env: { ...process.env, PATH },
});
if (made.exitCode !== 0) throw new Error(made.stderr.toString());
const prefix = await startHolder(dir);
const bundle = await makeBundle(dir, join(images, "alpine.tar"));
const agent = await startUcrAgent(BINARY, dir, images);
let seq = 0;
const tools: Record<string, () => Promise<void>> = {
  ucr: async () => {
    const id = `cvc-${seq++}`;
    const l = await call(agent, "LAUNCH_CONTAINER", launchBody(id, ["/bin/true"]));
    if (l.status !== 200) throw new Error(l.text);
    await call(agent, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
    ids.push(id);
  },
  crun: async () => {
    const r = await exec([...prefix, "crun", "--root", join(dir, "crun"), "run", "-b", bundle, `cvc-crun-${seq++}`]);
    if (r.code !== 0) throw new Error(`crun: ${r.stderr}`);
  },
};
const ids: string[] = [];
/** One line per burst: the first rounds show the agent's and launcher's JIT still warming up. */
const rounds: string[] = [];
const sums: Record<string, { cpuMs: number; wallMs: number; n: number; harnessMs: number; agentMs: number }> = {
  ucr: { cpuMs: 0, wallMs: 0, n: 0, harnessMs: 0, agentMs: 0 },
  crun: { cpuMs: 0, wallMs: 0, n: 0, harnessMs: 0, agentMs: 0 },
};
/** CPU (ms) of process `pid` and its reaped children. */
function procMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const r = f
    .slice(f.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  return (r[11]! + r[12]! + r[13]! + r[14]!) * 10;
}
try {
  // Warm-up, untimed: 100 starts of each (the agent and launcher are long-lived processes whose JIT settles over the first few hundred launches).
  for (const run of Object.values(tools))
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        for (let i = 0; i < 10; i++) await run();
      }),
    );
  for (const id of ids.splice(0)) await call(agent, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } });
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of round % 2 ? ["crun", "ucr"] : ["ucr", "crun"]) {
      const a = jiffies();
      const h0 = process.cpuUsage();
      const g0 = procMs(agent.proc.pid);
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          for (let i = 0; i < EACH; i++) await tools[name]!();
        }),
      );
      const b = jiffies();
      const h = process.cpuUsage(h0);
      sums[name]!.harnessMs += (h.user + h.system) / 1000;
      sums[name]!.agentMs += procMs(agent.proc.pid) - g0;
      sums[name]!.cpuMs += (b.busy - a.busy) * 10;
      sums[name]!.wallMs += performance.now() - t0;
      sums[name]!.n += CLIENTS * EACH;
      const cpu = ((b.busy - a.busy) * 10) / (CLIENTS * EACH);
      rounds.push(`| ${round} | ${name} | ${cpu.toFixed(2)} | ${((performance.now() - t0) / (CLIENTS * EACH)).toFixed(2)} |`);
      for (const id of ids.splice(0)) await call(agent, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } });
    }
  }
  console.log("| round | tool | machine CPU per start, ms | wall per start, ms |\n|---:|---|---:|---:|");
  for (const line of rounds) console.log(line);
  console.log("");
  console.log(
    `| ${CLIENTS} clients x ${EACH}, ${ROUNDS} rounds | machine CPU per start, ms | of it: this harness | of it: ucr's agent | wall per start, ms |`,
  );
  console.log("|---|---:|---:|---:|---:|");
  const per = (x: number, n: number) => (x / n).toFixed(2);
  for (const [name, s] of Object.entries(sums)) {
    console.log(`| ${name} | ${per(s.cpuMs, s.n)} | ${per(s.harnessMs, s.n)} | ${per(s.agentMs, s.n)} | ${per(s.wallMs, s.n)} |`);
  }
} finally {
  await agent.stop();
  state.holder?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
