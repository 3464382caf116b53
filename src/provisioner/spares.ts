// Spare container directories: a top-level container's sandbox, its rootfs skeleton (the
// provisioner's backends/<backend>/rootfses/<id>, and for overlay scratch/<id>/{upperdir,
// workdir}) and its runtime dir, made ahead of time by the disk worker and renamed into place
// by a launch: three renames instead of seventeen new inodes on the launch's path (issue #15).
// On ext4 without a journal a new inode costs 0.1-0.5 ms after many deletions
// (recently_deleted() walks the inode table), which made the directories alone the largest
// step of a launch. The chunk dirs the spares are made in, and the parents they are renamed
// into, carry ext4's top-directory flag (spreadSubdirs): each spare's directories then land in
// a block group of their own, not the one the last containers' deletions just filled with
// recently freed inodes, so the inodes the workload's first steps make (overlay's work dir
// probes, /etc copied up) come cheap too: 0.016 ms each instead of 0.77 (perf's
// ext4_request_inode -> ext4_allocate_inode, 150 launches back to back).
//
// The spares are the agent's own: made under <work_dir>/spares/<run>/<chunk>/ (runtime dirs
// under <runtime_dir>/spares/, often another filesystem), one run dir per agent start, the runs
// of earlier agents removed (their spares may be half made). They are made only once launches
// pause (25 ms without one): never competing with a burst. How many follows demand: 8 at
// first, then enough for the largest burst that found none left (and 4 more), 64 at most.
// Nothing of a spare is shared: each is handed to one launch and is then that container's,
// removed with it.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Backend } from "../config/flags.ts";
import { renameNoReplaceOrErrno, ENOENT, EEXIST, spreadSubdirs } from "../ffi/libc.ts";
import { blankPage } from "../runtime/state.ts";

/**
 * The kinds of spare: a sandbox (with its empty stdout and stderr), a rootfs skeleton, a
 * runtime dir (with its hostname, hosts, launch spec and checkpoint made, the files the agent
 * writes there first: filled in place, no new inode on the launch's path).
 */
export type SpareKind = "sandbox" | "rootfs" | "runtime";

/** The rootfs skeleton's directories under a container's provisioner dir, for `id`. */
export function skeletonDirs(backend: Backend, id: string): string[] {
  const base = join("backends", backend);
  const rootfs = join(base, "rootfses", id);
  if (backend !== "overlay") return [rootfs];
  const scratch = join(base, "scratch", id);
  return [rootfs, join(scratch, "upperdir"), join(scratch, "workdir")];
}

/**
 * Disk worker side: makes `count` spares of `kind` in `dir` (made if missing, as are its
 * parents), each complete before its name is returned. A sandbox is made as a launch makes one
 * (0750, its stdout and stderr 0640 as the launcher creates them); a rootfs skeleton with 0755
 * directories, as provision() makes them; a runtime dir 0700, its files as the agent would make them.
 */
export function makeSpares(args: { dir: string; kind: SpareKind; backend: Backend; count: number }): { ids: string[] } {
  mkdirSync(args.dir, { recursive: true, mode: 0o700 });
  spreadSubdirs(args.dir);
  if (args.count > 64) throw new Error(`${args.count} spares at once: at most 64`);
  const ids: string[] = [];
  for (let i = 0; i < args.count; i++) {
    const id = crypto.randomUUID();
    const top = join(args.dir, `${id}.${args.kind}`);
    if (args.kind === "sandbox") {
      mkdirSync(top, { mode: 0o750 });
      for (const name of ["stdout", "stderr"]) closeSync(openSync(join(top, name), "wx", 0o640));
    } else if (args.kind === "runtime") {
      mkdirSync(top, { mode: 0o700 });
      for (const name of ["hostname", "hosts"]) closeSync(openSync(join(top, name), "wx", 0o666));
      // The state files the agent writes first, as writeFileAtomic would make them: the launch
      // spec empty (filled in place), the checkpoint a blank page (rewritten in place).
      closeSync(openSync(join(top, "launch.json"), "wx", 0o644));
      writeFileSync(join(top, "container.json"), blankPage(), { flag: "wx", mode: 0o644 });
    } else {
      for (const d of skeletonDirs(args.backend, id)) mkdirSync(join(top, d), { recursive: true, mode: 0o755 });
    }
    ids.push(id);
  }
  return { ids };
}

/** What the pool needs of the disk worker. */
export interface SpareMaker {
  make(args: { dir: string; kind: SpareKind; backend: Backend; count: number }): Promise<{ ids: string[] }>;
  /** Removes `path`, which lies inside `within`. */
  remove(path: string, within: string): Promise<void>;
}

const FIRST_TARGET = 8;
const MAX_TARGET = 64;
/** Made per worker call, so a burst that starts meanwhile waits for at most this many. */
const CHUNK = 4;
/** Spares are made only once no launch took one for this long: never while a burst runs. */
const IDLE_MS = 25;

const perKind = <T>(v: (kind: SpareKind) => T): Record<SpareKind, T> => ({
  sandbox: v("sandbox"),
  rootfs: v("rootfs"),
  runtime: v("runtime"),
});

/** The agent side: spares ready to take, refilled in the disk worker when launches pause. */
export class SparePool {
  /** Ready spares: their ids and the chunk dir each is in. */
  private readonly ready = perKind((): Array<{ id: string; dir: string }> => []);
  private chunks = 0;
  private readonly target = perKind(() => FIRST_TARGET);
  /** Launches since the last pause (a burst's size so far). */
  private readonly burst = perKind(() => 0);
  private readonly refilling = perKind(() => false);
  /** A kind whose spares cannot be renamed into place here (EXDEV, EINVAL): none made any more. */
  private readonly unusable = perKind(() => false);
  private readonly timer: Partial<Record<SpareKind, ReturnType<typeof setTimeout>>> = {};
  private lastTake = 0;
  private started = false;
  private stopped = false;
  /** This agent's run dir of each kind (under its root's spares/). */
  private readonly dirs: Record<SpareKind, string>;

  constructor(
    /**
     * Where each kind's spares are made: on the filesystem of where a launch puts them
     * (<work_dir>/spares for sandboxes and rootfs skeletons, <runtime_dir>/spares for runtime dirs).
     */
    private readonly roots: Record<SpareKind, string>,
    private readonly backend: Backend,
    private readonly maker: SpareMaker,
  ) {
    const run = `${process.pid}-${Date.now()}`;
    this.dirs = perKind((kind) => join(roots[kind], run));
  }

  /**
   * Renames a spare to `dest` (which must not exist; its parent must): the spare's id (its
   * rootfs skeleton's directories are named by it), or undefined if there was none or it could
   * not be used (the caller makes `dest` itself).
   */
  take(kind: SpareKind, dest: string): string | undefined {
    this.start();
    this.lastTake = performance.now();
    this.burst[kind]++;
    const ready = this.ready[kind];
    let taken: string | undefined;
    while (ready.length > 0 && taken === undefined && !this.stopped && !this.unusable[kind]) {
      const spare = ready.shift()!;
      const rc = renameNoReplaceOrErrno(join(spare.dir, `${spare.id}.${kind}`), dest);
      if (rc === 0) {
        taken = spare.id;
      } else if (rc === -ENOENT && existsSync(dirname(dest))) {
        // The spare is gone (removed by hand): the next one.
      } else {
        ready.unshift(spare);
        // EEXIST (dest is there) or ENOENT (its parent is not, yet): this launch makes its own.
        // Anything else (EXDEV: the spares' dir and dest on two filesystems; EINVAL: no
        // RENAME_NOREPLACE there) holds for every launch: no more of this kind.
        if (rc !== -EEXIST && rc !== -ENOENT) {
          this.unusable[kind] = true;
          ready.length = 0; // left on disk for the next agent to remove
        }
        break;
      }
    }
    // The burst outran the pool: keep enough for one like it (and a little more).
    if (taken === undefined) this.target[kind] = Math.min(MAX_TARGET, Math.max(this.target[kind], this.burst[kind] + CHUNK));
    this.schedule(kind);
    return taken;
  }

  /** How many of `kind` are ready (for tests and the log). */
  count(kind: SpareKind): number {
    return this.ready[kind].length;
  }

  /** No more refills (the agent is stopping); what is made stays for the next agent to remove. */
  stop(): void {
    this.stopped = true;
    for (const t of Object.values(this.timer)) clearTimeout(t);
  }

  /** The first use: the runs of earlier agents go. */
  private start(): void {
    if (this.started) return;
    this.started = true;
    for (const root of new Set(Object.values(this.roots))) {
      let old: string[] = [];
      try {
        old = readdirSync(root);
      } catch {
        // none yet
      }
      for (const name of old) void this.maker.remove(join(root, name), root).catch(() => {});
    }
  }

  /** Refills once launches pause. */
  private schedule(kind: SpareKind): void {
    if (this.timer[kind] !== undefined || this.refilling[kind] || this.stopped || this.unusable[kind]) return;
    const t = setTimeout(() => {
      delete this.timer[kind];
      const quiet = performance.now() - this.lastTake;
      if (quiet < IDLE_MS) {
        this.schedule(kind);
        return;
      }
      this.burst[kind] = 0;
      this.refill(kind);
    }, IDLE_MS);
    t.unref?.();
    this.timer[kind] = t;
  }

  private refill(kind: SpareKind): void {
    if (this.refilling[kind] || this.stopped || this.unusable[kind]) return;
    const missing = this.target[kind] - this.ready[kind].length;
    if (missing <= 0) return;
    this.refilling[kind] = true;
    // Each chunk in a dir of its own: a launch renaming a spare out of an older chunk does not
    // wait for the directory lock the worker holds while it makes the next.
    const dir = join(this.dirs[kind], String(++this.chunks));
    this.maker.make({ dir, kind, backend: this.backend, count: Math.min(CHUNK, missing) }).then(
      ({ ids }) => {
        this.ready[kind].push(...ids.map((id) => ({ id, dir })));
        this.refilling[kind] = false;
        this.schedule(kind);
      },
      () => {
        // A full disk, or the worker is gone: launches make their own directories.
        this.refilling[kind] = false;
      },
    );
  }
}
