// Staging directories shared by the Docker and Appc stores: each is named after the process
// whose download fills it, so any process opening the store can remove the ones left by the dead.
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { spreadSubdirs } from "../ffi/libc.ts";
import { alive, startTime } from "./process.ts";
import { removeTree } from "./tree.ts";

let ownStart: number | undefined | null = null;

/** This process's start time (cached; it never changes). */
function ourStart(): number | undefined {
  if (ownStart === null) ownStart = startTime(process.pid);
  return ownStart;
}

/**
 * A fresh directory under `parent` owned by this process: "<pid>.<start time>.<random>". The
 * start time tells a dead process's directory from a live one's when the pid was reused (an
 * agent that is pid 1 of its container is pid 1 at every restart). `parent` is made if missing
 * and marked to spread its subdirectories (spreadSubdirs).
 */
export function newStagingDir(parent: string): string {
  const start = ourStart();
  const random = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const dir = join(parent, `${process.pid}.${start === undefined ? "" : `${start}.`}${random}`);
  mkdirSync(parent, { recursive: true });
  // Each download's tree in a block group of its own on ext4 (spreadSubdirs), not among the
  // inodes the last GC freed: unpacking 20,000 small files took 9.1 s there, 1.4 s here.
  spreadSubdirs(parent);
  mkdirSync(dir);
  return dir;
}

/**
 * Is the process that made staging directory `name` possibly still running? Names older ucr
 * versions made ("<pid>.<random>") count as live while their pid is; a name that names no
 * process (not ucr's) counts as dead.
 */
export function stagingOwnerAlive(name: string): boolean {
  const parts = name.split(".");
  const pid = Number(parts[0]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || String(pid) !== parts[0]) return false;
  const start = parts.length === 3 && /^\d+$/.test(parts[1]!) ? Number(parts[1]) : undefined;
  if (pid === process.pid) return start === undefined || ourStart() === undefined || start === ourStart();
  if (!alive(pid)) return false;
  // Where /proc does not say when it started, a live pid is taken to be the owner.
  const now = start === undefined ? undefined : startTime(pid);
  return now === undefined || now === start;
}

/** Removes the directories under `parent` whose process is gone; returns their names. A missing `parent` holds none. */
export function removeDeadStaging(parent: string): string[] {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (stagingOwnerAlive(name)) continue;
    removeTree(join(parent, name));
    removed.push(name);
  }
  return removed;
}
