// libc calls that confine a process (bun:ffi): capability sets, the bounding and ambient sets,
// no_new_privs and seccomp filters. Each acts on the calling thread, the one that will exec.
// Failures throw SysError naming the call and the capability or flag it was about.
import { dlopen, ptr, read } from "bun:ffi";
import { SysError } from "./errno.ts";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
  prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },

  capset: { args: ["ptr", "ptr"], returns: "i32" },
  syscall: { args: ["i64", "u64", "u64", "ptr"], returns: "i64" },
});

// prctl(2) options (linux/prctl.h).
const PR_SET_KEEPCAPS = 8;
const PR_SET_SECCOMP = 22;
const PR_CAPBSET_DROP = 24;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;
const PR_CAP_AMBIENT_CLEAR_ALL = 4;
const SECCOMP_MODE_FILTER = 2;
const SECCOMP_SET_MODE_FILTER = 1;
const SYS_SECCOMP = process.arch === "arm64" ? 277 : 317;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

function errno(): number {
  return read.i32(libc.symbols.__errno_location()!);
}

function fail(call: string, what: string): never {
  const e = errno();
  throw new SysError(call, e, libc.symbols.strerror(e)?.toString() ?? "unknown error", what);
}

function prctl(option: number, arg: number | bigint, what: string): number {
  const rc = libc.symbols.prctl(option, arg, 0, 0, 0);
  if (rc === -1) fail("prctl", what);
  return rc;
}

/**
 * Sets the calling thread's three sets at once (capset(2), version 3), given as capability
 * numbers. (No BigInt here: its first use costs a fresh process a few hundred microseconds,
 * and this runs on the launch's hot path.)
 */
export function setCapabilities(sets: {
  effective: readonly number[];
  permitted: readonly number[];
  inheritable: readonly number[];
}): void {
  const header = new Uint32Array([LINUX_CAPABILITY_VERSION_3, 0]);
  const data = new Uint32Array(6);
  const put = (set: readonly number[], slot: number) => {
    for (const cap of set) data[slot + (cap >= 32 ? 3 : 0)]! |= 1 << (cap & 31);
  };
  put(sets.effective, 0);
  put(sets.permitted, 1);
  put(sets.inheritable, 2);
  if (libc.symbols.capset(header, data) === -1) {
    fail(
      "capset",
      `effective [${sets.effective.join(",")}], permitted [${sets.permitted.join(",")}], inheritable [${sets.inheritable.join(",")}]`,
    );
  }
}

/** Removes `cap` from the bounding set (for this thread and whatever it execs). */
export function dropBoundingCapability(cap: number): void {
  prctl(PR_CAPBSET_DROP, cap, `PR_CAPBSET_DROP ${cap}`);
}

/** Keep the permitted set across a switch from uid 0 to another uid (cleared by execve). */
export function setKeepCapabilities(keep: boolean): void {
  prctl(PR_SET_KEEPCAPS, keep ? 1 : 0, "PR_SET_KEEPCAPS");
}

export function clearAmbientCapabilities(): void {
  const rc = libc.symbols.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (rc === -1) fail("prctl", "PR_CAP_AMBIENT_CLEAR_ALL");
}

/** Adds `cap` to the ambient set (it must be permitted and inheritable): kept across execve by a non-root user. */
export function raiseAmbientCapability(cap: number): void {
  const rc = libc.symbols.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  if (rc === -1) fail("prctl", `PR_CAP_AMBIENT_RAISE ${cap}`);
}

/** After this, execve never grants privileges (setuid bits and file capabilities do nothing). */
export function setNoNewPrivileges(): void {
  prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS");
}

/** Whether the kernel takes filters: PR_SET_SECCOMP with a NULL program fails EFAULT if so (Mesos' check). */
export function seccompFiltersSupported(): boolean {
  const rc = libc.symbols.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, 0, 0, 0);
  return rc === -1 && errno() === 14;
}

/**
 * Loads `program` (struct sock_filter array) as a seccomp filter on the calling thread only
 * (no TSYNC). Needs no_new_privs (or CAP_SYS_ADMIN). `flags`: SECCOMP_FILTER_FLAG_LOG etc.
 */
export function installSeccompFilter(program: Uint8Array, flags = 0): void {
  if (program.byteLength === 0 || program.byteLength % 8 !== 0)
    throw new Error(`a seccomp program is 8-byte instructions, not ${program.byteLength} bytes`);
  const fprog = new BigUint64Array(2); // struct sock_fprog {u16 len; (pad); struct sock_filter *filter}
  fprog[0] = BigInt(program.byteLength / 8);
  fprog[1] = BigInt(ptr(program));
  const what = `${program.byteLength / 8} instructions`;
  if (flags === 0) {
    if (libc.symbols.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ptr(fprog), 0, 0) === -1) fail("prctl", `PR_SET_SECCOMP, ${what}`);
  } else if (Number(libc.symbols.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, fprog)) === -1) {
    fail("seccomp", `SECCOMP_SET_MODE_FILTER, flags ${flags}, ${what}`);
  }
  void program;
}
