// Terminals and descriptor passing through libc (bun:ffi), for containers with a TTY: the pty
// calls stage 2 makes inside the container, and the SCM_RIGHTS message that hands the master
// to the launcher (as runc's console socket does). Loaded on first use only: every stage 2
// imports this module, and a container without a terminal must not pay for binding these.
import { dlopen, ptr, read } from "bun:ffi";
import { SysError } from "./errno.ts";
import { O_CLOEXEC, O_NOCTTY, O_RDWR } from "./libc.ts";

type Lib = ReturnType<typeof open>;
let lib: Lib | undefined;

function open() {
  return dlopen("libc.so.6", {
    __errno_location: { args: [], returns: "ptr" },
    strerror: { args: ["i32"], returns: "cstring" },
    ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
    setsid: { args: [], returns: "i32" },
    fchown: { args: ["i32", "u32", "u32"], returns: "i32" },
    fcntl: { args: ["i32", "i32", "i32"], returns: "i32" },
    socketpair: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
    sendmsg: { args: ["i32", "ptr", "i32"], returns: "i64" },
    recvmsg: { args: ["i32", "ptr", "i32"], returns: "i64" },
  });
}

/** ioctl(2) with an integer argument (TIOCGPTPEER and TIOCSCTTY take theirs by value). */
let valueIoctl: ((fd: number, request: number, arg: number) => number) | undefined;

function ioctlValue(fd: number, request: number, arg: number): number {
  valueIoctl ??= dlopen("libc.so.6", { ioctl: { args: ["i32", "u64", "u64"], returns: "i32" } }).symbols.ioctl as typeof ioctlValue;
  return valueIoctl(fd, request, arg);
}

function libc(): Lib["symbols"] {
  lib ??= open();
  return lib.symbols;
}

function check(rc: number | bigint, call: string, what: string): number {
  const n = Number(rc);
  if (n !== -1) return n;
  const s = libc();
  const e = read.i32(s.__errno_location()!);
  throw new SysError(call, e, s.strerror(e)?.toString() ?? "unknown error", what);
}

// ioctl requests (asm-generic, the same on x86_64 and arm64).
const TIOCSWINSZ = 0x5414;
const TIOCSCTTY = 0x540e;
const TIOCSPTLCK = 0x40045431;
const TIOCGPTN = 0x80045430;
const TIOCGPTPEER = 0x5441;

export interface WindowSize {
  rows: number;
  columns: number;
}

/** Unlocks a freshly opened master and returns its pts number (the N of /dev/pts/N). */
export function unlockPty(master: number): number {
  check(libc().ioctl(master, TIOCSPTLCK, new Int32Array([0])), "ioctl", `TIOCSPTLCK on fd ${master}`);
  const n = new Uint32Array(1);
  check(libc().ioctl(master, TIOCGPTN, n), "ioctl", `TIOCGPTN on fd ${master}`);
  return n[0]!;
}

/**
 * The slave end of `master`, opened by the kernel from the master itself (TIOCGPTPEER,
 * Linux 4.13+): no path is looked up, so nothing in the container can put another file there.
 */
export function openPtyPeer(master: number): number {
  return check(ioctlValue(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC), "ioctl", `TIOCGPTPEER on fd ${master} (needs Linux 4.13+)`);
}

export function setWindowSize(fd: number, size: WindowSize): void {
  const ws = new Uint16Array([size.rows, size.columns, 0, 0]);
  check(libc().ioctl(fd, TIOCSWINSZ, ws), "ioctl", `TIOCSWINSZ ${size.rows}x${size.columns} on fd ${fd}`);
}

/** setsid(2): a new session and process group led by this process. */
export function newSession(): void {
  check(libc().setsid(), "setsid", "");
}

/** Makes the terminal `fd` this session's controlling terminal (the caller leads the session). */
export function setControllingTerminal(fd: number): void {
  check(ioctlValue(fd, TIOCSCTTY, 0), "ioctl", `TIOCSCTTY on fd ${fd}`);
}

export function fchown(fd: number, uid: number, gid: number): void {
  check(libc().fchown(fd, uid, gid), "fchown", `fd ${fd} to ${uid}:${gid}`);
}

/**
 * A second descriptor for the same open file, close-on-exec (F_DUPFD_CLOEXEC).
 * @public loaded lazily by runtime/launcher.ts
 */
export function dupCloexec(fd: number): number {
  return check(libc().fcntl(fd, 1030, 3), "fcntl", `F_DUPFD_CLOEXEC of fd ${fd}`);
}

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40;
const MSG_CMSG_CLOEXEC = 0x40000000;

/**
 * A connected pair of unix seqpacket sockets, both close-on-exec: [one, other].
 * @public loaded lazily by runtime/launcher.ts
 */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  check(libc().socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), "socketpair", "AF_UNIX, SOCK_SEQPACKET");
  return [fds[0]!, fds[1]!];
}

// struct msghdr (LP64): name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad).
const MSGHDR_BYTES = 56;
// One descriptor: CMSG_SPACE(4) = 16 bytes of header + 4, aligned to 8.
const CMSG_BYTES = 24;

function msghdr(iov: BigUint64Array, control: Uint8Array): Uint8Array {
  const m = new Uint8Array(MSGHDR_BYTES);
  const v = new DataView(m.buffer);
  v.setBigUint64(16, BigInt(ptr(iov)), true);
  v.setBigUint64(24, 1n, true);
  v.setBigUint64(32, BigInt(ptr(control)), true);
  v.setBigUint64(40, BigInt(control.byteLength), true);
  return m;
}

/** Sends `fd` over the unix socket `socket` (SCM_RIGHTS) with a few bytes of `payload`. */
export function sendFd(socket: number, fd: number, payload: Uint8Array): void {
  const data = payload.byteLength > 0 ? payload : new Uint8Array(1);
  const iov = new BigUint64Array([BigInt(ptr(data)), BigInt(data.byteLength)]);
  const control = new Uint8Array(CMSG_BYTES);
  const c = new DataView(control.buffer);
  c.setBigUint64(0, 20n, true); // CMSG_LEN(sizeof(int))
  c.setInt32(8, SOL_SOCKET, true);
  c.setInt32(12, SCM_RIGHTS, true);
  c.setInt32(16, fd, true);
  const m = msghdr(iov, control);
  check(libc().sendmsg(socket, m, 0), "sendmsg", `fd ${fd} over socket ${socket}`);
  void [iov, control, data];
}

/**
 * A descriptor waiting on `socket` (received close-on-exec) and the bytes sent with it;
 * undefined if nothing waits (never blocks) or the message carried no descriptor.
 * @public loaded lazily by runtime/launcher.ts
 */
export function receiveFd(socket: number, maxPayload = 64): { fd: number; payload: Uint8Array } | undefined {
  const data = new Uint8Array(maxPayload);
  const iov = new BigUint64Array([BigInt(ptr(data)), BigInt(data.byteLength)]);
  const control = new Uint8Array(CMSG_BYTES);
  const m = msghdr(iov, control);
  const n = Number(libc().recvmsg(socket, m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) {
    const e = read.i32(libc().__errno_location()!);
    if (e === 11) return undefined; // EAGAIN: nothing sent
    throw new SysError("recvmsg", e, libc().strerror(e)?.toString() ?? "unknown error", `socket ${socket}`);
  }
  const c = new DataView(control.buffer);
  const controllen = Number(new DataView(m.buffer).getBigUint64(40, true));
  if (controllen < 20 || c.getInt32(8, true) !== SOL_SOCKET || c.getInt32(12, true) !== SCM_RIGHTS) return undefined;
  return { fd: c.getInt32(16, true), payload: data.slice(0, n) };
}
