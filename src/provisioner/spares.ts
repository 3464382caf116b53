// Spare container directories: a top-level container's sandbox and its rootfs skeleton (the
// provisioner's backends/<backend>/rootfses/<id>, and for overlay scratch/<id>/{upperdir,
// workdir}), made ahead of time by the disk worker and renamed into place by a launch: one
// rename instead of a dozen new inodes on the launch's path (issue #15). On ext4 without a
// journal a new inode costs 0.1-0.5 ms after many deletions (recently_deleted() walks the
// inode table), which made the directories alone the largest step of a launch.
//
// The spares are the agent's own: made under <work_dir>/spares/<run>/<chunk>/, one run dir per
// agent start, the runs of earlier agents removed (their spares may be half made). They are
// made only once launches pause (25 ms without one): never competing with a burst. How many
// follows demand: 8 at first, then enough for the largest burst that found none left (and 4
// more), 64 at most. Nothing of a spare is shared: each is handed to one launch and is then
// that container's, removed with it.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Backend } from "../config/flags.ts";
import { renameNoReplaceOrErrno, ENOENT, EEXIST } from "../ffi/libc.ts";

/** The kinds of spare: a sandbox (with its empty stdout and stderr), a rootfs skeleton. */
export type SpareKind = "sandbox" | "rootfs";

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
 * directories, as provision() makes them.
 */
export function makeSpares(args: { dir: string; kind: SpareKind; backend: Backend; count: number }): { ids: string[] } {
  mkdirSync(args.dir, { recursive: true, mode: 0o700 });
  if (args.count > 64) throw new Error(`${args.count} spares at once: at most 64`);
  const ids: string[] = [];
  for (let i = 0; i < args.count; i++) {
    const id = crypto.randomUUID();
    const top = join(args.dir, `${id}.${args.kind}`);
    if (args.kind === "sandbox") {
      mkdirSync(top, { mode: 0o750 });
      for (const name of ["stdout", "stderr"]) closeSync(openSync(join(top, name), "wx", 0o640));
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
  remove(path: string): Promise<void>;
}

const FIRST_TARGET = 8;
const MAX_TARGET = 64;
/** Made per worker call, so a burst that starts meanwhile waits for at most this many. */
const CHUNK = 4;
/** Spares are made only once no launch took one for this long: never while a burst runs. */
const IDLE_MS = 25;

/** The agent side: spares ready to take, refilled in the disk worker when launches pause. */
export class SparePool {
  /** Ready spares: their ids and the chunk dir each is in. */
  private readonly ready: Record<SpareKind, Array<{ id: string; dir: string }>> = { sandbox: [], rootfs: [] };
  private chunks = 0;
  private readonly target: Record<SpareKind, number> = { sandbox: FIRST_TARGET, rootfs: FIRST_TARGET };
  /** Launches since the last pause (a burst's size so far). */
  private readonly burst: Record<SpareKind, number> = { sandbox: 0, rootfs: 0 };
  private readonly refilling: Record<SpareKind, boolean> = { sandbox: false, rootfs: false };
  private readonly timer: Partial<Record<SpareKind, ReturnType<typeof setTimeout>>> = {};
  private lastTake = 0;
  private started = false;
  private stopped = false;
  /** This agent's run dir under <work_dir>/spares. */
  private readonly dir: string;

  constructor(
    private readonly root: string,
    private readonly backend: Backend,
    private readonly maker: SpareMaker,
  ) {
    this.dir = join(root, `${process.pid}-${Date.now()}`);
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
    while (ready.length > 0 && taken === undefined && !this.stopped) {
      const spare = ready.shift()!;
      const rc = renameNoReplaceOrErrno(join(spare.dir, `${spare.id}.${kind}`), dest);
      if (rc === 0) {
        taken = spare.id;
      } else if (rc === -ENOENT && existsSync(dirname(dest))) {
        // The spare is gone (removed by hand): the next one.
      } else {
        ready.unshift(spare);
        // EEXIST (dest is there) or ENOENT (its parent is not, yet): this launch makes its own.
        // Anything else (EXDEV: --work_dir's parts on two filesystems; EINVAL: no
        // RENAME_NOREPLACE there) holds for every launch: no more spares.
        if (rc !== -EEXIST && rc !== -ENOENT) this.stopped = true;
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
    let old: string[] = [];
    try {
      old = readdirSync(this.root);
    } catch {
      // none yet
    }
    for (const name of old) void this.maker.remove(join(this.root, name)).catch(() => {});
  }

  /** Refills once launches pause. */
  private schedule(kind: SpareKind): void {
    if (this.timer[kind] !== undefined || this.refilling[kind] || this.stopped) return;
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
    if (this.refilling[kind] || this.stopped) return;
    const missing = this.target[kind] - this.ready[kind].length;
    if (missing <= 0) return;
    this.refilling[kind] = true;
    // Each chunk in a dir of its own: a launch renaming a spare out of an older chunk does not
    // wait for the directory lock the worker holds while it makes the next.
    const dir = join(this.dir, String(++this.chunks));
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
