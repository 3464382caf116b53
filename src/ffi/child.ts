// A container's process forked from the launcher (no binary started per launch): the native
// side is src/ffi/child.c.ts; here its compilation, the fork, and the requests the launcher
// makes of it. Each request is one seqpacket datagram answered by a 64-bit result (>= 0, or
// -errno), made synchronously: the launcher's JavaScript decides, the child only makes calls
// that must come from inside the container's namespaces.
import { dlopen } from "bun:ffi";
import { closeSync, readSync, writeSync } from "node:fs";
import { CHILD_SOURCE, Op } from "./child.c.ts";
import { addressesOf, compileC } from "./tcc.ts";
import { errnoName, SysError } from "./errno.ts";

const libc = dlopen("libc.so.6", {
  syscall: { args: [], returns: "i64" },
  read: { args: [], returns: "i64" },
  write: { args: [], returns: "i64" },
  close: { args: [], returns: "i32" },
  dup2: { args: [], returns: "i32" },
  fcntl: { args: [], returns: "i32" },
  open: { args: [], returns: "i32" },
  mount: { args: [], returns: "i32" },
  umount2: { args: [], returns: "i32" },
  unshare: { args: [], returns: "i32" },
  setns: { args: [], returns: "i32" },
  sethostname: { args: [], returns: "i32" },
  chdir: { args: [], returns: "i32" },
  prctl: { args: [], returns: "i32" },
  pthread_sigmask: { args: [], returns: "i32" },
  execve: { args: [], returns: "i32" },
  _exit: { args: [], returns: "void" },
  __errno_location: { args: [], returns: "ptr" },
  getpid: { args: [], returns: "i32" },
  openat: { args: [], returns: "i32" },
  fchdir: { args: [], returns: "i32" },
  pthread_create: { args: [], returns: "i32" },
  clone: { args: [], returns: "i32" },
  pipe2: { args: [], returns: "i32" },
  mmap: { args: [], returns: "ptr" },
  munmap: { args: [], returns: "i32" },
  pthread_join: { args: [], returns: "i32" },
  strerror: { args: ["i32"], returns: "cstring" },
  socketpair: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
});

const arm64 = process.arch === "arm64";
// pivot_root, capset, seccomp, rt_sigaction, prlimit64, setgroups, setresgid, setresuid.
const NUMBERS = arm64 ? [41, 91, 277, 134, 261, 159, 149, 147] : [155, 126, 317, 13, 302, 116, 119, 117];

type Native = {
  fork: (fds: Int32Array, flags: number) => number;
  /** Ends the forking thread, unmaps the buffers and frees the compiled code. */
  stop: () => void;
};
let native: Native | undefined;

/** "EPERM (Operation not permitted)" for each errno, packed for the child (it cannot call strerror after the fork). */
function errnoTexts(): { texts: Buffer; offsets: Uint32Array } {
  const count = 134;
  const offsets = new Uint32Array(count);
  const parts: Buffer[] = [];
  let at = 0;
  for (let e = 0; e < count; e++) {
    const b = Buffer.from(`${errnoName(e)} (${libc.symbols.strerror(e)?.toString() ?? "unknown error"})\0`);
    offsets[e] = at;
    at += b.length;
    parts.push(b);
  }
  return { texts: Buffer.concat(parts), offsets };
}

/** Kept alive for as long as the compiled code may read them. */
const kept: unknown[] = [];

function load(): Native {
  if (native) return native;
  const lib = compileC("the container process's native code", CHILD_SOURCE, {
    ucr_child_init: { args: ["ptr", "ptr", "ptr", "ptr", "i32"], returns: "void" },
    ucr_child_fork: { args: ["ptr", "u64"], returns: "i32" },
    ucr_child_start: { args: [], returns: "i32" },
    ucr_child_stop: { args: [], returns: "i32" },
  });
  const s = libc.symbols;
  const fns = addressesOf([
    ["syscall", s.syscall],
    ["read", s.read],
    ["write", s.write],
    ["close", s.close],
    ["dup2", s.dup2],
    ["fcntl", s.fcntl],
    ["open", s.open],
    ["mount", s.mount],
    ["umount2", s.umount2],
    ["unshare", s.unshare],
    ["setns", s.setns],
    ["sethostname", s.sethostname],
    ["chdir", s.chdir],
    ["prctl", s.prctl],
    ["pthread_sigmask", s.pthread_sigmask],
    ["execve", s.execve],
    ["_exit", s._exit],
    ["__errno_location", s.__errno_location],
    ["getpid", s.getpid],
    ["openat", s.openat],
    ["fchdir", s.fchdir],
    ["pthread_create", s.pthread_create],
    ["clone", s.clone],
    ["pipe2", s.pipe2],
    ["mmap", s.mmap],
    ["munmap", s.munmap],
    ["pthread_join", s.pthread_join],
  ] as const);
  const numbers = new BigInt64Array(NUMBERS.map(BigInt));
  const { texts, offsets } = errnoTexts();
  kept.push(fns, numbers, texts, offsets, lib);
  lib.symbols.ucr_child_init(fns, numbers, texts, offsets, offsets.length);
  const started = lib.symbols.ucr_child_start() as number;
  if (started < 0) throw new Error(`cannot start the thread that forks containers' processes: errno ${-started}`);
  native = {
    fork: lib.symbols.ucr_child_fork as unknown as Native["fork"],
    stop: () => {
      const rc = lib.symbols.ucr_child_stop() as number;
      // A join that failed leaves the thread in this code: it is not freed then.
      if (rc < 0) throw new Error(`cannot stop the thread that forks containers' processes: errno ${-rc}`);
      lib.close();
      kept.length = 0;
    },
  };
  return native;
}

/**
 * Undoes prepareChild(): the forking thread ends, its buffers and the compiled code are freed
 * (a worker that set containers up calls this before it is stopped: its thread would
 * otherwise stay behind, blocked, and its memory with it). Only with no fork in flight.
 */
export function stopChild(): void {
  const n = native;
  if (!n) return;
  native = undefined;
  n.stop();
}

/** One mount of a MOUNTS request. */
export interface MountRequest {
  source: string | null;
  target: string;
  fstype: string | null;
  flags: number;
  data: string | null;
  /** MountOpt bits. */
  opts: number;
}

/** Compiles the native code ahead of the first fork. */
export function prepareChild(): void {
  load();
}

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;

/** A forked container process waiting for requests; its exit is collected by spawn.ts' reaper (onChildExit). */
export class Child {
  private closed = false;
  private readonly reply = Buffer.alloc(8);
  private constructor(
    readonly pid: number,
    private readonly sock: number,
  ) {}

  /**
   * Forks it, in new namespaces (clone flags: CLONE_NEWPID and friends), with `stdio` as its
   * 0, 1, 2 and `report` as its 3. Every other descriptor of ours is closed in it.
   */
  static fork(stdio: readonly [number, number, number], report: number, cloneFlags: number): Child {
    const n = load();
    const pair = new Int32Array(2);
    if (libc.symbols.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) !== 0) {
      throw new Error("socketpair failed for the container process's requests");
    }
    const [mine, theirs] = [pair[0]!, pair[1]!];
    let pid: number;
    try {
      const asked = n.fork(new Int32Array([stdio[0], stdio[1], stdio[2], report, theirs]), cloneFlags);
      if (asked < 0) throw new SysError("write", -asked, "", "a fork request to the forking thread");
      // Its pid, once it has taken its descriptors (or the clone's -errno): then ours may close.
      const hello = Buffer.alloc(8);
      if (readSync(mine, hello, 0, 8, null) !== 8) throw new Error("the container's process ended before it started");
      pid = Number(hello.readBigInt64LE(0));
    } catch (err) {
      closeSync(mine);
      throw err;
    } finally {
      closeSync(theirs);
    }
    if (pid < 0) {
      closeSync(mine);
      if (pid === -10) throw new Error("the container's process ended before it started");
      throw new SysError(
        "clone",
        -pid,
        libc.symbols.strerror(-pid)?.toString() ?? "",
        `the container's process, flags 0x${cloneFlags.toString(16)}`,
      );
    }
    return new Child(pid, mine);
  }

  /** Sends one request: op, a 32-bit and a 64-bit argument, then strings (NUL-terminated) or bytes. */
  private send(op: number, a: number, b: number | bigint, ...strings: Array<string | Uint8Array>): void {
    if (this.closed) throw new Error("the container's process was let go");
    const head = Buffer.alloc(16);
    head.writeUInt32LE(op, 0);
    head.writeUInt32LE(a >>> 0, 4);
    head.writeBigUInt64LE(BigInt(b), 8);
    const msg = Buffer.concat([head, ...strings.map((s) => (typeof s === "string" ? Buffer.from(`${s}\0`) : Buffer.from(s)))]);
    if (msg.length > 65535) throw new Error(`a request to the container's process is ${msg.length} bytes, more than 64 KiB`);
    writeSync(this.sock, msg);
  }

  /** Reads a reply of exactly `into`'s size. */
  private receive(into: Buffer): Buffer {
    if (readSync(this.sock, into, 0, into.length, null) !== into.length)
      throw new Error("the container's process ended while setting it up");
    return into;
  }

  /** One request (see send); the result (>= 0) or -errno. */
  call(op: number, a: number, b: number | bigint, ...strings: Array<string | Uint8Array>): number {
    this.send(op, a, b, ...strings);
    return Number(this.receive(this.reply).readBigInt64LE(0));
  }

  /** As call(), throwing SysError(call, what) on failure. */
  must(op: number, a: number, b: number | bigint, call: string, what: string, ...strings: Array<string | Uint8Array>): number {
    const rc = this.call(op, a, b, ...strings);
    if (rc < 0) throw new SysError(call, -rc, this.strerror(-rc), what);
    return rc;
  }

  /** Opens each of `paths` (flags | O_CLOEXEC) in one request: its descriptors, or -errno for those that failed. */
  opens(paths: readonly string[], flags: number): number[] {
    if (paths.length === 0) return [];
    if (paths.length > 256) throw new Error(`${paths.length} files to open at once, more than 256`);
    this.send(Op.OPENS, paths.length, flags, ...paths);
    const reply = this.receive(Buffer.alloc(8 + 4 * paths.length));
    return paths.map((_, i) => reply.readInt32LE(8 + 4 * i));
  }

  /**
   * Mounts in one request (see mounts() in child.c.ts and MountOpt): 0, or which entry failed
   * and its errno.
   */
  mounts(entries: readonly MountRequest[]): { index: number; errno: number } | undefined {
    const parts: Buffer[] = [];
    for (const e of entries) {
      const head = Buffer.alloc(12);
      head.writeBigUInt64LE(BigInt(e.flags), 0);
      head.writeUInt32LE((e.source !== null ? 1 : 0) | (e.fstype !== null ? 2 : 0) | (e.data !== null ? 4 : 0) | e.opts, 8);
      parts.push(head, Buffer.from(`${e.source ?? ""}\0${e.target}\0${e.fstype ?? ""}\0${e.data ?? ""}\0`));
    }
    const rc = this.call(Op.MOUNTS, entries.length, 0, Buffer.concat(parts));
    if (rc === 0) return undefined;
    const code = -rc;
    return { index: Math.floor(code / 65536) - 1, errno: code % 65536 };
  }

  /**
   * The exec request (see struct exec_req in child.c.ts), sent in parts; returns once it was
   * sent. The parts get no answer (one round trip fewer per launch): a part that does not fit
   * makes the process refuse the exec, which then fails the launch on its fd 3.
   */
  exec(request: Buffer): void {
    const CHUNK = 60 * 1024;
    for (let at = 0; at < request.length; at += CHUNK) this.send(Op.DATA, at, 0, request.subarray(at, at + CHUNK));
    this.send(Op.EXEC, request.length, 0);
    this.release();
  }

  strerror(errno: number): string {
    return libc.symbols.strerror(errno)?.toString() ?? "unknown error";
  }

  /**
   * Tells it to end with `status` and `message` (to fd 3 as well if `launchFails`); false if
   * it could not be told (it is gone).
   */
  exit(status: number, launchFails: boolean, message: string): boolean {
    if (this.closed) return false;
    try {
      this.send(Op.EXIT, status, launchFails ? 1 : 0, message.slice(0, 4000));
      return true;
    } catch {
      return false;
    } finally {
      this.release();
    }
  }

  /** Lets it go: with no more requests coming it exits (status 1) unless it was told to exec. */
  release(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.sock);
  }
}
