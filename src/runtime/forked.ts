// A top-level container started by the launcher without starting the binary: its process is
// forked into the container's new namespaces (src/ffi/child.ts), the launcher runs the same
// setup init stage 2 runs (init.ts enterContainer and settle, mounts.ts) with `here` being
// that process, then tells it to apply the confinement and exec. A launch costs a fork (~0.5
// ms of CPU) instead of a Bun start (~10 ms), so bursts of launches are not bound by the
// starts of init stages (issue #15).
import { writeSync } from "node:fs";
import { Child } from "../ffi/child.ts";
import { SysError } from "../ffi/errno.ts";
import { CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWUTS, O_WRONLY, close } from "../ffi/libc.ts";
import { ConfineError } from "./confine.ts";
import { InChild, within } from "./here.ts";
import { enterContainer, settle } from "./init.ts";
import { openDir } from "./inroot.ts";
import { pidNamespaceOf, type LaunchSpec } from "./spec.ts";
import { checkIds, type User } from "./user.ts";

/**
 * Starts `spec`'s container: stdio from `stdio`, setup errors on `report` (as an init stage's
 * fd 3, which its exec closes). Returns its pid once it was told to exec, or failed (then it
 * exits 1, or 125-127 for a failure of its command, with the reason on `report` or its stderr).
 */
export function startForked(spec: LaunchSpec, stdio: readonly [number, number, number], report: number): number {
  const pidns = pidNamespaceOf(spec);
  if (pidns !== "new" && pidns !== undefined) throw new Error("a forked container gets a new PID namespace or the launcher's");
  // Its own UTS and (unless it shares the host's) IPC namespaces come with the clone: a
  // top-level container joins none of another's (a network namespace, if any, is joined after).
  // Not its mount namespace: the cgroup files are opened first, in ours (opened for writing in
  // its namespace, they would keep its /sys from being made read-only: EBUSY).
  const ipcOwn = (spec.ipc?.namespace ?? "own") === "own";
  const fresh = CLONE_NEWUTS | (ipcOwn ? CLONE_NEWIPC : 0);
  const child = Child.fork(stdio, report, fresh | (pidns === "new" ? CLONE_NEWPID : 0));
  let stage: "setup" | "command" = "setup";
  try {
    const request = within(new InChild(child, fresh), () => {
      const files = spec.cgroupJoin?.files ?? [];
      const cgroups = child.opens(files, O_WRONLY);
      for (const [i, fd] of cgroups.entries()) {
        if (fd < 0) throw new SysError("open", -fd, child.strerror(-fd), files[i]);
      }
      const sandboxFd = enterContainer(spec);
      stage = "command";
      let user: User | undefined;
      const root = openDir(`/proc/${child.pid}/root`); // its "/" now
      try {
        user = settle(spec, sandboxFd, root);
      } finally {
        close(root);
        close(sandboxFd);
      }
      stage = "setup";
      return execRequest(spec, user, cgroups);
    });
    child.exec(request);
  } catch (err) {
    const message = (err as Error).message;
    // Setup failures fail the launch; the command's (its user, its working dir) are the
    // workload's own, as a shell's that cannot start it: the launch succeeds and it exits 127.
    const launchFails = stage === "setup" || err instanceof ConfineError;
    const text = launchFails ? `container setup failed: ${message}` : message;
    if (!child.exit(launchFails ? 1 : 127, launchFails, text)) {
      // It is gone (killed meanwhile): the launcher's copy of fd 3 tells the agent.
      try {
        writeSync(report, `${text}\n`);
      } catch {
        // nobody reads it any more
      }
    }
  }
  return child.pid;
}

/** Bounds of the native side (MAX_STRINGS and BIG_BYTES in src/ffi/child.c.ts); execve's own (ARG_MAX) are lower. */
const MAX_STRINGS = 65536;
const MAX_EXEC_BYTES = 4 << 20;

/** The last steps' request (struct exec_req in src/ffi/child.c.ts). */
function execRequest(spec: LaunchSpec, user: User | undefined, cgroups: number[]): Buffer {
  const c = spec.confine;
  if (!c) throw new ConfineError("the launch spec says nothing about confinement; refusing to run the container unconfined");
  const uid = user?.uid ?? 0;
  if (user) {
    checkIds(user);
    spec.env.USER ??= user.name;
  }
  const mask = (caps: readonly number[]) => caps.reduce((m, cap) => m | (1n << BigInt(cap)), 0n);
  const applyCaps = !(uid !== 0 && c.ambient.length === 0);
  const effective = uid === 0 ? c.effective : c.ambient;
  const program = c.seccomp ? Buffer.from(c.seccomp.program, "base64") : undefined;
  if (program && (program.length === 0 || program.length % 8 !== 0)) {
    throw new ConfineError(`loading the seccomp filter: a seccomp program is 8-byte instructions, not ${program.length} bytes`);
  }
  const rlimits = spec.rlimits ?? [];
  const flags =
    (user ? 1 : 0) |
    (uid !== 0 && c.ambient.length > 0 ? 2 : 0) |
    (applyCaps ? 4 : 0) |
    (c.noNewPrivs ? 8 : 0) |
    (program ? 16 : 0) |
    (spec.cgroupJoin?.move === "process" ? 32 : 0);
  const groups = user?.groups ?? [];
  const pad8 = (n: number) => Math.ceil(n / 8) * 8;
  const head = Buffer.alloc(88); // sizeof(struct exec_req)
  let o = 0;
  for (const v of [
    flags,
    user?.uid ?? 0,
    user?.gid ?? 0,
    groups.length,
    c.lastCap,
    rlimits.length,
    cgroups.length,
    c.seccomp?.flags ?? 0,
  ]) {
    head.writeUInt32LE(v >>> 0, o);
    o += 4;
  }
  for (const v of [mask(c.bounding), mask(effective), mask(effective), mask(c.ambient), mask(c.ambient)]) {
    head.writeBigUInt64LE(v, o);
    o += 8;
  }
  for (const v of [program?.length ?? 0, spec.argv.length, Object.keys(spec.env).length, 0]) {
    head.writeUInt32LE(v, o);
    o += 4;
  }
  const g = Buffer.alloc(pad8(groups.length * 4));
  for (const [i, id] of groups.entries()) g.writeUInt32LE(id, i * 4);
  const rl = Buffer.alloc(rlimits.length * 24);
  rlimits.forEach((r, i) => {
    rl.writeBigUInt64LE(BigInt(r.resource), i * 24);
    rl.writeBigUInt64LE(BigInt(r.soft), i * 24 + 8);
    rl.writeBigUInt64LE(BigInt(r.hard), i * 24 + 16);
  });
  const cg = Buffer.alloc(pad8(cgroups.length * 4));
  for (const [i, fd] of cgroups.entries()) cg.writeUInt32LE(fd, i * 4);
  const prog = Buffer.alloc(pad8(program?.length ?? 0));
  program?.copy(prog);
  const strings = [
    spec.executable,
    spec.env.PATH ?? "",
    ...rlimits.map((r) => r.name),
    ...spec.argv,
    ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
  ];
  for (const s of strings) {
    if (s.includes("\0")) throw new Error(`the command or environment holds a NUL byte: ${JSON.stringify(s.slice(0, 64))}`);
  }
  if (spec.argv.length >= MAX_STRINGS || Object.keys(spec.env).length >= MAX_STRINGS) {
    throw new Error(
      `the command has ${spec.argv.length} arguments and ${Object.keys(spec.env).length} environment variables: at most ${MAX_STRINGS - 1} each`,
    );
  }
  const request = Buffer.concat([head, g, rl, cg, prog, Buffer.from(strings.map((s) => `${s}\0`).join(""))]);
  if (request.length >= MAX_EXEC_BYTES)
    throw new Error(`the command, environment and seccomp filter take ${request.length} bytes: at most ${MAX_EXEC_BYTES - 1}`);
  return request;
}
