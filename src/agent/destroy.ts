// Taking a container apart: its processes (by pid and by cgroup), its cgroups, anything
// mounted under its sandbox or rootfs, and its directories. Every step is idempotent, so a
// destroy cut short by an agent's death is finished by the next agent.
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { MNT_DETACH, umount2 } from "../ffi/libc.ts";
import { log } from "../log.ts";
import type { ContainerCgroup } from "../runtime/cgroups.ts";
import { alive, stillRunning } from "../util/process.ts";
import { CHECKPOINT_FILE } from "./checkpoint.ts";

/** What to take apart; every field optional, so half-made containers can be destroyed too. */
export interface Remains {
  key: string;
  /** A process to kill (the workload), with its start time if known. */
  pid?: number;
  pidStart?: number;
  /** Its own cgroup (never a parent's it shares). */
  cgroup?: ContainerCgroup;
  sandbox?: string;
  provisionerDir?: string;
  /** Its runtime dir: what is mounted below it (a PRIVATE /dev/shm) is unmounted; the dir stays. */
  runtime?: string;
}

/** Deletes a tree inside the work dir (in a worker: it may be large). */
export type TreeRemover = (path: string) => Promise<void>;

/**
 * Kills what runs, removes cgroups, unmounts and deletes the directories. Throws only if the
 * cgroup cannot be emptied in time or a tree cannot be deleted; the message names what is left.
 */
export async function takeApart(r: Remains, removeTree: TreeRemover): Promise<void> {
  if (r.pid !== undefined && stillRunning(r.pid, r.pidStart)) {
    try {
      process.kill(r.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  if (r.cgroup && !(await r.cgroup.destroy())) {
    const left = `processes ${r.cgroup.procs().join(", ")}`;
    throw new Error(`the cgroup of ${r.key} still holds ${left} after SIGKILL; it is left at ${r.cgroup.dirs.join(", ")}`);
  }
  const trees = [r.provisionerDir, r.sandbox].filter((p): p is string => p !== undefined);
  unmountUnder([...trees, ...(r.runtime ? [r.runtime] : [])]);
  for (const tree of trees) await removeTree(tree);
}

/**
 * Detaches every mount at or below one of `dirs` in the agent's mount namespace, deepest
 * first. Containers mount their rootfs in their own namespace, so normally there is none;
 * this is for what a crash or an older layout left.
 */
export function unmountUnder(dirs: string[]): string[] {
  let info: string;
  try {
    info = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  const points = info
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((p) => dirs.some((d) => p === d || p.startsWith(`${d}/`)))
    .sort((a, b) => b.length - a.length);
  const done: string[] = [];
  for (const p of new Set(points)) {
    try {
      umount2(p, MNT_DETACH);
      done.push(p);
      log.info(`unmounted ${p}`);
    } catch (err) {
      log.warn(`cannot unmount ${p}: ${(err as Error).message}`);
    }
  }
  return done;
}

/**
 * Empties a destroyed container's runtime dir but for its checkpoint (and its nested ones):
 * without the launch spec, a launcher that gets a late request cannot start it any more.
 */
export function clearRuntime(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (name === CHECKPOINT_FILE || name === "containers") continue;
    rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/** The pid the launcher recorded in `dir`, if it wrote one. */
export function launcherPid(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dir, "pid"), "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The raw wait status the launcher recorded in `dir`, if it wrote one. */
export function launcherStatus(dir: string): number | undefined {
  try {
    const text = readFileSync(join(dir, "status"), "utf8").trim();
    const status = Number(text);
    return text !== "" && Number.isInteger(status) ? status : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Is `pid` a container's process that has not exec'd its workload yet: a ucr init stage
 * (`ucr __init ...`), or a process the launcher forked and is setting up (it shares the
 * launcher's memory, so its command line reads `ucr __launcher --serve ...`; a pid file never
 * names the launcher itself)?
 */
export function isInitStage(pid: number): boolean {
  if (!alive(pid)) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    const setup = (a: string | undefined) => a === "__init" || a === "__launcher";
    return setup(argv[1]) || (setup(argv[2]) && (argv[1] ?? "").endsWith("main.ts"));
  } catch {
    return false;
  }
}
