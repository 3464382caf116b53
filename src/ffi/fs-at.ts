// The *at file calls (openat, mkdirat, mknodat, symlinkat, linkat, ...) through bun:ffi, with
// names as raw bytes: what unpacking a layer needs to work inside a directory handle, never a path.
// Calls return the result or -errno (no exceptions on the hot path); `fail` makes the SysError.
import { dlopen } from "bun:ffi";
import { constants } from "node:fs";
import type { SysError } from "./errno.ts";
import { errno, libcCalls, makedev, sysError } from "./libc.ts";

// Only the calls src/ffi/libc.ts does not open (it holds openat, mkdirat, ... and errno): one
// table per symbol, and the init stage, which loads only libc.ts, does not pay for these.
const extra = dlopen("libc.so.6", {
  linkat: { args: ["i32", "ptr", "i32", "ptr", "i32"], returns: "i32" },
  fchmodat: { args: ["i32", "ptr", "u32", "i32"], returns: "i32" },
  fchmod: { args: ["i32", "u32"], returns: "i32" },
  fchown: { args: ["i32", "u32", "u32"], returns: "i32" },
  utimensat: { args: ["i32", "ptr", "ptr", "i32"], returns: "i32" },
  futimens: { args: ["i32", "ptr"], returns: "i32" },
  statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" },
  fsetxattr: { args: ["i32", "ptr", "ptr", "u64", "i32"], returns: "i32" },
});
const sym = { ...libcCalls, ...extra.symbols };

export const O_RDONLY = constants.O_RDONLY;
export const O_WRONLY = constants.O_WRONLY;
export const O_CREAT = constants.O_CREAT;
export const O_EXCL = constants.O_EXCL;
export const O_NOFOLLOW = constants.O_NOFOLLOW;
export const O_DIRECTORY = constants.O_DIRECTORY;
/** Not in node's constants; the same on x86_64 and arm64 (asm-generic). */
const O_CLOEXEC = 0o2000000;
export const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

export const EPERM = 1;
export const ENOENT = 2;
export const EEXIST = 17;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const ELOOP = 40;

/** rc, or -errno when the call returned -1 (read before anything else can touch errno). */
function rc(value: number | bigint): number {
  const n = Number(value);
  return n === -1 ? -errno() : n;
}

/** The SysError for a call that returned -errno. */
export const fail: (call: string, negErrno: number, what: string) => SysError = sysError;

/**
 * A name as a NUL-terminated C string. Names travel as latin1 strings (one char per byte,
 * the tar reader's form), so any byte sequence survives; `Uint8Array` is taken as is.
 */
function cname(name: string | Uint8Array): Buffer {
  if (typeof name === "string") {
    const b = Buffer.allocUnsafe(name.length + 1);
    b.write(name, 0, "latin1");
    b[name.length] = 0;
    return b;
  }
  const b = Buffer.allocUnsafe(name.byteLength + 1);
  b.set(name, 0);
  b[name.byteLength] = 0;
  return b;
}

export function openat(dirfd: number, name: string, flags: number, mode = 0): number {
  return rc(sym.openat(dirfd, cname(name), flags | O_CLOEXEC, mode));
}

export function mkdirat(dirfd: number, name: string, mode: number): number {
  return rc(sym.mkdirat(dirfd, cname(name), mode));
}

export function mknodat(dirfd: number, name: string, mode: number, major = 0, minor = 0): number {
  return rc(sym.mknodat(dirfd, cname(name), mode, makedev(major, minor)));
}

export function symlinkat(target: string, dirfd: number, name: string): number {
  return rc(sym.symlinkat(cname(target), dirfd, cname(name)));
}

export function linkat(olddirfd: number, oldname: string, newdirfd: number, newname: string): number {
  return rc(sym.linkat(olddirfd, cname(oldname), newdirfd, cname(newname), 0));
}

export function unlinkat(dirfd: number, name: string, flags = 0): number {
  return rc(sym.unlinkat(dirfd, cname(name), flags));
}

const LINK_BUF = Buffer.alloc(65536);
/** A symlink's target as a latin1 string (its bytes), or -errno. */
export function readlinkat(dirfd: number, name: string): string | number {
  const n = rc(sym.readlinkat(dirfd, cname(name), LINK_BUF, LINK_BUF.byteLength));
  if (n < 0) return n;
  return LINK_BUF.toString("latin1", 0, n);
}

export function fchownat(dirfd: number, name: string, uid: number, gid: number, flags = AT_SYMLINK_NOFOLLOW): number {
  return rc(sym.fchownat(dirfd, cname(name), uid >>> 0, gid >>> 0, flags));
}

/** chmod of a name that is not a symlink (the caller just made it: a dir, node or fifo). */
export function fchmodat(dirfd: number, name: string, mode: number): number {
  return rc(sym.fchmodat(dirfd, cname(name), mode, 0));
}

export function fchmod(fd: number, mode: number): number {
  return rc(sym.fchmod(fd, mode));
}

export function fchown(fd: number, uid: number, gid: number): number {
  return rc(sym.fchown(fd, uid >>> 0, gid >>> 0));
}

function timespecs(time: readonly [number, number]): BigInt64Array {
  return new BigInt64Array([BigInt(time[0]), BigInt(time[1]), BigInt(time[0]), BigInt(time[1])]);
}

/** Access and modification time of a name (not following a final symlink), as [seconds, nanoseconds]. */
export function utimensat(dirfd: number, name: string, time: readonly [number, number], flags = AT_SYMLINK_NOFOLLOW): number {
  return rc(sym.utimensat(dirfd, cname(name), timespecs(time), flags));
}

/** The same for an open descriptor. */
export function futimens(fd: number, time: readonly [number, number]): number {
  return rc(sym.futimens(fd, timespecs(time)));
}

export interface StatxResult {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  ino: bigint;
  nlink: number;
  rdevMajor: number;
  rdevMinor: number;
  /** The device holding it, as "major:minor". */
  dev: string;
}

const STATX_BASIC = 0x7ff;
/** lstat of a name in a directory; -errno on failure. */
export function statxat(dirfd: number, name: string, flags = AT_SYMLINK_NOFOLLOW): StatxResult | number {
  const raw = new Uint8Array(256);
  const r = rc(sym.statx(dirfd, cname(name), flags, STATX_BASIC, raw));
  const buf = new DataView(raw.buffer);
  if (r < 0) return r;
  return {
    nlink: buf.getUint32(16, true),
    uid: buf.getUint32(20, true),
    gid: buf.getUint32(24, true),
    mode: buf.getUint16(28, true),
    ino: buf.getBigUint64(32, true),
    size: Number(buf.getBigUint64(40, true)),
    blocks: Number(buf.getBigUint64(48, true)),
    rdevMajor: buf.getUint32(128, true),
    rdevMinor: buf.getUint32(132, true),
    dev: `${buf.getUint32(136, true)}:${buf.getUint32(140, true)}`,
  };
}

/** fstat of an open descriptor. */
export function fstatx(fd: number): StatxResult | number {
  return statxat(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}

export function fsetxattr(fd: number, name: string, value: Uint8Array): number {
  const v = value.byteLength === 0 ? new Uint8Array(1) : value;
  return rc(sym.fsetxattr(fd, cname(name), v, value.byteLength, 0));
}

/** Sets an xattr on `name` inside directory `dirfd` without opening it (devices, fifos, symlinks). */
export function lsetxattrat(dirfd: number, name: string, xname: string, value: Uint8Array): number {
  const path = Buffer.concat([Buffer.from(`/proc/self/fd/${dirfd}/`), cname(name)]);
  const v = value.byteLength === 0 ? new Uint8Array(1) : value;
  return rc(sym.lsetxattr(path, cname(xname), v, value.byteLength, 0));
}

export function close(fd: number): number {
  return rc(sym.close(fd));
}
