// Process helpers shared by the store (whose staging belongs to live pulls) and the
// containers table (whose workloads may outlive the agent).
import { readFileSync } from "node:fs";

/** Does `pid` name a live process (one we may not signal counts as live)? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat); undefined if
 * there is no such process. With the boot ID it names one process for good: a pid alone can
 * be reused once its process is gone.
 */
export function startTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces or ')': count fields
  // from the last ')'. After it come field 3 (state) onwards, so field 22 is index 19.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const t = Number(fields[19]);
  return Number.isSafeInteger(t) ? t : undefined;
}

/** Is the process that was `pid` (and started at `start`, if known) still there? */
export function stillRunning(pid: number, start: number | undefined): boolean {
  return alive(pid) && (start === undefined || startTime(pid) === start);
}

let cachedBootId: string | undefined;

/** This boot of the kernel (a random UUID it makes at boot); "" where /proc does not say. */
export function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    } catch {
      cachedBootId = "";
    }
  }
  return cachedBootId;
}
