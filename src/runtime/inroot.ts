// Paths inside a container's root (or a sandbox), resolved as chroot(2) would resolve them but
// walked here one component at a time from a descriptor of that root: no link the image made
// can lead out of it, and what is opened is what gets used (mounts go onto /proc/self/fd/N).
// (openat2's RESOLVE_IN_ROOT does the lookup in one call, but making what is missing needs
// the walk anyway, and the walk works on kernels before 5.6.)
import { fstatSync, type Stats } from "node:fs";
import { type SysError, errnoName } from "../ffi/errno.ts";
import {
  AT_EMPTY_PATH,
  AT_SYMLINK_NOFOLLOW,
  DT_DIR,
  EEXIST,
  ELOOP,
  ENOENT,
  ENOTDIR,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_PATH,
  O_RDONLY,
  O_WRONLY,
  PROC_SUPER_MAGIC,
  close,
  fchownat,
  mkdirat,
  mkdiratOrErrno,
  openat,
  openatOrErrno,
  fsType,
  readdirFd,
  readlinkat,
  sysError,
} from "../ffi/libc.ts";
import { UcrError } from "../errors.ts";

/** As the kernel: at most 40 links followed in one lookup. */
const MAX_LINKS = 40;
/** A name that keeps disappearing while we create it: someone is racing us. */
const MAX_CREATE_TRIES = 8;

export class PathError extends UcrError {
  constructor(
    /** errno name of what went wrong: ENOENT, ENOTDIR, ELOOP, EROFS, ... */
    readonly code: string,
    message: string,
  ) {
    super("invalid", message);
  }
}

export interface OpenOptions {
  /** open(2) flags for the last component (default O_PATH); O_NOFOLLOW and O_CLOEXEC are always added. */
  flags?: number;
  /** Make what is missing: the directories on the way, and the last one as a directory or an empty file. */
  create?: "dir" | "file";
  /** A symlink as the last component: followed inside the root (default) or refused. */
  finalLink?: "follow" | "refuse";
  /** Any symlink on the way refused (RESOLVE_NO_SYMLINKS), for trees a workload may change. */
  noLinks?: boolean;
}

export interface Opened {
  fd: number;
  st: Stats;
  /** Where it was found, as an absolute path inside the root with every link resolved. */
  path: string;
}

function parts(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}

const code = (err: unknown): string | undefined => (err as SysError).code;

/**
 * Opens `path` inside the tree of `rootFd`: ".." stops at the root, a symlink is read and its
 * target walked from the root (absolute) or where it was (relative), and the kernel never
 * follows a link itself (O_NOFOLLOW on every component, magic /proc links included).
 */
export function openInRoot(rootFd: number, path: string, options: OpenOptions = {}): Opened {
  const dirs: number[] = []; // descriptors of the directories walked into, below the root
  const names: string[] = []; // and their names
  const here = () => dirs[dirs.length - 1] ?? rootFd;
  const where = (name?: string) => `/${[...names, ...(name === undefined ? [] : [name])].join("/")}`;
  const todo = path.split("/").filter((p) => p !== "");
  let links = 0;
  let creates = 0;
  const followLink = (name: string, last: boolean): void => {
    const target = readlinkat(here(), name);
    if (options.noLinks || (last && options.finalLink === "refuse")) {
      throw new PathError("ELOOP", `${where(name)} is a symlink (to '${target}')`);
    }
    if (++links > MAX_LINKS) throw new PathError("ELOOP", `${path}: too many levels of symlinks`);
    // /proc's magic links (fd/N, cwd, root, exe) read as absolute paths of what they lead to,
    // maybe outside the root (CVE-2024-21626): never taken for an ordinary link. (/proc's
    // ordinary links, self and thread-self, are relative.)
    if (target.startsWith("/") && fsType(here()) === PROC_SUPER_MAGIC) {
      throw new PathError("ELOOP", `${where(name)} is a magic link of /proc (to '${target}'), which ucr does not follow`);
    }
    if (target.startsWith("/")) {
      while (dirs.length > 0) close(dirs.pop()!);
      names.length = 0;
    }
    todo.unshift(...parts(target));
    // a link to "." or "/" as the last component names the directory it leads to
    if (last && parts(target).length === 0) todo.push(".");
  };
  const create = (name: string, last: boolean): void => {
    if (++creates > MAX_CREATE_TRIES) throw new PathError("EAGAIN", `${where(name)} keeps changing while it is created`);
    let rc;
    if (last && options.create === "file") {
      rc = openatOrErrno(here(), name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644);
      if (rc >= 0) close(rc);
    } else {
      rc = mkdiratOrErrno(here(), name, 0o755);
    }
    // EEXIST: made by someone else meanwhile (or a dangling link): look again
    if (rc < 0 && rc !== -EEXIST) {
      throw new PathError(errnoName(-rc), `cannot create ${where(name)}: ${sysError(last ? "openat" : "mkdirat", rc, name).message}`);
    }
  };
  try {
    for (;;) {
      const name = todo.shift();
      if (name === undefined || (name === "." && todo.length === 0)) {
        // the path ends in a directory already open (the root, or after "." or "..")
        const fd = openat(here(), ".", (options.flags ?? O_PATH) | O_CLOEXEC);
        return { fd, st: fstatSync(fd), path: where() };
      }
      if (name === ".") continue;
      if (name === "..") {
        if (dirs.length > 0) {
          close(dirs.pop()!);
          names.pop();
        }
        continue;
      }
      const last = todo.length === 0;
      const flags = last ? (options.flags ?? O_PATH) : O_PATH | O_DIRECTORY;
      // No exceptions on the way: this runs for every mount point of every launch.
      const fd = openatOrErrno(here(), name, flags | O_NOFOLLOW | O_CLOEXEC);
      if (fd === -ENOENT) {
        if (options.create === undefined) throw new PathError("ENOENT", `${where(name)} does not exist`);
        create(name, last);
        todo.unshift(name);
        continue;
      }
      if (fd < 0) {
        // ELOOP (a link under O_NOFOLLOW) or ENOTDIR (a link, or a file, under O_DIRECTORY)
        if (fd !== -ELOOP && fd !== -ENOTDIR) {
          throw new PathError(errnoName(-fd), `cannot open ${where(name)}: ${sysError("openat", fd, name).message}`);
        }
        let isLink = true;
        try {
          followLink(name, last);
        } catch (e) {
          if (code(e) !== "EINVAL") throw e;
          isLink = false;
        }
        if (!isLink) throw new PathError("ENOTDIR", `${where(name)} is not a directory`);
        continue;
      }
      if (!last) {
        // opened O_DIRECTORY | O_NOFOLLOW: a directory, not a link
        dirs.push(fd);
        names.push(name);
        continue;
      }
      const st = fstatSync(fd);
      if (st.isSymbolicLink()) {
        // O_PATH | O_NOFOLLOW opens a link itself
        close(fd);
        followLink(name, last);
        continue;
      }
      return { fd, st, path: where(name) };
    }
  } finally {
    for (const fd of dirs) close(fd);
  }
}

/** What kind of file `st` is, in words for an error message. */
export function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFile()) return "a regular file";
  if (st.isSymbolicLink()) return "a symlink";
  if (st.isFIFO()) return "a fifo";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "a special file";
}

/** A directory descriptor of a host path the agent made (trusted), for walking below it. */
export function openDir(path: string): number {
  return openat(-100 /* AT_FDCWD */, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/** Deeper than this, a tree is not given away (each level holds a descriptor while it is walked). */
const MAX_CHOWN_DEPTH = 128;

/**
 * chown -R of the directory `dirFd` (opened for reading) without following any link: links
 * themselves change owner, what they point at does not; subdirectories are opened O_NOFOLLOW
 * below their parent's descriptor, so a name swapped for a link mid-walk leads nowhere.
 */
export function chownTree(dirFd: number, uid: number, gid: number, depth = 0): void {
  if (depth > MAX_CHOWN_DEPTH) throw new PathError("ELOOP", `more than ${MAX_CHOWN_DEPTH} levels of directories`);
  fchownat(dirFd, "", uid, gid, AT_EMPTY_PATH);
  for (const entry of readdirFd(dirFd)) {
    // DT_UNKNOWN (0) on filesystems that do not say: try it as a directory.
    if (entry.type === DT_DIR || entry.type === 0) {
      let sub: number | undefined;
      try {
        sub = openat(dirFd, entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      } catch (err) {
        if (code(err) !== "ENOTDIR" && code(err) !== "ELOOP") throw err;
      }
      if (sub !== undefined) {
        try {
          chownTree(sub, uid, gid, depth + 1);
        } finally {
          close(sub);
        }
        continue;
      }
    }
    fchownat(dirFd, entry.name, uid, gid, AT_SYMLINK_NOFOLLOW);
  }
}

/**
 * Makes the directory `rel` below `top` (a directory the agent made), where every component
 * below `top` may have been written by a workload (a nested container's sandbox sits in its
 * parent's): no link is followed and missing directories on the way are made. `exclusive`
 * (the default): the last one must not exist yet (a workload's directory there could hold
 * links the launch would follow).
 */
export function makeDirBelow(top: string, rel: string, mode: number, options: { exclusive?: boolean } = {}): void {
  const topFd = openDir(top);
  try {
    if (options.exclusive === false) {
      close(openInRoot(topFd, rel, { create: "dir", noLinks: true, flags: O_PATH | O_DIRECTORY }).fd);
      return;
    }
    const slash = rel.lastIndexOf("/");
    const parent = openInRoot(topFd, slash < 0 ? "." : rel.slice(0, slash), { create: "dir", noLinks: true, flags: O_PATH | O_DIRECTORY });
    try {
      mkdirat(parent.fd, rel.slice(slash + 1), mode);
    } catch (err) {
      const why = code(err) === "EEXIST" ? "it exists already" : (err as Error).message;
      throw new PathError(code(err) ?? "EIO", `cannot make ${top}/${rel}: ${why}`);
    } finally {
      close(parent.fd);
    }
  } catch (err) {
    if (err instanceof PathError && !err.message.startsWith("cannot make")) {
      throw new PathError(err.code, `cannot make ${top}/${rel}: ${err.message}`);
    }
    throw err;
  } finally {
    close(topFd);
  }
}
