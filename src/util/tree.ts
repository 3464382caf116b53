// Whole-tree work (delete, measure) through directory handles: linear in entries and depth,
// names as bytes, never a path longer than one name. A layer may nest 10,000 directories
// deep, where path-based walks fail (ENAMETOOLONG) or redo the whole path per entry.
import { readdirSync } from "node:fs";
import {
  AT_FDCWD,
  AT_REMOVEDIR,
  AT_EMPTY_PATH,
  EISDIR,
  ELOOP,
  ENOENT,
  ENOTDIR,
  EPERM,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  S_IFDIR,
  S_IFMT,
  close,
  fail,
  fstatx,
  openat,
  statxat,
  unlinkat,
} from "../ffi/fs-at.ts";

/** The names in an open directory, as latin1 strings (their bytes). */
export function listAt(fd: number): string[] {
  return (readdirSync(`/proc/self/fd/${fd}`, { encoding: "buffer" }) as Buffer[]).map((b) => b.toString("latin1", 0, b.length));
}

/** A directory under `dirfd`, opened without following a final symlink; throws naming `what`. */
export function openDir(dirfd: number, name: string, what: string): number {
  const fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0) throw fail("openat", fd, what);
  return fd;
}

/** The inode number of an open file (to tell a directory moved under a walk). */
export function inode(fd: number, what: string): bigint {
  const st = fstatx(fd);
  if (typeof st === "number") throw fail("statx", st, what);
  return st.ino;
}

interface Frame {
  names: string[];
  next: number;
  /** This directory's inode, checked when we come back to it through "..". */
  ino: bigint;
  /** Its name in its parent. */
  name: string;
}

/**
 * Removes `name` inside directory `dirfd`, recursively, never following a symlink. Holds two
 * descriptors at most: it goes down by opening a child and up through "..", checking the inode.
 * Returns false if there was nothing to remove.
 */
export function removeAt(dirfd: number, name: string, what = name): boolean {
  const first = unlinkat(dirfd, name, 0);
  if (first === 0) return true;
  if (first === -ENOENT) return false;
  if (first !== -EISDIR && first !== -EPERM /* what some filesystems say for a directory */) throw fail("unlinkat", first, what);
  let cur = openDir(dirfd, name, what);
  const stack: Frame[] = [];
  let frame: Frame = { names: listAt(cur), next: 0, ino: inode(cur, what), name };
  try {
    for (;;) {
      let descended = false;
      while (frame.next < frame.names.length) {
        const child = frame.names[frame.next++]!;
        const r = unlinkat(cur, child, 0);
        if (r === 0 || r === -ENOENT) continue;
        if (r !== -EISDIR && r !== -EPERM) throw fail("unlinkat", r, `${what}/…/${child}`);
        const fd = openDir(cur, child, `${what}/…/${child}`);
        close(cur);
        cur = fd;
        stack.push(frame);
        frame = { names: listAt(cur), next: 0, ino: inode(cur, what), name: child };
        descended = true;
        break;
      }
      if (descended) continue;
      const parent = stack.pop();
      if (!parent) break;
      const up = openDir(cur, "..", what);
      if (inode(up, what) !== parent.ino) {
        close(up);
        throw new Error(`removing ${what}: a directory moved while it was being removed`);
      }
      close(cur);
      cur = up;
      const r = unlinkat(cur, frame.name, AT_REMOVEDIR);
      if (r < 0 && r !== -ENOENT) throw fail("unlinkat", r, `${what}/…/${frame.name}`);
      frame = parent;
    }
  } finally {
    close(cur);
  }
  const r = unlinkat(dirfd, name, AT_REMOVEDIR);
  if (r < 0 && r !== -ENOENT) throw fail("unlinkat", r, what);
  return true;
}

/** Removes the tree at `path` (absolute); the last component is not followed if it is a symlink. */
export function removeTree(path: string): boolean {
  const slash = path.lastIndexOf("/");
  if (slash < 0 || path.endsWith("/")) throw new Error(`removeTree: '${path}' is not an absolute path to an entry`);
  const parent = openat(AT_FDCWD, slash === 0 ? "/" : path.slice(0, slash), O_RDONLY | O_DIRECTORY);
  if (parent === -ENOENT) return false;
  if (parent < 0) throw fail("openat", parent, path);
  try {
    return removeAt(parent, Buffer.from(path.slice(slash + 1), "utf8").toString("latin1"), path);
  } finally {
    close(parent);
  }
}

export interface WalkEntry {
  mode: number;
  size: number;
  blocks: number;
  nlink: number;
  ino: bigint;
  dev: string;
}

/**
 * Visits every entry under (and including) the directory at `path`, without following
 * symlinks, with the same bounded descriptors as removeAt. `visit` sees lstat facts only.
 */
export function walkTree(path: string, visit: (e: WalkEntry) => void): void {
  let cur = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (cur === -ENOENT) return;
  if (cur === -ENOTDIR || cur === -ELOOP) {
    // Not a directory (or a symlink): that one entry.
    const st = statxat(AT_FDCWD, path);
    if (typeof st !== "number") visit(st);
    return;
  }
  if (cur < 0) throw fail("openat", cur, path);
  const top = statxat(cur, "", AT_EMPTY_PATH);
  if (typeof top === "number") throw fail("statx", top, path);
  visit(top);
  const stack: Frame[] = [];
  let frame: Frame = { names: listAt(cur), next: 0, ino: top.ino, name: "" };
  try {
    for (;;) {
      let descended = false;
      while (frame.next < frame.names.length) {
        const child = frame.names[frame.next++]!;
        const st = statxat(cur, child);
        if (st === -ENOENT) continue;
        if (typeof st === "number") throw fail("statx", st, `${path}/…/${child}`);
        visit(st);
        if ((st.mode & S_IFMT) !== S_IFDIR) continue;
        const fd = openat(cur, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd === -ENOENT) continue;
        if (fd < 0) throw fail("openat", fd, `${path}/…/${child}`);
        close(cur);
        cur = fd;
        stack.push(frame);
        frame = { names: listAt(cur), next: 0, ino: st.ino, name: child };
        descended = true;
        break;
      }
      if (descended) continue;
      const parent = stack.pop();
      if (!parent) break;
      const up = openDir(cur, "..", path);
      if (inode(up, path) !== parent.ino) {
        close(up);
        throw new Error(`walking ${path}: a directory moved while it was being walked`);
      }
      close(cur);
      cur = up;
      frame = parent;
    }
  } finally {
    close(cur);
  }
}
