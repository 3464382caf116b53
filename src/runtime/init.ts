// `ucr __init`: the container init stage, in two processes so the workload is PID 1 of its
// own namespace while something outside still waits for it.
//   stage 1 (`__init SPEC`, or the agent's long-lived launcher for many containers):
//     starts stage 2 in a new PID namespace (src/ffi/spawn.ts says why not with Bun.spawn),
//     waits for it and writes its raw wait(2) status for the agent (which may be gone).
//   stage 2 (`__init --pid1 SPEC`, or `__init --warm` started ahead and told SPEC on stdin;
//     PID 1 inside): in its own mount namespace, mounts the rootfs, /proc, /sys, /dev,
//     /etc files and the sandbox, pivot_roots, drops to the user, confines (capabilities,
//     no_new_privs, seccomp) and execs the workload.
// Setup errors go to fd 3, which the agent reads; exec closes fd 3 (close-on-exec), and
// that EOF is how the agent knows the workload runs. (Over 400 lines: both stages and the warm
// start share the spec and the report on fd 3; mounts, confinement and users are apart.)
import { closeSync, existsSync, openSync, readFileSync, readdirSync, statSync, writeSync } from "node:fs";
import { relative } from "node:path";
import {
  AT_FDCWD,
  CLONE_FS,
  CLONE_NEWIPC,
  CLONE_NEWNET,
  CLONE_NEWNS,
  CLONE_NEWUTS,
  MS_REC,
  MS_SLAVE,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_PATH,
  O_RDONLY,
  cloexecFrom,
  close,
  execve,
  openat,
  setCloexec,
  setParentDeathSignal,
  setns,
  unshare,
} from "../ffi/libc.ts";
import { ConfineError, applyCapabilities, applyRlimits, confineBeforeUserSwitch, lockDown, seccompProgram } from "./confine.ts";
import { chownTree, kindOf, openDir, openInRoot } from "./inroot.ts";
import { bindHostShm, cloneSharedVolumes, enterParentRoot, enterRootfs, mountEtcOverHost, mountHostProc, mountVolumes } from "./mounts.ts";
import { here } from "./here.ts";
import { pidNamespaceOf, selfCommand, type LaunchSpec } from "./spec.ts";
import { makeTerminal, useTerminal, type Terminal } from "./terminal.ts";
import { newSession } from "../ffi/tty.ts";
import { dropPrivileges, homeOf, resolveUser, type User } from "./user.ts";

const REPORT_FD = 3;

function readSpec(path: string | undefined): LaunchSpec {
  if (!path) throw new Error("usage: ucr __init [--pid1] SPEC");
  return JSON.parse(readFileSync(path, "utf8")) as LaunchSpec;
}

/** Tells the agent why the launch failed (fd 3), and the sandbox's stderr too. */
function report(message: string): void {
  const line = `${message}\n`;
  try {
    writeSync(REPORT_FD, line);
  } catch {
    // the agent is gone; stderr still has it
  }
  try {
    writeSync(2, `ucr: ${line}`);
  } catch {
    // nothing left to tell
  }
}

export async function initMain(args: readonly string[]): Promise<number> {
  if (args[0] === "--pid1") return stage2(args[1]);
  if (args.length !== 1 || !existsSync(args[0]!) || !fdOpen(REPORT_FD)) {
    process.stderr.write(
      "ucr __init: the container init stage is started by the agent when it launches a container; it is not for direct use\n",
    );
    return 2;
  }
  return stage1(args[0]!);
}

function fdOpen(fd: number): boolean {
  try {
    statSync(`/proc/self/fd/${fd}`);
    return true;
  } catch {
    return false;
  }
}

/** Stage 1, for one container (used when the launcher cannot be had). */
async function stage1(specPath: string): Promise<number> {
  // Loaded here only: stage 2, started for every launch, needs neither.
  const { onChildExit, spawnProcess } = await import("../ffi/spawn.ts");
  const { Records } = await import("./records.ts");
  let spec: LaunchSpec;
  let pid: number;
  try {
    spec = readSpec(specPath);
    // Outlive the agent: a container keeps running, and stage 1 writes its status, when the
    // agent dies. No parent-death signal may be inherited from whoever started us.
    setParentDeathSignal(0);
    pid = spawnProcess({
      argv: selfCommand("__init", "--pid1", specPath),
      env: {},
      fds: [0, 1, 2, REPORT_FD],
      pidns: pidNamespaceOf(spec),
    });
  } catch (err) {
    report(`container init failed: ${(err as Error).message}`);
    return 1;
  }
  const exited = new Promise<number>((resolve) => onChildExit(pid, resolve));
  const records = new Records((m) => process.stderr.write(`ucr: ${m}\n`));
  // The pid file first: the agent reads it as soon as fd 3 reaches EOF, which needs our copy closed.
  records.write(spec.id, spec.pidFile, `${pid}\n`);
  closeSync(REPORT_FD); // only stage 2 (until exec) holds it now
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT"] as const) {
    process.on(sig, () => {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    });
  }
  const status = await exited;
  // Stays until the status is written (or its directory is gone), however long a full disk lasts.
  await new Promise<void>((resolve) => records.write(spec.id, spec.statusFile, `${status}\n`, resolve));
  return 0;
}

/** Stage 2 (a nested container, a session, a container with a switchboard, or without the launcher). */
function stage2(specPath: string | undefined): number {
  let spec: LaunchSpec;
  let cgroupFds: number[] = [];
  let sandboxFd: number;
  /** The host's /proc, held for a terminal's device to be opened through (see makeTerminal). */
  let hostProc: number | undefined;
  try {
    spec = readSpec(specPath);
    setCloexec(REPORT_FD);
    // The container's cgroups are joined at the last moment before exec (through descriptors
    // opened now, as /sys/fs/cgroup is not inside the container): everything this runtime
    // allocates stays charged outside and is freed by exec, so even a small memory limit
    // holds only the workload.
    cgroupFds = (spec.cgroupJoin?.files ?? []).map((p) => {
      const fd = openSync(p, "w");
      setCloexec(fd);
      return fd;
    });
    if (spec.io?.tty) hostProc = openat(AT_FDCWD, "/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (spec.debug) {
      // A session (Mesos' DEBUG class) mounts nothing: it enters its parent as it is.
      sandboxFd = openSandbox(spec.sandbox);
      joinParent(spec.parentPid!);
    } else {
      sandboxFd = enterContainer(spec);
    }
  } catch (err) {
    report(`container setup failed: ${(err as Error).message}`);
    return 1;
  }
  return finish(spec, sandboxFd, cgroupFds, hostProc);
}

/**
 * Namespaces, mounts and the root of a container (not a session); the sandbox's descriptor.
 * Made `here`: by this process (stage 2), or by the launcher for the process it forked.
 */
export function enterContainer(spec: LaunchSpec): number {
  // The network namespace the agent made and attached (a nested container's: its root's).
  if (spec.netns !== undefined) joinNetns(spec.netns);
  // Hostname: a nested container shares its parent's, a top-level one has its own. IPC: as
  // the agent decided (namespaces/ipc), by default the same way.
  const ipc = spec.ipc?.namespace ?? (spec.parentPid !== undefined ? "parent" : "own");
  const joins: Array<["uts" | "ipc", number]> = [];
  if (spec.parentPid !== undefined) joins.push(["uts", CLONE_NEWUTS]);
  if (ipc === "parent") joins.push(["ipc", CLONE_NEWIPC]);
  for (const [ns, flag] of joins) here.setns(`/proc/${spec.parentPid}/ns/${ns}`, flag);
  const fresh = (spec.parentPid === undefined ? CLONE_NEWUTS : 0) | (ipc === "own" ? CLONE_NEWIPC : 0);
  if (fresh !== 0) here.unshare(fresh);
  here.unshare(CLONE_NEWNS);
  // BIDIRECTIONAL volumes stay peers of the host's mounts; then everything else becomes a
  // slave: mounts from the host still reach the container, none of the container's reach the host.
  const trees = cloneSharedVolumes(spec);
  here.mount(null, "/", null, MS_REC | MS_SLAVE);
  // The sandbox, held from here on: mounted from this descriptor (opened in this mount
  // namespace: a bind's source must be in it) and given to the user through it, so no later
  // lookup of its path can be steered elsewhere.
  const sandboxFd = openSandbox(spec.sandbox);
  if (spec.parentPid === undefined) here.sethostname(spec.hostname);
  if (spec.rootfs) enterRootfs(spec, sandboxFd, trees);
  else if (spec.parentPid !== undefined) {
    enterParentRoot(spec.parentPid);
  } else {
    mountHostProc(spec.kernelFiles);
    if (spec.netns !== undefined) mountEtcOverHost(spec);
    if (spec.ipc?.shm && "bind" in spec.ipc.shm) bindHostShm(spec.ipc.shm.bind);
    const root = openDir(here.host("/"));
    try {
      mountVolumes(spec, root, trees);
    } finally {
      close(root);
    }
  }
  return sandboxFd;
}

/**
 * Joins every namespace of the process `pid` (network, UTS, IPC, then mount; PID came with
 * the spawn). A threaded process cannot join a mount namespace while its threads share its
 * filesystem context: this thread gets one of its own first (CLONE_FS). Joining the mount
 * namespace moves it to that namespace's root, the parent container's.
 */
function joinParent(pid: number): void {
  const fds = (["net", "uts", "ipc", "mnt"] as const).map((ns) => {
    try {
      return openSync(`/proc/${pid}/ns/${ns}`, "r");
    } catch (err) {
      throw new Error(`cannot enter the parent container (pid ${pid}): its ${ns} namespace: ${(err as Error).message}`);
    }
  });
  try {
    setns(fds[0]!, CLONE_NEWNET);
    setns(fds[1]!, CLONE_NEWUTS);
    setns(fds[2]!, CLONE_NEWIPC);
    unshare(CLONE_FS);
    setns(fds[3]!, CLONE_NEWNS);
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** From inside the container's root: the user, the terminal, confinement, and exec. */
function finish(spec: LaunchSpec, sandboxFd: number, cgroupFds: number[], hostProc: number | undefined): number {
  let executable: string;
  const confine = spec.confine;
  let program: Uint8Array | undefined;
  try {
    // From here on "/" is the container's root: the user, HOME and the working directory are
    // looked up inside it, never through a link out of it or a descriptor we hold.
    const root = openDir("/");
    let user: User | undefined;
    try {
      user = settle(spec, sandboxFd, root);
      if (spec.io) {
        // Setup errors of the terminal fail the launch (reported), unlike those of the command.
        let terminal: Terminal | undefined;
        try {
          if (spec.io.tty) terminal = makeTerminal(root, hostProc!, spec.io.tty.window, { uid: user?.uid ?? 0, gid: user?.gid ?? 0 });
          // A session of its own, so the agent can end a session's whole process group.
          if (terminal) useTerminal(terminal);
          else newSession();
        } catch (err) {
          report(`container setup failed: ${(err as Error).message}`);
          return 1;
        }
      }
    } finally {
      close(root);
      close(sandboxFd);
      if (hostProc !== undefined) close(hostProc);
    }
    const uid = user?.uid ?? 0;
    if (!confine) throw new ConfineError("the launch spec says nothing about confinement; refusing to run the container unconfined");
    program = seccompProgram(confine);
    confineBeforeUserSwitch(confine, uid);
    applyRlimits(spec.rlimits);
    if (user) {
      dropPrivileges(user);
      spec.env.USER ??= user.name;
    }
    executable = findExecutable(spec.executable, spec.env.PATH ?? "", spec.workingDir);
    applyCapabilities(confine, uid);
  } catch (err) {
    if (err instanceof ConfineError) {
      report(`container setup failed: ${err.message}`);
      return 1;
    }
    // The container runs (the launch succeeded); it fails like a shell that cannot exec.
    closeSync(REPORT_FD);
    writeSync(2, `ucr: ${(err as Error).message}\n`);
    return 127;
  }
  try {
    const who = spec.cgroupJoin?.move === "thread" ? "0" : String(process.pid);
    for (const fd of cgroupFds) writeSync(fd, who);
  } catch (err) {
    closeSync(REPORT_FD);
    writeSync(2, `ucr: cannot join the container's cgroups: ${(err as Error).message}\n`);
    return 125;
  }
  try {
    // Nothing of this process but stdio reaches the workload (CVE-2024-21626: a descriptor of
    // a host directory left open is a way out of the root).
    cloexecFrom(3, openFds);
    // Signals back to their defaults (Bun ignores SIGPIPE and SIGXFSZ, glibc's posix_spawn
    // leaves its own 32 and 33 ignored: a shell pipeline's writer must die of SIGPIPE, not see
    // EPIPE), then no_new_privs and the seccomp filter, last, once the arguments are built:
    // after the filter only execve (and, if it fails, write, close and exit) may run here.
    return execve(executable, spec.argv, spec.env, () => lockDown(confine, program));
  } catch (err) {
    if (err instanceof ConfineError) {
      report(`container setup failed: ${err.message}`);
      return 1;
    }
    closeSync(REPORT_FD);
    writeSync(2, `ucr: cannot execute ${spec.executable}: ${(err as Error).message}\n`);
    return 126;
  }
}

function joinNetns(path: string): void {
  try {
    here.setns(path, CLONE_NEWNET);
  } catch (err) {
    throw new Error(`cannot join the network namespace ${path}: ${(err as Error).message}`);
  }
}

/** The sandbox's directory, through no link below the top-level sandbox for a nested container. */
function openSandbox(sandbox: LaunchSpec["sandbox"]): number {
  try {
    if (sandbox.within === undefined) return openat(AT_FDCWD, here.host(sandbox.host), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const top = openDir(here.host(sandbox.within));
    try {
      return openInRoot(top, relative(sandbox.within, sandbox.host), { noLinks: true, flags: O_RDONLY | O_DIRECTORY }).fd;
    } finally {
      close(top);
    }
  } catch (err) {
    throw new Error(`cannot open the sandbox ${sandbox.host}: ${(err as Error).message}`);
  }
}

/** This process's open descriptors (for kernels without close_range). */
function openFds(): number[] {
  return readdirSync("/proc/self/fd").map(Number);
}

/** The sandbox and what is in it (stdout, stderr, fetched URIs) to the user, links left alone. */
function giveSandbox(sandboxFd: number, user: User): void {
  try {
    chownTree(sandboxFd, user.uid, user.gid);
  } catch (err) {
    throw new Error(`cannot give the sandbox to user ${user.name} (${user.uid}:${user.gid}): ${(err as Error).message}`);
  }
}

/**
 * Inside the container's root (`root`, its "/"): the user, resolved in the image; the sandbox
 * given to it; HOME; the working directory, entered (`here`).
 */
export function settle(spec: LaunchSpec, sandboxFd: number, root: number): User | undefined {
  const user = spec.user ? resolveUser(root, spec.user) : undefined;
  // Mesos gives the sandbox to the container's user.
  if (user && (user.uid !== 0 || user.gid !== 0)) giveSandbox(sandboxFd, user);
  // HOME from the user's passwd entry, root's included; "/" without one (Mesos, runc).
  if (spec.env.HOME === undefined) spec.env.HOME = (user ? user.home : homeOf(root, 0)) ?? "/";
  enterWorkingDir(root, spec.workingDir);
  return user;
}

/** chdir into the working directory as the container sees it, made if missing (as docker does). */
function enterWorkingDir(root: number, dir: string): void {
  let opened;
  try {
    opened = openInRoot(root, dir, { create: "dir", flags: O_PATH | O_DIRECTORY });
  } catch (err) {
    throw new Error(`cannot use the working directory ${dir}: ${(err as Error).message}`);
  }
  try {
    if (!opened.st.isDirectory()) throw new Error(`the working directory ${dir} is ${kindOf(opened.st)}`);
    here.chdirTo(opened.fd);
  } finally {
    close(opened.fd);
  }
}

/** PATH lookup as execvp does: relative names with a slash from the working dir. */
function findExecutable(name: string, path: string, cwd: string): string {
  const runnable = (p: string) => {
    try {
      // Missing is the common answer along PATH: no exception for it (see openatOrErrno).
      const st = statSync(p, { throwIfNoEntry: false });
      return st?.isFile() === true && (st.mode & 0o111) !== 0;
    } catch {
      return false; // not a directory on the way, no permission
    }
  };
  if (name.includes("/")) {
    const p = name.startsWith("/") ? name : `${cwd}/${name}`;
    if (!existsSync(p)) throw new Error(`executable '${name}' not found`);
    return p;
  }
  for (const dir of path.split(":")) {
    const p = `${dir || "."}/${name}`;
    if (runnable(p)) return p;
  }
  throw new Error(`executable '${name}' not found in PATH (${path})`);
}
