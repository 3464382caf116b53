// Helpers the benchmarks share.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Mount points at or below `dir`, deepest first (podman's overlay can leave some behind). */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4]?.replace(/\\040/g, " ");
    if (mp && (mp === dir || mp.startsWith(`${dir}/`))) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Writes a report to bench/results/<name>-<date>[-quick].md (a quick run never overwrites
 * the day's full one) and says where, with the total time since `started`.
 */
export function writeResult(name: string, text: string, quick: boolean, started: number): void {
  const dir = join(import.meta.dir, "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().slice(0, 10)}${quick ? "-quick" : ""}.md`);
  writeFileSync(file, text);
  console.error(`wrote ${file} (total ${((performance.now() - started) / 1000).toFixed(0)}s)`);
}

/** Runs a benchmark's main, always cleans up, and exits 1 on failure (quietly once interrupted). */
export async function runBench(script: string, main: () => Promise<void>, cleanup: () => Promise<void>, interrupted: () => boolean): Promise<never> {
  let exitCode = 0;
  try {
    await main();
  } catch (e) {
    // An interrupt is reported by its signal handler; a stack trace would only be noise.
    if (!interrupted()) console.error(`${script}: ${(e as Error).stack ?? e}`);
    exitCode = 1;
  } finally {
    await cleanup();
  }
  process.exit(exitCode);
}
