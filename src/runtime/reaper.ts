// The launcher's reaper: its parent, whose only job is to make the launcher's death
// survivable. It is a child subreaper (PR_SET_CHILD_SUBREAPER): when the launcher dies
// (SIGKILL, a crash), the kernel gives the launcher's children, the containers' workloads,
// to it instead of to init. The launcher tells it on fd 3 which pid is which container (and
// which exit statuses it could not write yet), so it can write each adopted workload's
// status file when that workload ends, where the agent finds it. It exits once the launcher
// is gone and every container it knew of is recorded.
//
// It is native code forked from the process that starts it (reaper.c.ts): no start of the
// binary, and a few pages of memory where a whole runtime took ~10 MiB PSS for a process
// that waits. It does no launches and parses no agent input: little that can fail. A new
// launcher (the agent starts one when this one's socket stops answering) comes with a reaper
// of its own. While it lives it holds a shared lock on `<socket>.lock` (reaperAlive).
import { dlopen } from "bun:ffi";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { LOCK_EX, LOCK_NB, flock } from "../ffi/libc.ts";
import { pipe } from "../ffi/spawn.ts";
import { addressesOf, compileC } from "../ffi/tcc.ts";
import { MAX_KEY, MAX_STATUS_FILE, RECORD_HEADER, REQ_FIELDS, reaperSource } from "./reaper.c.ts";

const libc = dlopen("libc.so.6", {
  syscall: { args: [], returns: "i64" },
  clone: { args: [], returns: "i32" },
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
});

type Native = {
  start: (req: Uint8Array, len: bigint, report: number) => number;
  wait: (pid: number) => number;
};
let native: Native | undefined;

function load(): Native {
  if (native) return native;
  const lib = compileC("the launcher's reaper", reaperSource(process.arch), {
    ucr_reaper_init: { args: ["ptr"], returns: "void" },
    ucr_reaper_start: { args: ["ptr", "u64", "i32"], returns: "i32" },
    ucr_reaper_wait: { args: ["i32"], returns: "i32" },
  });
  const s = libc.symbols;
  lib.symbols.ucr_reaper_init(
    addressesOf([
      ["syscall", s.syscall],
      ["clone", s.clone],
      ["__errno_location", s.__errno_location],
    ]),
  );
  native = { start: lib.symbols.ucr_reaper_start, wait: lib.symbols.ucr_reaper_wait };
  return native;
}

/** Where this process's argv and environment are (fields 48-51 of /proc/self/stat), for the reaper's title. */
function commandLineArea(): { argStart: bigint; argEnd: bigint; envEnd: bigint } {
  try {
    const stat = readFileSync("/proc/self/stat", "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state): field N is f[N - 3].
    const [argStart, argEnd, envEnd] = [f[45], f[46], f[48]].map((v) => BigInt(v ?? "0"));
    if (argStart! > 0n && argEnd! > argStart! && envEnd! >= argEnd!) return { argStart: argStart!, argEnd: argEnd!, envEnd: envEnd! };
  } catch {
    // no title then
  }
  return { argStart: 0n, argEnd: 0n, envEnd: 0n };
}

export interface ReaperStart {
  /** The launcher's command (argv[0] is the binary's absolute path); its environment is empty. */
  launcher: readonly string[];
  /** The reaper's command line as ps shows it (where the caller's own command line has room). */
  title: readonly string[];
  /** Held (a shared flock) while the reaper lives. */
  lockPath: string;
  /** The reaper's and the launcher's stderr (fd 0 and 1 are /dev/null). */
  logFd: number;
}

/**
 * Forks the reaper from this process (see the top of this file), which starts the launcher.
 * Returns once the reaper runs (a few ms: the fork, and the copy's unmapping of this process).
 */
export function startReaper(opts: ReaperStart): void {
  const n = load();
  const area = commandLineArea();
  const strings = Buffer.from([opts.launcher[0]!, ...opts.launcher, ...opts.title, opts.lockPath].map((s) => `${s}\0`).join(""));
  const req = Buffer.alloc(REQ_FIELDS * 8 + strings.length);
  // struct req: log_fd, argc, titlec, arg_start, arg_end, env_end, tls (the C side's), strings_len.
  const fields = [opts.logFd, opts.launcher.length, opts.title.length, area.argStart, area.argEnd, area.envEnd, 0, strings.length];
  for (const [i, v] of fields.entries()) req.writeBigUInt64LE(BigInt(v), i * 8);
  strings.copy(req, REQ_FIELDS * 8);

  const [reportR, reportW] = pipe();
  let pid: number;
  try {
    pid = n.start(req, BigInt(req.length), reportW);
  } finally {
    closeSync(reportW);
  }
  const result = Buffer.alloc(8);
  let got = 0;
  try {
    if (pid < 0) throw new Error(`cannot start the launcher's reaper: fork: ${libc.symbols.strerror(-pid)}`);
    while (got < 8) {
      const r = readSync(reportR, result, got, 8 - got, null);
      if (r === 0) break;
      got += r;
    }
  } finally {
    closeSync(reportR);
  }
  const status = n.wait(pid);
  if (got < 8) throw new Error(`cannot start the launcher's reaper: its first fork ended (wait status ${status}) before it ran`);
  const rc = Number(result.readBigInt64LE(0));
  if (rc !== 0) throw new Error(`cannot start the launcher's reaper: ${libc.symbols.strerror(-rc)}`);
}

/** Is a reaper holding `lockPath` alive? */
export function reaperAlive(lockPath: string): boolean {
  let fd: number;
  try {
    fd = openSync(lockPath, "r");
  } catch {
    return false;
  }
  try {
    // Taken: nobody holds it (and we let go at once, by closing).
    return !flock(fd, LOCK_EX | LOCK_NB);
  } finally {
    closeSync(fd);
  }
}

/** A record for the reaper (the launcher's side of fd 3). */
export function reaperRecord(kind: number, pid: number, status = 0, statusFile = "", key = ""): Buffer {
  const file = Buffer.from(statusFile);
  const k = Buffer.from(key).subarray(0, MAX_KEY);
  if (file.length > MAX_STATUS_FILE) throw new Error(`status file path over ${MAX_STATUS_FILE} bytes: ${statusFile.slice(0, 80)}...`);
  const b = Buffer.alloc(RECORD_HEADER + file.length + k.length);
  b.writeUInt32LE(kind, 0);
  b.writeInt32LE(pid, 4);
  b.writeInt32LE(status, 8);
  b.writeUInt32LE(file.length | (k.length << 16), 12);
  file.copy(b, RECORD_HEADER);
  k.copy(b, RECORD_HEADER + file.length);
  return b;
}
