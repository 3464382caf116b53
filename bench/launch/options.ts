// bench/launch.ts's options (from its command line) and constants.
import { join } from "node:path";

const argv = process.argv.slice(2);
export const quick = argv.includes("--quick");
const runsArg = argv.indexOf("--runs");
export const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : quick ? 10 : 50;
if (!Number.isInteger(RUNS) || RUNS < 1 || argv.some((a, i) => a !== "--quick" && a !== "--runs" && argv[i - 1] !== "--runs")) {
  console.error("usage: bun bench/launch.ts [--runs N] [--quick]");
  process.exit(2);
}
// Untimed runs per tool first: page cache, podman's and crun's first-run state, JIT in the agent.
export const WARMUPS = quick ? 2 : 5;
// Extra ucr launches under `perf record` for the phase breakdown (never part of the timings).
export const PROBES = quick ? 5 : 15;
export const PROBE_GAP_MS = 100;
// Bursts: spaced launches (100 ms apart), a sequential burst (next launch as soon as the last
// ended), and parallel clients each launching back to back; rounds rotate the tools' order.
export const SPACED_N = quick ? 5 : 20;
export const SPACED_GAP_MS = 100;
export const SEQ_N = quick ? 20 : 50;
export const PAR_CLIENTS = 10;
export const PAR_EACH = quick ? 2 : 5;
export const BURST_ROUNDS = quick ? 1 : 2;
// Containers kept running for the memory table.
export const MEM_CONTAINERS = quick ? 10 : 50;

export const ROOT = join(import.meta.dir, "..", "..");
export const BUILT_UCR = join(ROOT, "dist", "ucr");
export const PATH = process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// A container start that takes this long is broken, not slow.
export const TIMEOUT_MS = 60_000;
// Our container IDs all start with this, so cleanup only ever touches what this run made.
export const ID_PREFIX = "ulb";
