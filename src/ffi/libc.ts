// With spawn.ts beside it, the only place ucr talks to libc directly (bun:ffi): the
// namespace and mount calls the container init stage needs. Each wrapper throws SysError naming the call, its subject and
// the errno, so a failure reads "mount(/a -> /b) failed: ENOENT (No such file or directory)".
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
  // Four arguments after the number (unused ones 0): pivot_root takes two, rt_sigaction four.
  syscall: { args: ["i64", "ptr", "ptr", "ptr", "i64"], returns: "i64" },
  madvise: { args: ["ptr", "u64", "i32"], returns: "i32" },
  getpid: { args: [], returns: "i32" },
  mknod: { args: ["ptr", "u32", "u64"], returns: "i32" },
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
});

// Namespace flags (linux/sched.h).
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;
export const CLONE_NEWCGROUP = 0x02000000;

// mount(2) flags (linux/mount.h).
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_REMOUNT = 32;
export const MS_BIND = 4096;
export const MS_MOVE = 8192;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;
export const MS_SLAVE = 1 << 19;
export const MS_SHARED = 1 << 20;

// umount2(2) flags.
export const MNT_DETACH = 2;

/** pivot_root has no glibc wrapper; its syscall number differs by architecture. */
const SYS_PIVOT_ROOT = process.arch === "arm64" ? 41 : 155;
const SYS_RT_SIGACTION = process.arch === "arm64" ? 134 : 13;

/**
 * A NUL-terminated copy of `s`. Passed to ffi as the TypedArray itself (not a raw pointer
 * number), so the buffer stays reachable, and cannot be collected, during the call.
 */
function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

function errno(): number {
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

export function umount2(target: string, flags = 0): void {
  check(libc.symbols.umount2(cstr(target), flags), "umount2", target);
}

export function sethostname(name: string): void {
  const buf = Buffer.from(name, "utf8");
  check(libc.symbols.sethostname(buf, buf.length), "sethostname", name);
}

export function pivotRoot(newRoot: string, putOld: string): void {
  check(libc.symbols.syscall(SYS_PIVOT_ROOT, cstr(newRoot), cstr(putOld), null, 0), "pivot_root", `${newRoot}, ${putOld}`);
}

export function chroot(path: string): void {
  check(libc.symbols.chroot(cstr(path)), "chroot", path);
}

export function chdir(path: string): void {
  check(libc.symbols.chdir(cstr(path)), "chdir", path);
}

/** The pid as the kernel sees it in this process's PID namespace. */
export function getpid(): number {
  return libc.symbols.getpid();
}

// mknod(2) file types (sys/stat.h).
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

/** glibc's makedev: the 64-bit dev_t layout Linux uses. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** Creates a device node or fifo; `type` is S_IFCHR, S_IFBLK or S_IFIFO. */
export function mknod(path: string, type: number, mode: number, major = 0, minor = 0): void {
  check(libc.symbols.mknod(cstr(path), type | (mode & 0o7777), makedev(major, minor)), "mknod", path);
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
function cstrArray(items: readonly string[]): { array: BigUint64Array; keep: Buffer[] } {
  const keep = items.map(cstr);
  const array = new BigUint64Array(items.length + 1);
  keep.forEach((b, i) => (array[i] = BigInt(ptr(b))));
  return { array, keep };
}

/** Replaces this process with `path`; returns only by throwing. */
export function execve(path: string, argv: readonly string[], env: Readonly<Record<string, string>>): never {
  const a = cstrArray(argv);
  const e = cstrArray(Object.entries(env).map(([k, v]) => `${k}=${v}`));
  const p = cstr(path);
  const rc = libc.symbols.execve(p, a.array, e.array);
  void [a.keep, e.keep];
  check(rc, "execve", path);
  throw new Error("execve returned");
}

export function setgroups(gids: readonly number[]): void {
  const list = new Uint32Array(Math.max(1, gids.length));
  gids.forEach((g, i) => (list[i] = g));
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

/**
 * Sets `signal` back to its default action (SIG_DFL). A signal this runtime ignores stays
 * ignored across execve(2); one it handles is reset by execve itself. The raw syscall, as
 * glibc's sigaction refuses its own signals (32 and 33), which its posix_spawn leaves
 * ignored in the child. An all-zero kernel sigaction is SIG_DFL, no flags, empty mask.
 */
export function defaultSignal(signal: number): void {
  check(libc.symbols.syscall(SYS_RT_SIGACTION, signal as Pointer, new BigUint64Array(4), null, 8), "rt_sigaction", String(signal));
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
      current = { start: Number.parseInt(start!, 16), end: Number.parseInt(end!, 16), eligible: path === file && !perms!.includes("w") && perms!.endsWith("p") };
    } else if (current && /^Anonymous:\s+[1-9]/.test(line)) {
      current.eligible = false;
    }
  }
  finish();
  return dropped;
}

const PR_SET_PDEATHSIG = 1;
const PR_SET_CHILD_SUBREAPER = 36;

/** Ask for `signal` when the parent dies. */
export function setParentDeathSignal(signal: number): void {
  check(libc.symbols.prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG");
}

/** Become the reaper of orphaned descendants. */
export function setChildSubreaper(): void {
  check(libc.symbols.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl", "PR_SET_CHILD_SUBREAPER");
}

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

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
