// Starting and reaping processes without Bun's spawn: posix_spawn(3) from libc, optionally in
// a new or another PID namespace, and a SIGCHLD-driven reaper, for the launcher and init stage 1.
//
// Why not Bun.spawn: a new PID namespace applies to the children a thread starts after
// unshare(CLONE_NEWPID) (or setns), and while that thread's namespace for children differs
// from its own, the kernel refuses to create threads from it (clone(CLONE_THREAD) fails with
// EINVAL). JavaScriptCore's JIT and GC helper threads and Bun's thread pool exit after some
// idle seconds and are created again on demand, from whatever thread needs them; if that is
// the main thread between unshare and the way back (a tier-up or a GC inside Bun.spawn's own
// allocations), Bun aborts ("panic(main thread): abort() called"). So the namespace switch,
// the spawn and the switch back run as one native sequence with every signal blocked: a
// dozen lines of C compiled once per process by Bun's embedded TinyCC, linked to nothing
// (libc's functions are handed in as pointers). No JavaScript runs, and no thread can be
// started by this thread, while it is in the other namespace. (TinyCC is no new dependency:
// bun:ffi's dlopen compiles its call trampolines with it too.)
import { dlopen, ptr, read } from "bun:ffi";
import { closeSync, readdirSync } from "node:fs";
import { SysError } from "./errno.ts";
import { addressesOf, compileC } from "./tcc.ts";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
  posix_spawn: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  posix_spawn_file_actions_init: { args: ["ptr"], returns: "i32" },
  posix_spawn_file_actions_destroy: { args: ["ptr"], returns: "i32" },
  posix_spawn_file_actions_adddup2: { args: ["ptr", "i32", "i32"], returns: "i32" },
  posix_spawnattr_init: { args: ["ptr"], returns: "i32" },
  posix_spawnattr_setflags: { args: ["ptr", "i16"], returns: "i32" },
  posix_spawnattr_setsigmask: { args: ["ptr", "ptr"], returns: "i32" },
  posix_spawnattr_setsigdefault: { args: ["ptr", "ptr"], returns: "i32" },
  sigemptyset: { args: ["ptr"], returns: "i32" },
  sigfillset: { args: ["ptr"], returns: "i32" },
  pthread_sigmask: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  unshare: { args: ["i32"], returns: "i32" },
  setns: { args: ["i32", "i32"], returns: "i32" },
  wait4: { args: ["i32", "ptr", "i32", "ptr"], returns: "i32" },
  waitid: { args: ["i32", "u32", "ptr", "i32"], returns: "i32" },
  pipe2: { args: ["ptr", "i32"], returns: "i32" },
  fcntl: { args: ["i32", "i32", "i32"], returns: "i32" },
  open: { args: ["ptr", "i32", "i32"], returns: "i32" },
});

// glibc 2.34+: closes every descriptor from N up in the child. Looked up apart, as it may be missing.
const closefrom = (() => {
  try {
    return dlopen("libc.so.6", { posix_spawn_file_actions_addclosefrom_np: { args: ["ptr", "i32"], returns: "i32" } }).symbols
      .posix_spawn_file_actions_addclosefrom_np;
  } catch {
    return undefined;
  }
})();

const CLONE_NEWPID = 0x20000000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const WNOHANG = 1;
const EINTR = 4;
const ECHILD = 10;
// posix_spawnattr flags (glibc spawn.h).
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

function readErrno(): number {
  return read.i32(libc.symbols.__errno_location()!);
}

function sysError(call: string, errno: number, what?: string): SysError {
  return new SysError(call, errno, libc.symbols.strerror(errno)?.toString() ?? "unknown error", what);
}

/** A NUL-terminated copy of `s`, passed to ffi as the buffer itself so it stays alive during the call. */
function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** A NULL-terminated array of C strings; `keep` holds the strings' buffers while it is used. */
function cstrArray(items: readonly string[]): { array: BigUint64Array; keep: Buffer[] } {
  const keep = items.map(cstr);
  const array = new BigUint64Array(items.length + 1);
  for (const [i, b] of keep.entries()) array[i] = BigInt(ptr(b));
  return { array, keep };
}

// glibc's posix_spawnattr_t is 336 bytes and posix_spawn_file_actions_t 80 (x86_64 and
// arm64): 1 KiB, 8-byte aligned, holds either with room to spare.
const ATTR_BYTES = 1024;
// The same attributes for every child: an empty signal mask and every signal back to its
// default action, so nothing of this runtime's signal handling is inherited.
const attr = (() => {
  const a = new BigUint64Array(ATTR_BYTES / 8);
  const none = new BigUint64Array(16);
  const all = new BigUint64Array(16);
  libc.symbols.sigemptyset(none);
  libc.symbols.sigfillset(all);
  for (const rc of [
    libc.symbols.posix_spawnattr_init(a),
    libc.symbols.posix_spawnattr_setsigmask(a, none),
    libc.symbols.posix_spawnattr_setsigdefault(a, all),
    libc.symbols.posix_spawnattr_setflags(a, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK),
  ]) {
    if (rc !== 0) throw sysError("posix_spawnattr", rc);
  }
  return a;
})();

// The native sequence (see the top of this file). Returns posix_spawn's result (0 or an
// errno), NS_FAILED + errno if the switch into the namespace failed, or -errno if it could
// not switch back, after which this thread must not go on (it could start no thread again).
const NS_FAILED = 0x10000;
const NATIVE_SOURCE = `
static int (*f_unshare)(int);
static int (*f_setns)(int, int);
static int (*f_spawn)(int *, const char *, const void *, const void *, char *const *, char *const *);
static int (*f_sigmask)(int, const void *, void *);
static int *(*f_errno)(void);

void ucr_ns_init(void **f) {
  f_unshare = f[0];
  f_setns = f[1];
  f_spawn = f[2];
  f_sigmask = f[3];
  f_errno = f[4];
}

int ucr_ns_spawn(int *pid, const char *path, const void *actions, const void *attr, char *const *argv, char *const *envp,
                 int join_fd, int own_fd) {
  unsigned long all[16], old[16];
  int i, rc, back = 0;
  for (i = 0; i < 16; i++) all[i] = ~0UL;
  f_sigmask(0, all, old);
  rc = join_fd < 0 ? f_unshare(${CLONE_NEWPID}) : f_setns(join_fd, ${CLONE_NEWPID});
  if (rc != 0) {
    rc = ${NS_FAILED} + *f_errno();
  } else {
    rc = f_spawn(pid, path, actions, attr, argv, envp);
    if (f_setns(own_fd, ${CLONE_NEWPID}) != 0) back = *f_errno();
  }
  f_sigmask(2, old, 0);
  return back ? -back : rc;
}
`;

type Native = {
  spawn: (
    pid: Int32Array,
    path: Buffer,
    fa: BigUint64Array,
    at: BigUint64Array,
    argv: BigUint64Array,
    envp: BigUint64Array,
    join: number,
    own: number,
  ) => number;
  ownPidNs: number;
};
let native: Native | undefined;

/** Compiles the namespace sequence once (tcc.ts). */
function loadNative(): Native {
  if (native) return native;
  const lib = compileC("the native spawn sequence", NATIVE_SOURCE, {
    ucr_ns_init: { args: ["ptr"], returns: "void" },
    ucr_ns_spawn: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32"], returns: "i32" },
  });
  const s = libc.symbols;
  lib.symbols.ucr_ns_init(
    addressesOf([
      ["unshare", s.unshare],
      ["setns", s.setns],
      ["posix_spawn", s.posix_spawn],
      ["pthread_sigmask", s.pthread_sigmask],
      ["__errno_location", s.__errno_location],
    ]),
  );
  const own = openPidNs("/proc/self/ns/pid");
  native = { spawn: lib.symbols.ucr_ns_spawn as Native["spawn"], ownPidNs: own };
  return native;
}

function openPidNs(path: string): number {
  const fd = libc.symbols.open(cstr(path), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) throw sysError("open", readErrno(), path);
  return fd;
}

export interface SpawnRequest {
  /** argv[0] is the program's path (absolute: no PATH lookup). */
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  /** The child's fd i is a copy of our fds[i]; every other descriptor is closed in the child. */
  fds: readonly number[];
  /** "new": the child is PID 1 of a new PID namespace; a pid: the child joins that process's; absent: ours. */
  pidns?: "new" | number;
}

/**
 * Starts a process (posix_spawn: no JavaScript runs in the child). Its exit must be
 * collected with onChildExit (this module's reaper), never by Bun.
 */
export function spawnProcess(req: SpawnRequest): number {
  const n = req.fds.length;
  // A source below n that is not its own slot would be overwritten by an earlier dup2.
  const moved: number[] = [];
  const sources = req.fds.map((fd, i) => {
    if (fd === i || fd >= n) return fd;
    const high = libc.symbols.fcntl(fd, F_DUPFD_CLOEXEC, n);
    if (high < 0) throw sysError("fcntl", readErrno(), `F_DUPFD_CLOEXEC of fd ${fd}`);
    moved.push(high);
    return high;
  });
  const fa = new BigUint64Array(ATTR_BYTES / 8);
  let rc = libc.symbols.posix_spawn_file_actions_init(fa);
  if (rc !== 0) throw sysError("posix_spawn_file_actions_init", rc);
  const argv = cstrArray(req.argv);
  const envp = cstrArray(Object.entries(req.env).map(([k, v]) => `${k}=${v}`));
  const path = cstr(req.argv[0]!);
  const pid = new Int32Array(1);
  try {
    sources.forEach((fd, i) => {
      // fd i inherited as it is (not close-on-exec): nothing to do.
      if (fd !== i && (rc = libc.symbols.posix_spawn_file_actions_adddup2(fa, fd, i)) !== 0)
        throw sysError("posix_spawn_file_actions_adddup2", rc, `${fd} -> ${i}`);
    });
    if (closefrom) {
      if ((rc = closefrom(fa, n)) !== 0) throw sysError("posix_spawn_file_actions_addclosefrom_np", rc, String(n));
    } else {
      // Older glibc: every other descriptor of ours is made close-on-exec instead.
      for (const name of readdirSync("/proc/self/fd")) {
        const fd = Number(name);
        if (fd >= n && !sources.includes(fd)) libc.symbols.fcntl(fd, F_SETFD, FD_CLOEXEC);
      }
    }
    if (req.pidns === undefined) {
      rc = libc.symbols.posix_spawn(pid, path, fa, attr, argv.array, envp.array);
    } else {
      const nat = loadNative();
      const join = req.pidns === "new" ? -1 : openPidNs(`/proc/${req.pidns}/ns/pid`);
      try {
        rc = nat.spawn(pid, path, fa, attr, argv.array, envp.array, join, nat.ownPidNs);
      } finally {
        if (join >= 0) closeSync(join);
      }
      if (rc < 0) {
        // This thread's children would go on landing in the other namespace and it could
        // start no thread: nothing sane is left to do but end the process.
        process.stderr.write(`ucr: cannot return to our own PID namespace after a spawn: ${sysError("setns", -rc).message}\n`);
        process.reallyExit(70);
      }
    }
  } finally {
    libc.symbols.posix_spawn_file_actions_destroy(fa);
    for (const fd of moved) closeSync(fd);
    void [argv.keep, envp.keep, path];
  }
  if (rc >= NS_FAILED) {
    throw req.pidns === "new"
      ? sysError("unshare", rc - NS_FAILED, "CLONE_NEWPID")
      : sysError("setns", rc - NS_FAILED, `PID namespace of ${req.pidns}`);
  }
  if (rc !== 0) {
    const where = req.pidns === undefined ? "" : req.pidns === "new" ? " in a new PID namespace" : ` in the PID namespace of ${req.pidns}`;
    throw sysError("posix_spawn", rc, `${req.argv[0]}${where}`);
  }
  return pid[0]!;
}

/** A pipe, both ends close-on-exec: [read, write]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  if (libc.symbols.pipe2(fds, O_CLOEXEC) !== 0) throw sysError("pipe2", readErrno());
  return [fds[0]!, fds[1]!];
}

// ---------------------------------------------------------------------------------------------
// The reaper: every child of this process is collected here (wait4(-1) on SIGCHLD), so a
// process that uses it must not also start children with Bun.spawn (Bun would find them gone).

type ExitHandler = (status: number) => void;
const handlers = new Map<number, ExitHandler>();
/** Children nobody asked about yet, kept for an onChildExit that comes late (a few, the newest). */
const early = new Map<number, number>();
const EARLY_KEPT = 1000;
let reaping = false;
const statusBuf = new Int32Array(1);
// A signal listener does not keep Bun's event loop alive: this timer does, while a child
// we wait for runs.
let keepAlive: ReturnType<typeof setInterval> | undefined;

/** Calls `handler` with the raw wait(2) status (exit N: N << 8; signal S: S) when `pid` ends. */
export function onChildExit(pid: number, handler: ExitHandler): void {
  const status = early.get(pid);
  if (status !== undefined) {
    early.delete(pid);
    queueMicrotask(() => handler(status));
    return;
  }
  handlers.set(pid, handler);
  keepAlive ??= setInterval(() => {}, 1 << 30);
  startReaping();
}

function startReaping(): void {
  if (reaping) return;
  reaping = true;
  process.on("SIGCHLD", reap);
  // A child may have ended before the handler was there.
  queueMicrotask(reap);
}

// waitid(2): P_ALL, WEXITED, WNOWAIT; siginfo_t's si_code (CLD_*), si_pid and si_status (as ints).
const P_ALL = 0;
const WEXITED = 4;
const WNOWAIT = 0x01000000;
const CLD_EXITED = 1;
const CLD_DUMPED = 3;
const SI_CODE = 2;
const SI_PID = 4;
const SI_STATUS = 6;
const siginfo = new Int32Array(32);

/**
 * Collects every child that has ended (signals coalesce: one SIGCHLD may stand for many).
 * Each is looked at first and reaped only once its handler has returned: what the handler does
 * with the status (the launcher writes it down, or tells its reaper) is done before the
 * process is gone, so a launcher killed in between leaves the zombie to its reaper, which
 * reaps it and has the status, instead of losing it.
 */
function reap(): void {
  for (;;) {
    siginfo.fill(0);
    const rc = libc.symbols.waitid(P_ALL, 0, siginfo, WEXITED | WNOHANG | WNOWAIT);
    if (rc < 0) {
      const e = readErrno();
      if (e === EINTR) continue;
      if (e !== ECHILD) process.stderr.write(`ucr: waitid failed: ${sysError("waitid", e).message}\n`);
      return;
    }
    const pid = siginfo[SI_PID]!;
    if (pid === 0) return;
    // As wait(2) would say it: exit N is N << 8, a signal S is S (with 0x80 if it dumped core).
    const code = siginfo[SI_CODE]!;
    const value = siginfo[SI_STATUS]!;
    const status = code === CLD_EXITED ? (value & 0xff) << 8 : (value & 0x7f) | (code === CLD_DUMPED ? 0x80 : 0);
    settleExit(pid, status);
    // Now reaped. Anything but this pid back means it was not ours to reap: stop, not spin.
    if (libc.symbols.wait4(pid, statusBuf, WNOHANG, null) !== pid) return;
  }
}

/** Hands a child's end to whoever waits for it (its handler, or kept for a late onChildExit). */
function settleExit(pid: number, status: number): void {
  const handler = handlers.get(pid);
  handlers.delete(pid);
  if (handlers.size === 0 && keepAlive) {
    clearInterval(keepAlive);
    keepAlive = undefined;
  }
  try {
    if (handler) handler(status);
    else {
      early.set(pid, status);
      if (early.size > EARLY_KEPT) early.delete(early.keys().next().value!);
    }
  } catch (err) {
    process.stderr.write(`ucr: handling the exit of pid ${pid} failed: ${(err as Error).stack ?? err}\n`);
  }
}
