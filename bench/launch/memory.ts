// Memory of processes from /proc/<pid>/smaps_rollup: every ucr process by role, and sums.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface Mem {
  rssKiB: number;
  pssKiB: number;
  /** Private_Clean + Private_Dirty: what goes away with the process. */
  ussKiB: number;
}

export function memOf(pid: number): Mem {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssKiB: kb("Rss"), pssKiB: kb("Pss"), ussKiB: kb("Private_Clean") + kb("Private_Dirty") };
}

export const addMem = (a: Mem, b: Mem): Mem => ({ rssKiB: a.rssKiB + b.rssKiB, pssKiB: a.pssKiB + b.pssKiB, ussKiB: a.ussKiB + b.ussKiB });

function cmdlineOf(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
}

/** What a ucr process is, from its command line. */
function ucrRole(cmd: string): string {
  if (/ agent( |$)/.test(cmd)) return "agent";
  if (cmd.includes("__launcher --serve")) return "launcher";
  if (cmd.includes("__launcher")) return "launcher's reaper";
  if (cmd.includes("__init")) return "init stage";
  return "other";
}

/** Every process running the binary `exe` (our private copy: nothing else runs it), with its memory. */
export function processesOf(exe: string): { pid: number; role: string; mem: Mem }[] {
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

export const NO_MEM: Mem = { rssKiB: 0, pssKiB: 0, ussKiB: 0 };

/** Totals of `procs`, and which roles they are ("agent, launcher, 2 warm init stages"). */
export function summarize(procs: { role: string; mem: Mem }[]): { mem: Mem; roles: string } {
  const counts = new Map<string, number>();
  for (const p of procs) counts.set(p.role, (counts.get(p.role) ?? 0) + 1);
  const roles = [...counts].map(([r, n]) => (n === 1 ? r : `${n} × ${r}`)).join(", ");
  return { mem: procs.reduce((m, p) => addMem(m, p.mem), NO_MEM), roles };
}
