// `ucr __init`: the container init stage, in two processes so the workload is PID 1 of its
// own namespace while something outside still waits for it.
//   stage 1 (`__init SPEC`, or the agent's long-lived launcher for many containers):
//     starts stage 2 in a new PID namespace (src/ffi/spawn.ts says why not with Bun.spawn),
//     waits for it and writes its raw wait(2) status for the agent (which may be gone).
//   stage 2 (`__init --pid1 SPEC`, or `__init --warm` started ahead and told SPEC on stdin;
//     PID 1 inside): in its own mount namespace, mounts the rootfs, /proc, /sys, /dev,
//     /etc files and the sandbox, pivot_roots, drops to the user and execs the workload.
// Setup errors go to fd 3, which the agent reads; exec closes fd 3 (close-on-exec), and
// that EOF is how the agent knows the workload runs.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { constants } from "node:os";
import {
  CLONE_NEWIPC,
  CLONE_NEWNS,
  CLONE_NEWUTS,
  MS_REC,
  MS_SLAVE,
  defaultSignal,
  dup2,
  execve,
  mount,
  setCloexec,
  setParentDeathSignal,
  sethostname,
  setns,
  unshare,
} from "../ffi/libc.ts";
import { enterParentRoot, enterRootfs, mountHostProc, mountVolumes } from "./mounts.ts";
import { WARM_READY, selfCommand, type LaunchSpec } from "./spec.ts";
import { dropPrivileges, resolveUser } from "./user.ts";

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
  if (args[0] === "--warm" && args.length === 1 && fdOpen(REPORT_FD)) return stage2(undefined);
  if (args.length !== 1 || !existsSync(args[0]!) || !fdOpen(REPORT_FD)) {
    process.stderr.write("ucr __init: the container init stage is started by the agent when it launches a container; it is not for direct use\n");
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
    pid = spawnProcess({ argv: selfCommand("__init", "--pid1", specPath), env: {}, fds: [0, 1, 2, REPORT_FD], pidns: spec.parentPid ?? "new" });
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

/** A warm stage 2's spec path: one line on stdin; null at EOF (the launcher went away). */
function readSpecPath(): string | null {
  const buf = Buffer.alloc(4096);
  let line = "";
  for (;;) {
    const n = readSync(0, buf);
    if (n === 0) return null;
    line += buf.toString("utf8", 0, n);
    const nl = line.indexOf("\n");
    if (nl >= 0) return line.slice(0, nl);
  }
}

/** The workload's stdio, as a cold stage 2 gets it from its spawn: sandbox files, no stdin. */
function redirectStdio(spec: LaunchSpec): void {
  const fds = [openSync("/dev/null", "r"), openSync(spec.stdout!, "a", 0o640), openSync(spec.stderr!, "a", 0o640)];
  fds.forEach((fd, i) => {
    dup2(fd, i);
    closeSync(fd);
  });
}

/** Stage 2; `specPath` undefined: a warm one, told its spec on stdin. */
function stage2(specPath: string | undefined): number {
  let spec: LaunchSpec;
  let cgroupFds: number[] = [];
  try {
    if (specPath === undefined) {
      // Loaded and waiting: the launcher counts this stage as ready from this byte on.
      writeSync(REPORT_FD, WARM_READY);
      const path = readSpecPath();
      if (path === null) return 0;
      spec = readSpec(path);
      if (spec.parentPid !== undefined) throw new Error("a warm init stage is for top-level containers only");
      redirectStdio(spec);
    } else {
      spec = readSpec(specPath);
    }
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
    // Hostname and IPC: a nested container shares its parent's, a top-level one has its own.
    if (spec.parentPid !== undefined) {
      for (const [ns, flag] of [["uts", CLONE_NEWUTS], ["ipc", CLONE_NEWIPC]] as const) {
        const fd = openSync(`/proc/${spec.parentPid}/ns/${ns}`, "r");
        try {
          setns(fd, flag);
        } finally {
          closeSync(fd);
        }
      }
    } else {
      unshare(CLONE_NEWUTS | CLONE_NEWIPC);
    }
    unshare(CLONE_NEWNS);
    // Mounts from the host still reach the container; none of the container's reach the host.
    mount(null, "/", null, MS_REC | MS_SLAVE);
    if (spec.parentPid === undefined) sethostname(spec.hostname);
    if (spec.rootfs) enterRootfs(spec);
    else if (spec.parentPid !== undefined) {
      enterParentRoot(spec.parentPid);
    } else {
      mountHostProc();
      mountVolumes(spec, "");
    }
  } catch (err) {
    report(`container setup failed: ${(err as Error).message}`);
    return 1;
  }
  let executable: string;
  try {
    const user = spec.user ? resolveUser(spec.user) : undefined;
    try {
      process.chdir(spec.workingDir);
    } catch {
      // docker creates a missing WorkingDir
      mkdirSync(spec.workingDir, { recursive: true, mode: 0o755 });
      process.chdir(spec.workingDir);
    }
    if (user) {
      dropPrivileges(user);
      if (spec.env.HOME === undefined && user.home) spec.env.HOME = user.home;
      spec.env.USER ??= user.name;
    }
    executable = findExecutable(spec.executable, spec.env.PATH ?? "", spec.workingDir);
  } catch (err) {
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
    // Bun ignores SIGPIPE and SIGXFSZ, and glibc's posix_spawn (the launcher's) leaves its
    // internal 32 and 33 ignored: the workload starts with all at their defaults, as under
    // runc or crun (a shell pipeline's writer must die of SIGPIPE, not see EPIPE).
    for (const sig of [constants.signals.SIGPIPE, constants.signals.SIGXFSZ, 32, 33]) defaultSignal(sig);
    return execve(executable, spec.argv, spec.env);
  } catch (err) {
    closeSync(REPORT_FD);
    writeSync(2, `ucr: cannot execute ${spec.executable}: ${(err as Error).message}\n`);
    return 126;
  }
}

/** PATH lookup as execvp does: relative names with a slash from the working dir. */
function findExecutable(name: string, path: string, cwd: string): string {
  const runnable = (p: string) => {
    try {
      const st = statSync(p);
      return st.isFile() && (st.mode & 0o111) !== 0;
    } catch {
      return false;
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

