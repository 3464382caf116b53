// With spawn.ts beside it, the only place ucr talks to libc directly (bun:ffi): the
// namespace and mount calls the container init stage needs. Each wrapper throws SysError naming the call, its subject and
// the errno, so a failure reads "mount(/a -> /b) failed: ENOENT (No such file or directory)".
// (Over 400 lines: one small wrapper per call, and the constants they take.)
import { dlopen, ptr, read, type Pointer } from "bun:ffi";
import { readFileSync } from "node:fs";
import { SysError } from "./errno.ts";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
  unshare: { args: ["i32"], returns: "i32" },
  setns: { args: ["i32", "i32"], returns: "i32" },
  mount: { args: ["ptr", "ptr", "ptr", "u64", "ptr"], returns: "i32" },
  umount2: { args: ["ptr", "i32"], returns: "i32" },
  sethostname: { args: ["ptr", "u64"], returns: "i32" },
  chroot: { args: ["ptr"], returns: "i32" },
  chdir: { args: ["ptr"], returns: "i32" },
  syscall: { args: ["i64", "i64", "i64", "i64", "i64", "i64"], returns: "i64" },
  madvise: { args: ["ptr", "u64", "i32"], returns: "i32" },
  execve: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  setgroups: { args: ["u64", "ptr"], returns: "i32" },
  setresgid: { args: ["u32", "u32", "u32"], returns: "i32" },
  setresuid: { args: ["u32", "u32", "u32"], returns: "i32" },
  fcntl: { args: ["i32", "i32", "i32"], returns: "i32" },
  dup2: { args: ["i32", "i32"], returns: "i32" },
  flock: { args: ["i32", "i32"], returns: "i32" },
  prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
  lsetxattr: { args: ["ptr", "ptr", "ptr", "u64", "i32"], returns: "i32" },
  lgetxattr: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i64" },
  openat: { args: ["i32", "ptr", "i32", "u32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  readlinkat: { args: ["i32", "ptr", "ptr", "u64"], returns: "i64" },
  mkdirat: { args: ["i32", "ptr", "u32"], returns: "i32" },
  mknodat: { args: ["i32", "ptr", "u32", "u64"], returns: "i32" },
  symlinkat: { args: ["ptr", "i32", "ptr"], returns: "i32" },
  unlinkat: { args: ["i32", "ptr", "i32"], returns: "i32" },
  fchownat: { args: ["i32", "ptr", "u32", "u32", "i32"], returns: "i32" },
  fchdir: { args: ["i32"], returns: "i32" },
  umask: { args: ["u32"], returns: "u32" },
  fstatfs: { args: ["i32", "ptr"], returns: "i32" },
  renameat2: { args: ["i32", "ptr", "i32", "ptr", "u32"], returns: "i32" },
  ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
});

// Namespace flags (linux/sched.h).
export const CLONE_FS = 0x00000200;
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;

// mount(2) flags (linux/mount.h).
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_REMOUNT = 32;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;
export const MS_SLAVE = 1 << 19;
export const MS_SHARED = 1 << 20;

// umount2(2) flags.
export const MNT_DETACH = 2;

/** Syscalls without a wrapper in every glibc we may meet; the older ones differ by architecture. */
const arm64 = process.arch === "arm64";
const SYS_PIVOT_ROOT = arm64 ? 41 : 155;
const SYS_GETDENTS64 = arm64 ? 61 : 217;
const SYS_CLOSE_RANGE = 436;
const SYS_MOUNT_SETATTR = 442;

/** syscall(2) with up to five arguments; buffers are passed as addresses and kept alive by the caller. */
function sys(nr: number, a = 0, b = 0, c = 0, d = 0, e = 0): number {
  return Number(libc.symbols.syscall(nr, a, b, c, d, e));
}

const utf8 = new TextEncoder();

/**
 * A NUL-terminated copy of `s` (UTF-8). Passed to ffi as the TypedArray itself (not a raw
 * pointer number), so the buffer stays reachable, and cannot be collected, during the call.
 * TextEncoder, not Buffer.from: in a fresh process (every init stage) Buffer.from costs
 * ~8 µs a call and this ~1 µs, and the init stage makes dozens of these calls per launch.
 */
function cstr(s: string): Uint8Array {
  return utf8.encode(`${s}\0`);
}

/** libc's calls, for src/ffi/fs-at.ts: one dlopen of what both use (the init stage pays for each symbol). */
export const libcCalls = libc.symbols;

/** The calling thread's errno; read right after the failed call. */
export function errno(): number {
  return read.i32(libc.symbols.__errno_location()!);
}

/** Throws SysError if a libc call returned -1; read errno before anything else can touch it. */
function check(rc: number | bigint, call: string, what?: string): void {
  if (Number(rc) !== -1) return;
  const e = errno();
  throw new SysError(call, e, libc.symbols.strerror(e)?.toString() ?? "unknown error", what);
}

export function unshare(flags: number): void {
  check(libc.symbols.unshare(flags), "unshare", `0x${flags.toString(16)}`);
}

export function setns(fd: number, nstype: number): void {
  check(libc.symbols.setns(fd, nstype), "setns", `fd ${fd}`);
}

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  const rc = libc.symbols.mount(
    source === null ? null : cstr(source),
    cstr(target),
    fstype === null ? null : cstr(fstype),
    flags,
    data === null ? null : cstr(data),
  );
  check(rc, "mount", `${source ?? fstype ?? "none"} -> ${target}`);
}

/** mount(2): 0, or -errno instead of throwing (for expected failures on a launch's hot path; see openatOrErrno). */
export function mountOrErrno(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null) {
  const c = (x: string | null) => (x === null ? null : cstr(x));
  const rc = libc.symbols.mount(c(source), cstr(target), c(fstype), flags, c(data));
  return rc === 0 ? 0 : -errno();
}

export function umount2(target: string, flags = 0): void {
  check(libc.symbols.umount2(cstr(target), flags), "umount2", target);
}

export function sethostname(name: string): void {
  const buf = Buffer.from(name, "utf8");
  check(libc.symbols.sethostname(buf, buf.length), "sethostname", name);
}

export function pivotRoot(newRoot: string, putOld: string): void {
  const a = cstr(newRoot);
  const b = cstr(putOld);
  check(sys(SYS_PIVOT_ROOT, ptr(a), ptr(b)), "pivot_root", `${newRoot}, ${putOld}`);
  void [a, b];
}

export function chroot(path: string): void {
  check(libc.symbols.chroot(cstr(path)), "chroot", path);
}

export function chdir(path: string): void {
  check(libc.symbols.chdir(cstr(path)), "chdir", path);
}

// mknod(2) file types (sys/stat.h).
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** glibc's makedev: the 64-bit dev_t layout Linux uses. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** Sets an extended attribute on a path without following a final symlink. */
export function lsetxattr(path: string, name: string, value: Uint8Array): void {
  const buf = value.byteLength === 0 ? new Uint8Array(1) : value;
  check(libc.symbols.lsetxattr(cstr(path), cstr(name), buf, value.byteLength, 0), "lsetxattr", `${path}, ${name}`);
}

/** Reads an extended attribute (null if absent). */
export function lgetxattr(path: string, name: string): Uint8Array | null {
  const buf = new Uint8Array(65536);
  const n = Number(libc.symbols.lgetxattr(cstr(path), cstr(name), buf, buf.byteLength));
  if (n === -1) {
    const e = errno();
    if (e === 61 /* ENODATA */) return null;
    throw new SysError("lgetxattr", e, libc.symbols.strerror(e)?.toString() ?? "unknown error", `${path}, ${name}`);
  }
  return buf.slice(0, n);
}

/** A NULL-terminated array of C strings; the buffers stay referenced by the returned object. */
function cstrArray(items: readonly string[]): { array: BigUint64Array; keep: Uint8Array[] } {
  const keep = items.map(cstr);
  const array = new BigUint64Array(items.length + 1);
  for (const [i, b] of keep.entries()) array[i] = BigInt(ptr(b));
  return { array, keep };
}

/**
 * Replaces this process with `path`; returns only by throwing. `lastly` runs once the
 * arguments are built, right before the call (where a seccomp filter goes in).
 */
export function execve(path: string, argv: readonly string[], env: Readonly<Record<string, string>>, lastly?: () => void): never {
  const a = cstrArray(argv);
  const e = cstrArray(Object.entries(env).map(([k, v]) => `${k}=${v}`));
  const p = cstr(path);
  lastly?.();
  const rc = libc.symbols.execve(p, a.array, e.array);
  void [a.keep, e.keep];
  check(rc, "execve", path);
  throw new Error("execve returned");
}

export function setgroups(gids: readonly number[]): void {
  const list = new Uint32Array(Math.max(1, gids.length));
  for (const [i, g] of gids.entries()) list[i] = g;
  check(libc.symbols.setgroups(gids.length, list), "setgroups", gids.join(","));
}

/** Real, effective and saved ids at once, so nothing can be regained. */
export function setresgid(gid: number): void {
  check(libc.symbols.setresgid(gid, gid, gid), "setresgid", String(gid));
}

export function setresuid(uid: number): void {
  check(libc.symbols.setresuid(uid, uid, uid), "setresuid", String(uid));
}

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** Makes `to` a copy of `from` (closing what `to` was), as a shell's `to>&from`. */
export function dup2(from: number, to: number): void {
  check(libc.symbols.dup2(from, to), "dup2", `fd ${from} -> ${to}`);
}

/** Marks a descriptor close-on-exec (so exec closes it: the launch's "it is running" signal). */
export function setCloexec(fd: number): void {
  const flags = libc.symbols.fcntl(fd, F_GETFD, 0);
  check(flags, "fcntl", `fd ${fd}`);
  check(libc.symbols.fcntl(fd, F_SETFD, flags | FD_CLOEXEC), "fcntl", `fd ${fd}`);
}

const MADV_DONTNEED = 4;

/**
 * Unmaps the pages of `file`'s read-only mappings in this process that nothing has written
 * (madvise MADV_DONTNEED): they stay in the page cache, and a later access maps them again
 * (a minor fault each). For an idle process whose code the kernel keeps mapped long after
 * the last use. Mappings with any copied-on-write page (relocated data) are left alone:
 * dropping those would bring back the file's bytes. Returns the bytes unmapped.
 */
export function dropCleanFilePages(file: string): number {
  let dropped = 0;
  let current: { start: number; end: number; eligible: boolean } | undefined;
  const finish = () => {
    if (current?.eligible && libc.symbols.madvise(current.start as Pointer, current.end - current.start, MADV_DONTNEED) === 0) {
      dropped += current.end - current.start;
    }
    current = undefined;
  };
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s+(.*)$/.exec(line);
    if (head) {
      finish();
      const [, start, end, perms, path] = head;
      current = {
        start: Number.parseInt(start!, 16),
        end: Number.parseInt(end!, 16),
        eligible: path === file && !perms!.includes("w") && perms!.endsWith("p"),
      };
    } else if (current && /^Anonymous:\s+[1-9]/.test(line)) {
      current.eligible = false;
    }
  }
  finish();
  return dropped;
}

const PR_SET_PDEATHSIG = 1;

/** Ask for `signal` when the parent dies. */
export function setParentDeathSignal(signal: number): void {
  check(libc.symbols.prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG");
}

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;

/** flock(2); with LOCK_NB returns false instead of waiting when the lock is held. */
export function flock(fd: number, op: number): boolean {
  const rc = libc.symbols.flock(fd, op);
  if (rc === -1) {
    const e = errno();
    if (e === 11 /* EWOULDBLOCK */ && op & LOCK_NB) return false;
    throw new SysError("flock", e, libc.symbols.strerror(e)?.toString() ?? "unknown error", `fd ${fd}`);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Paths relative to a directory descriptor (the *at calls): what lets the init stage work
// inside a container's root without ever resolving an image's path against the host.

// open(2) flags; the same values on x86_64 and arm64 (asm-generic).
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_EMPTY_PATH = 0x1000;

// errno values the callers of the non-throwing calls below look for (asm-generic/errno-base.h, errno.h).
export const ENOENT = 2;
export const EEXIST = 17;
export const ENOTDIR = 20;
export const EINVAL = 22;
export const ENOSYS = 38;
export const EROFS = 30;
export const ELOOP = 40;

/**
 * openat(2) that returns -errno instead of throwing. For the init stage's expected outcomes
 * (a name missing, a link): an exception costs it ~0.5 ms the first time one is thrown.
 */
export function openatOrErrno(dirfd: number, path: string, flags: number, mode = 0): number {
  const fd = libc.symbols.openat(dirfd, cstr(path), flags, mode);
  return fd >= 0 ? fd : -errno();
}

/** mkdirat(2): 0, or -errno instead of throwing (see openatOrErrno). */
export function mkdiratOrErrno(dirfd: number, path: string, mode: number): number {
  return libc.symbols.mkdirat(dirfd, cstr(path), mode) === 0 ? 0 : -errno();
}

/** SysError for -errno `rc` of a call made without throwing. */
export function sysError(call: string, rc: number, what: string): SysError {
  return new SysError(call, -rc, libc.symbols.strerror(-rc)?.toString() ?? "unknown error", what);
}

/** openat(2); throws SysError (its `code` says why, e.g. ELOOP for a final symlink under O_NOFOLLOW). */
export function openat(dirfd: number, path: string, flags: number, mode = 0): number {
  const fd = libc.symbols.openat(dirfd, cstr(path), flags, mode);
  check(fd, "openat", path);
  return fd;
}

export function close(fd: number): void {
  check(libc.symbols.close(fd), "close", `fd ${fd}`);
}

/** The target of the symlink `path` (relative to `dirfd`; "" with an O_PATH descriptor of the link itself). */
export function readlinkat(dirfd: number, path: string): string {
  const buf = Buffer.alloc(4096);
  const n = Number(libc.symbols.readlinkat(dirfd, cstr(path), buf, buf.length));
  check(n, "readlinkat", path);
  return buf.toString("utf8", 0, n);
}

export function mkdirat(dirfd: number, path: string, mode: number): void {
  check(libc.symbols.mkdirat(dirfd, cstr(path), mode), "mkdirat", path);
}

export function mknodat(dirfd: number, path: string, type: number, mode: number, major = 0, minor = 0): void {
  check(libc.symbols.mknodat(dirfd, cstr(path), type | (mode & 0o7777), makedev(major, minor)), "mknodat", path);
}

export function symlinkat(target: string, dirfd: number, path: string): void {
  check(libc.symbols.symlinkat(cstr(target), dirfd, cstr(path)), "symlinkat", `${path} -> ${target}`);
}

export function unlinkat(dirfd: number, path: string, flags = 0): void {
  check(libc.symbols.unlinkat(dirfd, cstr(path), flags), "unlinkat", path);
}

/**
 * renameat2(RENAME_EXCHANGE): swaps the two names atomically (both must exist). 0, or -errno
 * (ENOENT if either is missing; EINVAL where the filesystem cannot exchange).
 */
export function exchangeOrErrno(a: string, b: string): number {
  const RENAME_EXCHANGE = 2;
  return libc.symbols.renameat2(AT_FDCWD, cstr(a), AT_FDCWD, cstr(b), RENAME_EXCHANGE) === 0 ? 0 : -errno();
}

/** renameat2(RENAME_NOREPLACE): `from` becomes `to` unless `to` exists (EEXIST). 0, or -errno. */
export function renameNoReplaceOrErrno(from: string, to: string): number {
  const RENAME_NOREPLACE = 1;
  return libc.symbols.renameat2(AT_FDCWD, cstr(from), AT_FDCWD, cstr(to), RENAME_NOREPLACE) === 0 ? 0 : -errno();
}

// Inode flags (linux/fs.h): FS_IOC_GETFLAGS and FS_IOC_SETFLAGS take an int's address.
const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_TOPDIR_FL = 0x00020000;

/**
 * Marks directory `path` a top of unrelated trees (`chattr +T`): ext4 then places each
 * directory made directly in it in a block group of its own choosing (the Orlov allocator's
 * spreading, as for directories in a filesystem's root) rather than beside `path`. False if
 * the filesystem has no such flag (tmpfs, xfs, btrfs...) or it could not be set; nothing else
 * changes then.
 */
export function spreadSubdirs(path: string): boolean {
  const fd = libc.symbols.openat(AT_FDCWD, cstr(path), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const flags = new Int32Array(2);
    if (libc.symbols.ioctl(fd, FS_IOC_GETFLAGS, ptr(flags)) !== 0) return false;
    if ((flags[0]! & FS_TOPDIR_FL) !== 0) return true;
    flags[0] = flags[0]! | FS_TOPDIR_FL;
    return libc.symbols.ioctl(fd, FS_IOC_SETFLAGS, ptr(flags)) === 0;
  } finally {
    libc.symbols.close(fd);
  }
}

/** fchownat(2): with AT_EMPTY_PATH and "" the descriptor itself; with AT_SYMLINK_NOFOLLOW a link is not followed. */
export function fchownat(dirfd: number, path: string, uid: number, gid: number, flags: number): void {
  check(libc.symbols.fchownat(dirfd, cstr(path), uid, gid, flags), "fchownat", `${path || `fd ${dirfd}`} to ${uid}:${gid}`);
}

export function fchdir(fd: number): void {
  check(libc.symbols.fchdir(fd), "fchdir", `fd ${fd}`);
}

/** Sets the file mode creation mask; returns the previous one. */
export function umask(mask: number): number {
  return libc.symbols.umask(mask);
}

/** Entries of a directory opened for reading (not O_PATH), without "." and "..", by getdents64. */
export function readdirFd(fd: number): Array<{ name: string; type: number }> {
  const out: Array<{ name: string; type: number }> = [];
  const buf = Buffer.alloc(32768);
  for (;;) {
    const n = sys(SYS_GETDENTS64, fd, ptr(buf), buf.length);
    check(n, "getdents64", `fd ${fd}`);
    if (n === 0) return out;
    // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[] (NUL-terminated)
    for (let off = 0; off < n; ) {
      const reclen = buf.readUInt16LE(off + 16);
      const type = buf[off + 18]!;
      const end = buf.indexOf(0, off + 19);
      const name = buf.toString("utf8", off + 19, end);
      if (name !== "." && name !== "..") out.push({ name, type });
      off += reclen;
    }
  }
}

/** The filesystem type (statfs f_type, linux/magic.h) of what `fd` refers to. */
export function fsType(fd: number): number {
  const buf = new BigInt64Array(16); // struct statfs is 120 bytes; f_type comes first
  check(libc.symbols.fstatfs(fd, buf), "fstatfs", `fd ${fd}`);
  return Number(buf[0]);
}

export const PROC_SUPER_MAGIC = 0x9fa0;

// mount_setattr(2) attributes (linux/mount.h).
export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;
const AT_RECURSIVE = 0x8000;

/**
 * Sets `attrs` on the mount `fd` refers to and every mount below it, in one call
 * (mount_setattr(2), Linux 5.12). false: the kernel has no such call (the caller remounts
 * each mount instead).
 */
export function mountSetattrRecursive(fd: number, attrs: number, what: string): boolean {
  const attr = new BigUint64Array([BigInt(attrs), 0n, 0n, 0n]); // attr_set, attr_clr, propagation, userns_fd
  const empty = cstr("");
  const rc = sys(SYS_MOUNT_SETATTR, fd, ptr(empty), AT_EMPTY_PATH | AT_RECURSIVE, ptr(attr), attr.byteLength);
  void [attr, empty];
  if (rc === -1 && errno() === 38 /* ENOSYS */) return false;
  check(rc, "mount_setattr", what);
  return true;
}

// d_type values of getdents64 (dirent.h).
export const DT_DIR = 4;

const CLOSE_RANGE_CLOEXEC = 1 << 2;

/**
 * Marks every descriptor from `first` up close-on-exec, so an exec that follows leaks none of
 * them (close_range(2), Linux 5.11; older kernels: each open descriptor in /proc/self/fd).
 */
export function cloexecFrom(first: number, listFds: () => number[]): void {
  if (sys(SYS_CLOSE_RANGE, first, 0xffffffff, CLOSE_RANGE_CLOEXEC) === 0) return;
  for (const fd of listFds()) {
    if (fd < first) continue;
    try {
      setCloexec(fd);
    } catch (err) {
      if ((err as SysError).code !== "EBADF") throw err; // the listing's own descriptor, closed since
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Signals, rlimits and detached mount trees, for the init stage's last steps.

const SYS_RT_SIGACTION = arm64 ? 134 : 13;
const SYS_RT_SIGPROCMASK = arm64 ? 135 : 14;
const SYS_PRLIMIT64 = arm64 ? 261 : 302;
const SYS_OPEN_TREE = 428;
const SYS_MOVE_MOUNT = 429;
const SIG_SETMASK = 2;
/** The kernel's sigset_t is 64 bits on both architectures. */
const KERNEL_SIGSET_BYTES = 8;

/**
 * Every signal's disposition back to the default and nothing blocked, for the calling thread,
 * right before execve: a runtime ignores SIGPIPE, SIGXFSZ and others (Bun does), and execve
 * keeps what is ignored and the signal mask, so a workload would start with them (`yes |
 * head` would spin). The raw syscall, as glibc's sigaction refuses its own 32 and 33 (which
 * its posix_spawn leaves ignored in a child); nothing after this calls set*id, which is what
 * 33 is for. SIGKILL and SIGSTOP cannot be changed. `signals`: only these (the ones ignored:
 * execve resets the handled ones itself); absent, all.
 */
export function resetSignals(signals?: readonly number[]): void {
  const dfl = new BigUint64Array(4); // struct kernel_sigaction {handler = SIG_DFL, flags, restorer, mask}, all 0
  for (const sig of signals ?? ALL_SIGNALS) {
    check(sys(SYS_RT_SIGACTION, sig, ptr(dfl), 0, KERNEL_SIGSET_BYTES), "rt_sigaction", `signal ${sig} to SIG_DFL`);
  }
  const none = new BigUint64Array(1);
  check(sys(SYS_RT_SIGPROCMASK, SIG_SETMASK, ptr(none), 0, KERNEL_SIGSET_BYTES), "rt_sigprocmask", "unblock all");
  void [dfl, none];
}

/** Every signal whose disposition can be changed (all but SIGKILL and SIGSTOP). */
const ALL_SIGNALS = Array.from({ length: 64 }, (_, i) => i + 1).filter((s) => s !== 9 && s !== 19);

/** setrlimit(2) for this process (prlimit64 on pid 0), with exact 64-bit values (2^64-1 is unlimited). */
export function setRlimit(resource: number, soft: bigint, hard: bigint): void {
  const limit = new BigUint64Array([soft, hard]);
  check(sys(SYS_PRLIMIT64, 0, resource, ptr(limit), 0), "setrlimit", `resource ${resource} to ${soft}/${hard}`);
  void limit;
}

/** This process's soft and hard limit of `resource`. */
export function getRlimit(resource: number): { soft: bigint; hard: bigint } {
  const limit = new BigUint64Array(2);
  check(sys(SYS_PRLIMIT64, 0, resource, 0, ptr(limit)), "getrlimit", `resource ${resource}`);
  return { soft: limit[0]!, hard: limit[1]! };
}

const OPEN_TREE_CLONE = 1;
const OPEN_TREE_CLOEXEC = O_CLOEXEC;
const AT_RECURSIVE_FLAG = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH = 0x40;

/**
 * A detached copy of the mount tree at `path` (open_tree(2) with OPEN_TREE_CLONE, recursive,
 * Linux 5.2): a copy of a shared mount stays in its peer group, so what is mounted below the
 * copy, wherever it is attached later, propagates to the original's peers.
 */
export function openTreeClone(path: string): number {
  const p = cstr(path);
  const flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE_FLAG;
  const fd = sys(SYS_OPEN_TREE, AT_FDCWD, ptr(p), flags);
  void p;
  check(fd, "open_tree", path);
  return fd;
}

/** Attaches the detached tree `treeFd` onto what `targetFd` refers to (move_mount(2)). */
export function moveMount(treeFd: number, targetFd: number, what: string): void {
  const empty = cstr("");
  const flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH;
  check(sys(SYS_MOVE_MOUNT, treeFd, ptr(empty), targetFd, ptr(empty), flags), "move_mount", what);
  void empty;
}
