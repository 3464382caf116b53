// Statistics (median, percentiles) and what bench/launch.ts's report says about the machine.
import { readFileSync } from "node:fs";
import { exec } from "./state.ts";

function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}
export function median(xs: number[]): number {
  const s = sorted(xs);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
/** Nearest-rank percentile. */
export function pct(xs: number[], p: number): number {
  const s = sorted(xs);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
}
export const ms = (x: number) => x.toFixed(1);
export const mib = (kib: number) => (kib / 1024).toFixed(1);

export interface Case {
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

export const notes: string[] = [];

/**
 * Which mode the kernel's cgroup threadgroup lock is in, which changes what a cgroup move
 * costs. Default: one global percpu rwsem; a whole-process move (cgroup.procs) takes it for
 * writing, and the first writer in a while waits for an RCU grace period. Once any cgroup
 * hierarchy is mounted with `favordynmods` (Linux 6.18+), the kernel switches to per-process
 * locks for good (until reboot): fork and exit cost a little more, process moves never wait.
 * ucr's v1 join writes 0 to `tasks` (its own thread), which takes neither lock.
 */
export async function cgroupLockMode(): Promise<string> {
  const mounted = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter((l) => / cgroup2? /.test(l) && /[ ,]favordynmods[ ,]/.test(l))
    .map((l) => l.split(" ")[1]);
  const r = await exec(["dmesg"], { stdout: true });
  const logged = r.code === 0 && /per threadgroup rwsem mechanism can't be disabled|favordynmods/.test(r.stdout);
  if (mounted.length > 0 || logged) {
    return `per-process (favordynmods) mode since ${mounted.length > 0 ? `the mount of ${mounted.join(", ")}` : "a favordynmods mount earlier in this boot (dmesg)"}; lasts until reboot. Process moves (crun's and podman's cgroup.procs writes) take a per-process lock and never wait for RCU; fork and exit take one more lock. ucr writes 0 to v1 \`tasks\`, which takes no threadgroup lock in either mode.`;
  }
  return r.code === 0
    ? "default (global percpu rwsem) mode: no favordynmods mount since boot."
    : "default mode as far as /proc/mounts shows (dmesg unreadable).";
}
