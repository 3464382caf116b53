// `ucr __launcher SOCKET`: the launcher's parent, whose only job is to make the launcher's
// death survivable. It is a child subreaper (PR_SET_CHILD_SUBREAPER): when the launcher dies
// (SIGKILL, a crash), the kernel gives the launcher's children, the containers' workloads,
// to it instead of to init. The launcher tells it on fd 3 which pid is which container
// (and which exit statuses it could not write yet), so it can write each adopted
// workload's status file when that workload ends, where the agent finds it. It exits once
// the launcher is gone and every container it knew of is recorded.
//
// It does no launches and parses no agent input: little that can fail. A new launcher (the
// agent starts one when this one's socket stops answering) comes with a reaper of its own.
import { closeSync, openSync, readFileSync } from "node:fs";
import { setChildSubreaper, setParentDeathSignal } from "../ffi/libc.ts";
import { giveBackMemory } from "../util/idle-memory.ts";
import { onUnclaimedExit, pipe, reap, spawnProcess } from "../ffi/spawn.ts";
import { Records } from "./records.ts";
import { selfCommand } from "./spec.ts";

/** What the launcher tells its reaper, one JSON object per line. */
export type ReaperMessage =
  /** A container's init stage started. */
  | { pid: number; key: string; statusFile: string }
  /** It ended with `status`, and the launcher could not write that down yet. */
  | { exited: number; status: number }
  /** Its status file is written: forget it. */
  | { done: number }
  /** Nothing runs: give memory back. */
  | { quiet: true };

interface Known {
  key: string;
  statusFile: string;
  status?: number;
}

function say(message: string): void {
  try {
    process.stderr.write(`ucr launcher reaper[${process.pid}] ${new Date().toISOString()}: ${message}\n`);
  } catch {
    // nowhere left to say it
  }
}

export async function reaperMain(socketPath: string): Promise<number> {
  setParentDeathSignal(0);
  setChildSubreaper();
  process.on("uncaughtException", (err) => say(`unexpected error (carrying on): ${err.stack ?? err}`));

  const known = new Map<number, Known>();
  /** Adopted workloads that ended before the launcher's last messages were read. */
  const adopted: Array<{ pid: number; status: number }> = [];
  const records = new Records(say);
  let launcherGone = false;
  let launcherPid = 0;

  const record = (pid: number, k: Known, status: number) => {
    known.delete(pid);
    pendingWrites++;
    records.write(k.key, k.statusFile, `${status}\n`, () => {
      pendingWrites--;
      maybeExit();
    });
    say(`container ${k.key} (pid ${pid}) ended with status ${status} after its launcher; recorded`);
  };
  let pendingWrites = 0;
  const settleAdopted = () => {
    for (const { pid, status } of adopted.splice(0)) {
      const k = known.get(pid);
      if (k) record(pid, k, status);
      // else a warm init stage that had no container yet, or a launch the launcher died in
      // the middle of (the agent was told the launcher went away)
    }
    // Containers that ended before the launcher died but whose status it could not write.
    for (const [pid, k] of known) if (k.status !== undefined) record(pid, k, k.status);
    maybeExit();
  };
  const maybeExit = () => {
    if (launcherGone && known.size === 0 && pendingWrites === 0) process.exit(0);
  };
  // Signal listeners do not keep Bun's event loop alive; we stay until maybeExit says so.
  setInterval(() => {}, 1 << 30);

  // The launcher is gone once both its messages have ended (EOF) and it has been reaped:
  // its descriptors close before the kernel hands its children over, so EOF alone is early.
  let launcherReaped!: () => void;
  const reaped = new Promise<void>((resolve) => (launcherReaped = resolve));
  onUnclaimedExit((pid, status) => {
    if (pid === launcherPid) {
      if (status !== 0) say(`the launcher (pid ${pid}) ended with wait status ${status}; its containers are in my care`);
      launcherReaped();
      return;
    }
    adopted.push({ pid, status });
    if (launcherGone) settleAdopted();
  });

  const [fromLauncher, toReaper] = pipe();
  const devnull = openSync("/dev/null", "r+");
  try {
    launcherPid = spawnProcess({
      argv: selfCommand("__launcher", "--serve", socketPath, "--reaper-fd=3"),
      env: {},
      fds: [devnull, devnull, 2, toReaper],
    });
  } finally {
    closeSync(toReaper);
    closeSync(devnull);
  }

  // The launcher's messages, until EOF (its death or exit: nobody else holds the pipe).
  let buffer = "";
  try {
    for await (const chunk of Bun.file(fromLauncher).stream()) {
      buffer += Buffer.from(chunk).toString();
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let m: ReaperMessage;
        try {
          m = JSON.parse(line) as ReaperMessage;
        } catch {
          say(`ignoring a malformed message from the launcher: ${line.slice(0, 200)}`);
          continue;
        }
        if ("pid" in m) known.set(m.pid, { key: m.key, statusFile: m.statusFile });
        else if ("exited" in m) {
          const k = known.get(m.exited);
          if (k) k.status = m.status;
        } else if ("done" in m) known.delete(m.done);
        else if ("quiet" in m) {
          try {
            giveBackMemory();
          } catch (err) {
            say(`idle: could not give back the binary's pages: ${(err as Error).message}`);
          }
        }
      }
    }
  } catch (err) {
    say(`reading the launcher's messages failed: ${(err as Error).message}`);
  }
  try {
    closeSync(fromLauncher);
  } catch {
    // already closed
  }
  await reaped;
  launcherGone = true;
  reap();
  // A container the launcher reaped but died before saying so is not ours to wait for: its
  // status file is written or not, but nothing here knows the status. (One that we reaped
  // ourselves, adopted and ended while the launcher's end was still being read, is no longer
  // our child either, but its status is in `adopted`.)
  const ours = new Set(adopted.map((a) => a.pid));
  for (const [pid, k] of known) {
    if (k.status === undefined && !ours.has(pid) && !isChildOfMine(pid)) {
      say(`container ${k.key} (pid ${pid}) ended before its launcher, which left no word of its status`);
      known.delete(pid);
    }
  }
  settleAdopted();
  // Adopted workloads still running keep us here (the reaper's SIGCHLD handler does the rest).
  await new Promise<never>(() => {});
  return 0;
}

/** Is `pid` our child (running, or ended and not reaped yet)? */
function isChildOfMine(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ')'.
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === process.pid;
  } catch {
    return false;
  }
}
