// Init stage 2's confinement step, applied as the agent decided it (LaunchSpec.confine):
// the bounding set before the user switch, the capability sets after it, then no_new_privs
// and the seccomp filter last, on the thread that calls execve, just before it does.
import {
  clearAmbientCapabilities,
  dropBoundingCapability,
  installSeccompFilter,
  raiseAmbientCapability,
  setCapabilities,
  setKeepCapabilities,
  setNoNewPrivileges,
} from "../ffi/security.ts";
import { resetSignals, setRlimit } from "../ffi/libc.ts";
import { readFileSync } from "node:fs";
import type { ConfineSpec, RlimitSpec } from "./spec.ts";
import { errorOfKind } from "../errors.ts";

/** A setup step that failed: the launch fails (reported on fd 3), it is not the workload's error. */
export class ConfineError extends errorOfKind("internal") {}

function step<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new ConfineError(`${what}: ${(err as Error).message}`);
  }
}

/** The seccomp program's bytes, decoded while everything is still allowed. */
export function seccompProgram(c: ConfineSpec): Uint8Array | undefined {
  // Uint8Array.fromBase64: Buffer's decoder costs a fresh process ~0.5 ms on first use.
  return c.seccomp ? (Uint8Array as unknown as { fromBase64(s: string): Uint8Array }).fromBase64(c.seccomp.program) : undefined;
}

/**
 * Before the switch to `uid`: shrink the bounding set (this needs CAP_SETPCAP, which a
 * non-root user no longer has), and if a non-root user is to keep capabilities (ambient),
 * ask the kernel to keep the permitted set across the uid change.
 */
export function confineBeforeUserSwitch(c: ConfineSpec, uid: number): void {
  const keep = new Set(c.bounding);
  step("dropping capabilities from the bounding set", () => {
    for (let cap = 0; cap <= c.lastCap; cap++) if (!keep.has(cap)) dropBoundingCapability(cap);
  });
  if (uid !== 0 && c.ambient.length > 0) step("keeping capabilities across the user switch", () => setKeepCapabilities(true));
}

/**
 * After the switch: root keeps `effective` (permitted too); a non-root user keeps only the
 * ambient set, which execve then hands to the workload. Without ambient capabilities a
 * non-root user has none left (the kernel cleared them at the switch), as it should.
 */
export function applyCapabilities(c: ConfineSpec, uid: number): void {
  if (uid !== 0 && c.ambient.length === 0) return;
  const effective = uid === 0 ? c.effective : c.ambient;
  step("setting the capability sets", () => setCapabilities({ effective, permitted: effective, inheritable: c.ambient }));
  step("setting the ambient capabilities", () => {
    clearAmbientCapabilities();
    for (const cap of c.ambient) raiseAmbientCapability(cap);
  });
}

/**
 * The signals this thread ignores, from its /proc status (the container's /proc by now: ours,
 * mounted over the image's): execve keeps those, and resets the handled ones itself. One read
 * instead of 62 rt_sigaction calls; undefined (reset them all) if it cannot be read.
 */
export function ignoredSignals(): number[] | undefined {
  let status: string;
  try {
    status = readFileSync("/proc/thread-self/status", "latin1");
  } catch {
    return undefined;
  }
  const hex = /^SigIgn:\s*([0-9a-f]{16})$/m.exec(status)?.[1];
  if (hex === undefined) return undefined;
  const out: number[] = [];
  // Two 32-bit halves: no BigInt on the launch's path (its first use costs a fresh process).
  for (const [half, base] of [
    [hex.slice(8), 0],
    [hex.slice(0, 8), 32],
  ] as const) {
    const bits = Number.parseInt(half, 16);
    for (let i = 0; i < 32; i++) if ((bits >>> i) & 1) out.push(base + i + 1);
  }
  return out.filter((s) => s !== 9 && s !== 19);
}

/**
 * posix/rlimits: each limit as the agent decided it, while still root (raising a hard limit
 * needs CAP_SYS_RESOURCE). Inherited by the workload across execve.
 */
export function applyRlimits(rlimits: readonly RlimitSpec[] | undefined): void {
  for (const r of rlimits ?? []) step(`setting rlimit ${r.name}`, () => setRlimit(r.resource, BigInt(r.soft), BigInt(r.hard)));
}

/**
 * The very last steps before execve: signals back to their defaults (a runtime's ignored
 * signals would outlive the exec), then no_new_privs and the filter; nothing after them may
 * need a call the filter refuses.
 */
export function lockDown(c: ConfineSpec, program: Uint8Array | undefined): void {
  step("resetting signal dispositions and the signal mask", () => resetSignals(ignoredSignals()));
  if (c.noNewPrivs) step("setting no_new_privs", () => setNoNewPrivileges());
  if (program) step("loading the seccomp filter", () => installSeccompFilter(program, c.seccomp?.flags ?? 0));
}
