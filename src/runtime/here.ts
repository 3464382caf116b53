// Where a container's setup runs: in its own process (init stage 2, `ucr __init`), or in the
// launcher for a process it forked into the container's namespaces (src/ffi/child.ts). The
// setup's decisions (mounts.ts, init.ts) are the same code for both; what must be called from
// inside the container's namespaces goes through `here`, and so do the paths that name our
// descriptors or the host's files as the container's mount namespace has them.
import {
  AT_FDCWD,
  O_CLOEXEC,
  chdir,
  close,
  fchdir,
  mount,
  mountOrErrno,
  mountSetattrRecursive,
  moveMount,
  openTreeClone,
  openat,
  pivotRoot,
  sethostname,
  setns,
  umount2,
  unshare,
} from "../ffi/libc.ts";
import { realpathSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { Child, MountRequest } from "../ffi/child.ts";
import { HOST_PROC_FD, MountOpt, Op } from "../ffi/child.c.ts";
import { SysError } from "../ffi/errno.ts";

/** A mount of a batch (Here.mounts), with the error its failure is. */
export interface MountEntry extends MountRequest {
  fail: (errno: number) => Error;
}

const ENOENT = 2;
const ENOTDIR = 20;

/** Runs `entries` by the rules of MountOpt with `mount` (0 or -errno): the failing index and errno, if any. */
function runMounts(entries: readonly MountRequest[], mount: (e: MountRequest) => number): { index: number; errno: number } | undefined {
  let prev = 0;
  let skipNext = false;
  for (const [index, e] of entries.entries()) {
    if (skipNext || (e.opts & MountOpt.ALT && prev !== ENOTDIR)) {
      skipNext = false;
      prev = 0;
      continue;
    }
    const errno = -mount(e);
    prev = errno;
    if (errno === 0 || (errno === ENOTDIR && e.opts & MountOpt.HAS_ALT)) continue;
    if (errno === ENOENT && e.opts & MountOpt.OK_MISSING) {
      skipNext = (e.opts & MountOpt.SKIP_NEXT_IF_MISSING) !== 0;
      prev = 0;
      continue;
    }
    return { index, errno };
  }
  return undefined;
}

export interface Here {
  /** A path by which the container's process reaches our descriptor `fd` (and `name` below it). */
  fd(fd: number, name?: string): string;
  /** The host's `path` as we reach it in the container's mount namespace (before pivot_root: its "/" afterwards). */
  host(path: string): string;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data?: string | null): void;
  /** As mount, 0 or -errno instead of throwing. */
  mountOrErrno(source: string | null, target: string, fstype: string | null, flags: number, data?: string | null): number;
  /** Several mounts at once, in order, by the rules of MountOpt; the first that fails throws its `fail`. */
  mounts(entries: readonly MountEntry[]): void;
  /** mount_setattr(2) of the tree at our `fd`, recursively; false where the kernel lacks it. */
  setattr(fd: number, attrs: number, what: string): boolean;
  /** A detached copy of the host's mount tree at `path` (a handle for moveMount and closeTree). */
  openTreeClone(path: string): number;
  moveMount(tree: number, targetFd: number, what: string): void;
  closeTree(tree: number): void;
  unshare(flags: number): void;
  /** Joins the namespace of the file `path` (a /proc/<pid>/ns/<ns> or a bind-mounted nsfs file). */
  setns(path: string, nstype: number): void;
  sethostname(name: string): void;
  /** pivot_root into our `rootFd` with the old root detached; "/" is the container's from then on. */
  pivot(rootFd: number): void;
  /** chdir to our `fd`. */
  chdirTo(fd: number): void;
}

/** The calls made by this very process (init stage 2). */
const inProcess: Here = {
  fd: (fd, name) => (name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`),
  host: (path) => path,
  mount: (source, target, fstype, flags, data = null) => mount(source, target, fstype, flags, data),
  mountOrErrno: (source, target, fstype, flags, data = null) => mountOrErrno(source, target, fstype, flags, data),
  mounts: (entries) => {
    const failed = runMounts(entries, (e) => mountOrErrno(e.source, e.target, e.fstype, e.flags, e.data));
    if (failed) throw entries[failed.index]!.fail(failed.errno);
  },
  setattr: (fd, attrs, what) => mountSetattrRecursive(fd, attrs, what),
  openTreeClone: (path) => openTreeClone(path),
  moveMount: (tree, targetFd, what) => moveMount(tree, targetFd, what),
  closeTree: (tree) => close(tree),
  unshare: (flags) => unshare(flags),
  setns: (path, nstype) => {
    const fd = openat(AT_FDCWD, path, O_CLOEXEC);
    try {
      setns(fd, nstype);
    } finally {
      close(fd);
    }
  },
  sethostname: (name) => sethostname(name),
  pivot: (rootFd) => {
    fchdir(rootFd);
    pivotRoot(".", ".");
    umount2(".", 2 /* MNT_DETACH */);
    chdir("/");
  },
  chdirTo: (fd) => fchdir(fd),
};

/**
 * The calls of a process the launcher forked (see src/ffi/child.ts): it is asked for each,
 * and reaches our descriptors through the host's /proc, which it holds open (`hostProc`, its
 * descriptor) so that they stay reachable after its pivot_root.
 */
export class InChild implements Here {
  private readonly hostProc = HOST_PROC_FD;
  /**
   * `cloned`: the namespaces it was cloned into (CLONE_NEW* flags): an unshare of those is
   * already done.
   */
  constructor(
    readonly child: Child,
    private readonly cloned = 0,
    private readonly self = process.pid,
  ) {}
  fd(fd: number, name?: string): string {
    const p = `/proc/self/fd/${this.hostProc}/${this.self}/fd/${fd}`;
    return name === undefined ? p : `${p}/${name}`;
  }
  host(path: string): string {
    // Through its root: a link on the way would be resolved against ours, in our namespace, so
    // the directory is resolved first (the same links in both: its namespace is a copy of ours);
    // the last name is left as it is, for the caller's O_NOFOLLOW.
    let dir = dirname(path);
    try {
      dir = realpathSync(dir);
    } catch {
      // missing: the open that follows says so
    }
    const name = basename(path);
    return `/proc/${this.child.pid}/root${dir === "/" ? "" : dir}${name === "" ? "/" : `/${name}`}`;
  }
  mountOrErrno(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): number {
    const present = (source !== null ? 1 : 0) | (fstype !== null ? 2 : 0) | (data !== null ? 4 : 0);
    return this.child.call(Op.MOUNT, present, flags, source ?? "", target, fstype ?? "", data ?? "");
  }
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
    const rc = this.mountOrErrno(source, target, fstype, flags, data);
    if (rc < 0) throw this.error("mount", -rc, `${source ?? "none"}, ${this.shown(target)}, ${fstype ?? "none"}, ${flags}`);
  }
  mounts(entries: readonly MountEntry[]): void {
    const failed = this.child.mounts(entries);
    if (failed) throw entries[failed.index]!.fail(failed.errno);
  }
  setattr(fd: number, attrs: number, what: string): boolean {
    const rc = this.child.call(Op.SETATTR, 0, attrs, this.fd(fd));
    if (rc === -38 /* ENOSYS */) return false;
    if (rc < 0) throw this.error("mount_setattr", -rc, what);
    return true;
  }
  openTreeClone(path: string): number {
    return this.child.must(Op.OPEN_TREE, 0, 0, "open_tree", path, path);
  }
  moveMount(tree: number, targetFd: number, what: string): void {
    this.child.must(Op.MOVE_MOUNT, tree, 0, "move_mount", what, this.fd(targetFd));
  }
  closeTree(tree: number): void {
    this.child.call(Op.CLOSE, tree, 0);
  }
  unshare(flags: number): void {
    const left = flags & ~this.cloned;
    if (left !== 0) this.child.must(Op.UNSHARE, left, 0, "unshare", `0x${left.toString(16)}`);
  }
  setns(path: string, nstype: number): void {
    this.child.must(Op.SETNS, nstype, 0, "setns", path, path);
  }
  sethostname(name: string): void {
    this.child.must(Op.SETHOSTNAME, 0, 0, "sethostname", name, name);
  }
  pivot(rootFd: number): void {
    const rc = this.child.call(Op.PIVOT, 0, 0, this.fd(rootFd));
    if (rc >= 0) return;
    // The native sequence says which of its calls failed by a thousands offset.
    const [call, errno] =
      rc > -1000 ? ["chdir", -rc] : rc > -2000 ? ["pivot_root", -rc - 1000] : rc > -3000 ? ["umount2", -rc - 2000] : ["chdir", -rc - 3000];
    throw this.error(call!, errno as number, "the container's root");
  }
  chdirTo(fd: number): void {
    this.child.must(Op.CHDIR, this.hostProc, 0, "chdir", "the working directory", `${this.self}/fd/${fd}`);
  }
  /** Our paths of the form /proc/self/fd/H/<pid>/fd/N, shown as the descriptor they name. */
  private shown(target: string): string {
    return target.replace(`/proc/self/fd/${this.hostProc}/${this.self}/fd/`, "fd ");
  }
  private error(call: string, errno: number, what: string): SysError {
    return new SysError(call, errno, this.child.strerror(errno), what);
  }
}

/** Where the setup being run now runs (the launcher runs one at a time, synchronously). */
export let here: Here = inProcess;

/** Runs `fn` with `h` as `here`. */
export function within<T>(h: Here, fn: () => T): T {
  const before = here;
  here = h;
  try {
    return fn();
  } finally {
    here = before;
  }
}
