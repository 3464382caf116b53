// Benchmark (not a test): two ucr binaries, A and B, launching the same `/bin/true` container
// from a cached image, interleaved launch by launch (A B B A ...), so load from anything else on
// the machine falls on both alike. For checking that a change made launching no slower.
//
//   bun bench/launch-ab.ts /path/to/ucr-A [/path/to/ucr-B (default dist/ucr)] [--runs N]
//
// Each binary gets its own agent, work dir and copy of the image archive (scripts/make-alpine.ts).
// Prints the median and p90 of LAUNCH + WAIT (client side) and of the agent's own LAUNCH time.
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { startAgent, type RunningAgent } from "../test/helpers/agent.ts";
import { operatorCall, serverLaunchMs } from "./lib.ts";

const argv = process.argv.slice(2);
const runsArg = argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : 100;
const bins = argv.filter((a, i) => !a.startsWith("--") && argv[i - 1] !== "--runs");
if (bins.length < 1 || !Number.isInteger(RUNS) || RUNS < 1) {
  console.error("usage: bun bench/launch-ab.ts UCR_A [UCR_B] [--runs N]");
  process.exit(2);
}
const ROOT = dirname(import.meta.dir);
const PATH = process.env.PATH ?? "/usr/bin:/bin";
const base = mkdtempSync("/tmp/ulab-");
const agents: RunningAgent[] = [];

function body(id: string): Record<string, unknown> {
  return {
    launch_container: {
      container_id: { value: id },
      command: { shell: false, value: "/bin/true", arguments: ["true"] },
      container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
    },
  };
}

async function once(a: RunningAgent, id: string): Promise<number> {
  const t0 = performance.now();
  const l = await operatorCall(a, "LAUNCH_CONTAINER", body(id), 60_000);
  if (l.status !== 200) throw new Error(`LAUNCH ${l.status}: ${l.text}`);
  const w = await operatorCall(a, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } }, 60_000);
  const ms = performance.now() - t0;
  if (w.status !== 200) throw new Error(`WAIT ${w.status}: ${w.text}`);
  const r = await operatorCall(a, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } }, 60_000);
  if (r.status !== 200) throw new Error(`REMOVE ${r.status}: ${r.text}`);
  return ms;
}

const stat = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${s[Math.floor(s.length / 2)]!.toFixed(1)} ms, p90 ${s[Math.floor(s.length * 0.9)]!.toFixed(1)} ms`;
};

try {
  const images = join(base, "img");
  Bun.spawnSync([process.execPath, join(ROOT, "scripts", "make-alpine.ts"), images], { stdout: "ignore", env: { PATH } });
  for (const [i, bin] of [bins[0]!, bins[1] ?? join(ROOT, "dist", "ucr")].entries()) {
    const dir = join(base, `ucr-${i}`);
    const copy = join(base, `bin-${i}`);
    copyFileSync(bin, copy);
    Bun.spawnSync(["chmod", "755", copy]);
    agents.push(
      await startAgent({
        binary: copy,
        args: [
          `--work_dir=${dir}`,
          `--runtime_dir=${join(dir, "run")}`,
          "--cgroups_root=ucr",
          `--docker_registry=${images}`,
          "--image_providers=docker",
          "--isolation=filesystem/linux,docker/runtime",
        ],
        env: { PATH },
        listenTimeoutMs: 30_000,
      }),
    );
  }
  // The image pulled, JIT and launcher warm, before anything is timed.
  for (const [i, a] of agents.entries()) for (let w = 0; w < 5; w++) await once(a, `ab${i}-w${w}`);
  const times: number[][] = [[], []];
  for (let r = 0; r < RUNS; r++) {
    for (const i of r % 2 ? [1, 0] : [0, 1]) times[i]!.push(await once(agents[i]!, `ab${i}-${r}`));
  }
  for (const [i, a] of agents.entries()) {
    const server = [...serverLaunchMs(a.log().split("\n")).entries()].filter(([id]) => !id.includes("-w")).map(([, ms]) => ms);
    console.log(`${i === 0 ? "A" : "B"} ${i === 0 ? bins[0] : (bins[1] ?? "dist/ucr")}: LAUNCH + WAIT ${stat(times[i]!)}; LAUNCH in the agent ${stat(server)}`);
  }
} finally {
  for (const a of agents) await a.stop("SIGTERM", 5000);
  rmSync(base, { recursive: true, force: true });
}
