// Benchmark (not a test): CPU time per launch of each ucr process (agent, launcher, the
// container's process until its exec) over N back-to-back launches of `/bin/true`, from
// /proc/<pid>/stat and the children's accounting. Shows where a burst's CPU goes.
//
//   [UCR_BINARY=path] [PARALLEL=clients] [SPACE_MS=ms] bun bench/cpu-per-launch.ts [--runs N]
//   (as root; prints a table; "wall time / launches" includes the pauses)
import { copyFileSync, chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startUcrAgent, call, launchBody } from "./launch/ucr.ts";
import { PATH } from "./launch/options.ts";

const argv = process.argv.slice(2);
const at = (f: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1] : undefined);
const RUNS = Number(at("--runs") ?? 100);
/** Clients launching at once (each RUNS / PARALLEL back to back). */
const PARALLEL = Number(process.env.PARALLEL ?? 1);
/** A pause before each launch (spaced launches; 0: back to back). */
const SPACE_MS = Number(process.env.SPACE_MS ?? 0);
const BINARY = process.env.UCR_BINARY ?? join(import.meta.dir, "..", "dist", "ucr");
const TICK_MS = 1000 / 100; // USER_HZ

/** utime+stime and cutime+cstime (ms) of `pid`. */
function cpu(pid: number): { self: number; children: number } {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  const n = (i: number) => Number(rest[i - 3]) * TICK_MS;
  return { self: n(14) + n(15), children: n(16) + n(17) };
}

function findLauncher(socket: string): number {
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(`__launcher\0--serve\0${socket}`)) return Number(e);
    } catch {}
  }
  throw new Error("no launcher");
}

const dir = mkdtempSync("/tmp/ucpu-");
const ucr = join(dir, "ucr-bin");
copyFileSync(BINARY, ucr);
chmodSync(ucr, 0o755);
const images = join(dir, "img");
const made = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "scripts", "make-alpine.ts"), images], {
  env: { ...process.env, PATH },
});
if (made.exitCode !== 0) throw new Error(made.stderr.toString());
const agent = await startUcrAgent(ucr, dir, images);
try {
  let n = 0;
  const once = async () => {
    const id = `c${n++}`;
    const l = await call(agent, "LAUNCH_CONTAINER", launchBody(id, ["/bin/true"]));
    if (l.status !== 200) throw new Error(l.text);
    await call(agent, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
    return id;
  };
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) ids.push(await once());
  const launcher = findLauncher(join(dir, "run", "launcher.sock"));
  const a0 = cpu(agent.proc.pid),
    l0 = cpu(launcher);
  const t0 = performance.now();
  const each: number[] = [];
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      for (let i = 0; i < RUNS / PARALLEL; i++) {
        if (SPACE_MS > 0) await Bun.sleep(SPACE_MS);
        const s = performance.now();
        ids.push(await once());
        each.push(performance.now() - s);
      }
    }),
  );
  const wall = (performance.now() - t0) / RUNS;
  each.sort((x, y) => x - y);
  console.log(
    `clients ${PARALLEL}: launch median ${each[each.length >> 1]!.toFixed(1)} ms, p95 ${each[Math.floor(each.length * 0.95)]!.toFixed(1)} ms`,
  );
  const a1 = cpu(agent.proc.pid),
    l1 = cpu(launcher);
  const per = (x: number) => (x / RUNS).toFixed(2);
  console.log(`| ${RUNS} launches of /bin/true, ${PARALLEL} client(s) back to back | ms per launch |`);
  console.log("|---|---:|");
  console.log(`| wall time / launches | ${wall.toFixed(2)} |`);
  console.log(`| agent CPU | ${per(a1.self - a0.self)} |`);
  console.log(`| launcher CPU | ${per(l1.self - l0.self)} |`);
  console.log(`| launcher's children (container processes before and after exec, reaped) CPU | ${per(l1.children - l0.children)} |`);
  for (const id of ids) await call(agent, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } });
} finally {
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
}
