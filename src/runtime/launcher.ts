// `ucr __launcher SOCKET`: the long-lived process pair that starts and waits for every
// container of an agent, so a launch starts the binary once (init stage 2) and no process
// is kept per container. The agent starts it detached (containers outlive an agent that
// dies or restarts; a new agent reconnects to the same socket):
//   the reaper (reaper.ts; titled `__launcher SOCKET`): a child subreaper, native code forked
//     from the agent, that only starts the launcher and, should the launcher die, adopts its
//     containers and writes their statuses;
//   the launcher (`__launcher --serve SOCKET`, here): the socket, the launches, a few init
//     stages started ahead, the exit reports. It tells the reaper which pid is which
//     container (fd 3), so nothing is lost if it is killed.
// Both exit once no container runs and no agent is connected (agents disconnect when idle).
// (Over 400 lines: the serve loop, its warm pool of stage 2s and the agent's client speak one
// protocol and are kept together; the reaper and the record writes are apart, reaper.ts and
// records.ts.)
//
// Protocol: newline-delimited JSON over a unix socket. The launcher greets each connection
// with {hello: pid, running, exits, acks} (how many containers it runs; the exit reports it
// could not write to disk yet); an agent sends nothing before that, so nothing is lost to a
// launcher on its way out. Request {id, spec} (a LaunchSpec file path); {id, accepted} as soon
// as it is read (acks: a request the launcher died without accepting was not started, and the
// agent gives it to a new launcher); reply {id, pid} once the workload runs, or {id, error} if
// setup failed; to every connection {container, status, pid} when a workload ends, and
// {running: 0} when the last one has.
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, relative } from "node:path";
import { onChildExit, pipe, spawnProcess } from "../ffi/spawn.ts";
import {
  AT_FDCWD,
  O_APPEND,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_PATH,
  O_WRONLY,
  close,
  openat,
  setCloexec,
  setParentDeathSignal,
} from "../ffi/libc.ts";
import { prepareChild } from "../ffi/child.ts";
import { startForked } from "./forked.ts";
import { SETUP_WORKER } from "./setup-lane.ts";
import { lazyWorker } from "../threads/pool.ts";
import { WorkerError } from "../threads/rpc.ts";
import { openDir, openInRoot } from "./inroot.ts";
import { Records } from "./records.ts";
import { dropBinaryPages, giveBackMemory } from "../util/idle-memory.ts";
import { ReaperRecord } from "./reaper.c.ts";
import { reaperAlive, reaperRecord, startReaper } from "./reaper.ts";
import { pidNamespaceOf, selfCommand, type LaunchSpec } from "./spec.ts";
import type { SwitchboardIo } from "./switchboard.ts";

/** The launcher exits this long after its last container and agent connection are gone. */
const IDLE_EXIT_MS = 2_000;
/**
 * An agent closes its connection after this long with no container of its own running, and
 * the launcher then exits: an agent idle for a minute is back to its own footprint. Until
 * then the launcher stays, quiet (QUIET_MS), so that a launch after a pause does not pay a
 * new launcher's start (a start of the binary and a compile: ~40-100 ms against ~7-30 on
 * the VMs measured) and a burst after a pause finds its code warm.
 */
const CLIENT_IDLE_MS = 60_000;
/**
 * With nothing running (an agent connected), the launcher goes quiet after this long, as
 * the agent does when its worker threads stop: the setup lane stops (its threads and native
 * code), and the launcher gives memory back (giveBackMemory; the code pages it drops come
 * back as the next launch runs, ~15 ms more for it here). Every ucr process together
 * (the agent, this launcher, its native reaper at 0.1 MiB), measured 10-30 s after the last
 * launch: 56.8-61.0 MiB PSS after bursts of ten clients; 43-48 for the agent alone once the
 * launcher has gone.
 */
const QUIET_MS = 10_000;
/** fd 3 of the launcher: where it tells the reaper about its children. */
const REAPER_FD = 3;

export interface LaunchRequest {
  id: number;
  spec: string;
}

export type LaunchReply = { id: number; pid: number } | { id: number; error: string };

/** Sent to every connected agent when a workload ends (after its status file is written, if it could be). */
export interface ExitEvent {
  /** The container's key (its spec's `id`). */
  container: string;
  /** Its raw wait status, as in the status file. */
  status: number;
  /** The workload's pid (as in the launch's reply). */
  pid: number;
}

/** What the launcher sends: its greeting (with how many containers it runs), replies, exit reports, and "running: 0" when its last container has ended. */
type Message =
  | { hello: number; running?: number; exits?: ExitEvent[]; acks?: boolean }
  | { id: number; accepted: true }
  | LaunchReply
  | ExitEvent
  | { running: number };

export async function launcherMain(args: readonly string[]): Promise<number> {
  if (args[0] === "--serve" && args[1] && args.length <= 3) return serve(args[1], args[2] === `--reaper-fd=${REAPER_FD}`);
  if (args.length === 1 && args[0] && !args[0].startsWith("-")) {
    // Forks the reaper (which starts the launcher) and is done: the reaper outlives this process.
    startReaper(reaperStart(args[0], 2));
    return 0;
  }
  process.stderr.write("ucr __launcher: started by the agent; it is not for direct use\n");
  return 2;
}

function say(message: string): void {
  try {
    process.stderr.write(`ucr launcher[${process.pid}] ${new Date().toISOString()}: ${message}\n`);
  } catch {
    // nowhere left to say it
  }
}

/** Writes whole lines to a Bun socket, keeping what the kernel did not take until it drains. */
class Outbox {
  private queued = "";
  constructor(private readonly socket: Bun.Socket<unknown>) {}
  /** What the kernel took at once (-1: the connection is dead and took nothing; 0 also when queued behind earlier lines). */
  send(line: string): number {
    if (this.queued !== "") {
      this.queued += line;
      return 0;
    }
    const n = this.socket.write(line);
    if (n < Buffer.byteLength(line)) this.queued = Buffer.from(line).subarray(Math.max(0, n)).toString();
    return n;
  }
  drain(): void {
    if (this.queued === "") return;
    const rest = this.queued;
    this.queued = "";
    this.send(rest);
  }
}

/** A container's process being started: forked and set up from here, or an init stage 2 started for it. */
interface Stage {
  pid: number;
  /** What it writes on its fd 3 until EOF (exec closes it): setup errors, if any. */
  report: Promise<string>;
  /** Its raw wait status once it ended. */
  status?: number;
  onExit?: (status: number) => void;
  /** A container with a switchboard: the launcher's ends of its stdio (a terminal comes on `console`). */
  io?: { console?: number; stdin?: number; stdout?: number; stderr?: number };
}

/**
 * A sandbox file (the workload's stdout or stderr) opened for appending through no link: a
 * nested container's sandbox sits inside its parent's, whose workload may have put a link on
 * the way since the agent made it (a link to a host directory would have us, root, create and
 * append to a file there). Reached from the top-level sandbox with every link refused.
 */
export function openSandboxFile(sandbox: LaunchSpec["sandbox"], path: string): number {
  if (dirname(path) !== sandbox.host) throw new Error(`${path} is not in the sandbox ${sandbox.host}`);
  let dir: number;
  if (sandbox.within === undefined) {
    dir = openat(AT_FDCWD, sandbox.host, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  } else {
    const top = openDir(sandbox.within);
    try {
      dir = openInRoot(top, relative(sandbox.within, sandbox.host), { noLinks: true, flags: O_PATH | O_DIRECTORY }).fd;
    } finally {
      close(top);
    }
  }
  try {
    return openat(dir, basename(path), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o640);
  } finally {
    close(dir);
  }
}

/** fd 4 of a stage 2 that makes a terminal: where it sends the master (SCM_RIGHTS). */
export const CONSOLE_FD = 4;

async function serve(socketPath: string, withReaper: boolean): Promise<number> {
  setParentDeathSignal(0);
  // Whatever goes wrong in one launch or one connection must not end the others: report it.
  process.on("uncaughtException", (err) => say(`unexpected error (carrying on): ${err.stack ?? err}`));
  process.on("unhandledRejection", (err) => say(`unexpected rejection (carrying on): ${(err as Error)?.stack ?? err}`));

  let reaper: number | undefined;
  if (withReaper) {
    reaper = REAPER_FD;
    setCloexec(REAPER_FD);
  } else {
    say("no reaper: containers' statuses are lost if this process is killed");
  }
  const tellReaper = (make: () => Buffer) => {
    if (reaper === undefined) return;
    let record: Buffer;
    try {
      record = make();
    } catch (err) {
      say(`not told to the reaper: ${(err as Error).message}`);
      return;
    }
    try {
      // Whole records only: a write over PIPE_BUF may be cut short, the rest follows.
      for (let at = 0; at < record.length; ) at += writeSync(reaper, record, at);
    } catch (err) {
      say(`the reaper is gone (${(err as Error).message}); going on without it`);
      closeSync(reaper);
      reaper = undefined;
    }
  };

  const devnull = openSync("/dev/null", "r+");
  const records = new Records(say);
  const connections = new Map<Bun.Socket<{ buffer: string; out: Outbox }>, Outbox>();
  const broadcast = (m: Message) => {
    const line = `${JSON.stringify(m)}\n`;
    for (const out of connections.values()) out.send(line);
  };
  /** Exit reports whose status file is not on disk yet, for agents that connect later. */
  const unwrittenStatus = new Map<string, ExitEvent>();

  let children = 0;
  /** Switchboards still serving a container's I/O (one outlives its workload until its readers have all of its output). */
  let switchboards = 0;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let listener: Bun.UnixSocketListener<{ buffer: string; out: Outbox }> | undefined;
  let boundIno: number | undefined;
  /** Something runs, or a status is not written yet (connections aside). */
  const busy = () => children !== 0 || switchboards !== 0 || records.size !== 0;
  const idle = () => {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = undefined;
    if (busy()) return;
    idleTimer = connections.size === 0 ? setTimeout(quit, IDLE_EXIT_MS) : setTimeout(quiet, QUIET_MS);
  };
  const quiet = async () => {
    if (busy()) return;
    // The lane first: its thread's last steps run code whose pages would come back.
    await stopLane();
    if (busy()) return;
    try {
      say(`idle: nothing runs; ${giveBackMemory().toFixed(1)} MiB of memory given back`);
    } catch (err) {
      say(`idle: could not give back the binary's pages: ${(err as Error).message}`);
    }
    // Pages come back while quiet (the runtime's own timers run code: measured 4-8 MiB within
    // seconds): they are dropped again every QUIET_MS until something runs.
    clearInterval(quietTimer);
    quietTimer = setInterval(() => {
      if (busy()) return clearInterval(quietTimer);
      try {
        dropBinaryPages();
      } catch {
        clearInterval(quietTimer); // said at the first pass
      }
    }, QUIET_MS);
    quietTimer.unref();
  };
  let quietTimer: ReturnType<typeof setInterval> | undefined;
  // Not while a status is not written yet: an agent that comes later is to hear it from us.
  const quit = () => {
    if (busy() || connections.size !== 0) return;
    // Only our own socket file: a later launcher may have bound the path since.
    try {
      if (boundIno !== undefined && statSync(socketPath).ino === boundIno) rmSync(socketPath, { force: true });
    } catch {
      // already gone
    }
    listener?.stop(true);
    process.exit(0);
  };

  /** A Stage for the process `pid`, whose fd 3 is read from `reportR`; its exit is recorded on it. */
  const track = (pid: number, reportR: number, io?: Stage["io"]): Stage => {
    const stage: Stage = { pid, report: readReport(reportR), ...(io ? { io } : {}) };
    onChildExit(pid, (status) => {
      stage.status = status;
      stage.onExit?.(status);
    });
    return stage;
  };

  /**
   * A container's process with the sandbox's stdout and stderr and no stdin, started by
   * `start` (given its stdio and the write end of its fd 3).
   */
  const startWithSandboxIo = async (
    spec: LaunchSpec,
    start: (stdio: [number, number, number], reportW: number) => number | Promise<number>,
  ): Promise<Stage> => {
    let out: number | undefined, err: number | undefined, reportR: number | undefined, reportW: number | undefined;
    try {
      out = openSandboxFile(spec.sandbox, spec.stdout!);
      err = openSandboxFile(spec.sandbox, spec.stderr!);
      [reportR, reportW] = pipe();
      const stage = track(await start([devnull, out, err], reportW), reportR);
      reportR = undefined;
      return stage;
    } finally {
      closeQuietly(out);
      closeQuietly(err);
      closeQuietly(reportW);
      closeQuietly(reportR);
    }
  };

  /**
   * The second setup lane (setup-lane.ts): off, starting (its thread compiles the native code),
   * ready, busy with a setup, or stopping. Started by the first launch that finds another
   * queued behind it; stopped when the launcher goes quiet (stopLane), its forking thread
   * (native code the worker compiled, which nothing outside the worker can end) first.
   */
  const lane = lazyWorker(SETUP_WORKER, "setup", 0);
  lane.unref();
  let laneState: "off" | "starting" | "ready" | "busy" | "stopping" = "off";
  /** Ends the lane, when nothing runs: the worker ends its forking thread and frees its code, then the worker stops. */
  const stopLane = async (): Promise<void> => {
    if (laneState !== "ready") return;
    laneState = "stopping";
    try {
      await lane.call("stop");
    } catch (err) {
      // Its thread may still be in the native code: the worker stays (it recompiles at its next setup).
      laneState = lane.running ? "ready" : "off";
      say(`the second setup lane did not stop (${(err as Error).message}); it stays`);
      return;
    }
    await lane.stop();
    laneState = "off";
  };
  /** Is the lane ready for a setup now? Starts it if it is off (ready for a later one). */
  const laneFree = (): boolean => {
    if (laneState === "off") {
      laneState = "starting";
      lane.call("prepare").then(
        () => {
          if (laneState === "starting") laneState = "ready";
        },
        (err: Error) => {
          laneState = "off";
          say(`the second setup lane did not start (${err.message}); setting up one container at a time`);
        },
      );
    }
    return laneState === "ready";
  };
  const forkInLane = async (spec: LaunchSpec, stdio: [number, number, number], report: number): Promise<number> => {
    laneState = "busy";
    try {
      return (await lane.call("fork", { spec, stdio, report })).pid;
    } catch (err) {
      // The lane's thread itself failed (not the setup, whose errors keep their own names; a
      // thread that never idles fails only by a fault of the runtime): this launch is set up
      // here instead. A process the lane was setting up keeps waiting on its socket, which is
      // the launcher's, and ends (status 1) when the launcher does.
      if (!(err instanceof WorkerError && err.name === "WorkerError")) throw err;
      say(`the second setup lane failed (${err.message}); setting up ${spec.id} on the launcher's thread`);
      return startForked(spec, stdio, report);
    } finally {
      // A worker that died (and was restarted) starts "off" again: it is to answer "prepare" first.
      laneState = lane.running && laneState === "busy" ? "ready" : "off";
    }
  };

  /**
   * A top-level container: its process forked, set up from here (forked.ts), or in the setup
   * lane when `inLane`.
   */
  const startFork = (spec: LaunchSpec, inLane: boolean): Promise<Stage> =>
    startWithSandboxIo(spec, (stdio, reportW) => (inLane ? forkInLane(spec, stdio, reportW) : startForked(spec, stdio, reportW)));

  /** An init stage 2 started for this launch (a nested container). */
  const startCold = (spec: LaunchSpec, specPath: string): Promise<Stage> =>
    startWithSandboxIo(spec, (stdio, reportW) =>
      spawnProcess({ argv: selfCommand("__init", "--pid1", specPath), env: {}, fds: [...stdio, reportW], pidns: pidNamespaceOf(spec) }),
    );

  /**
   * A stage 2 whose stdio the launcher keeps (tty_info, a session): pipes for stdin, stdout and
   * stderr, or for a terminal a socket on its fd 4 where it sends the master it makes inside
   * the container (its early errors still go to the sandbox files). Always started cold.
   */
  const startSwitched = (spec: LaunchSpec, specPath: string): Stage => {
    const child: number[] = [];
    const ours: number[] = [];
    try {
      const [reportR, reportW] = pipe();
      ours.push(reportR);
      child.push(reportW);
      let fds: number[];
      const io: NonNullable<Stage["io"]> = {};
      if (spec.io!.tty) {
        const [mine, theirs] = socketPair();
        ours.push(mine);
        child.push(theirs);
        io.console = mine;
        const out = openSandboxFile(spec.sandbox, spec.stdout!);
        child.push(out);
        const err = openSandboxFile(spec.sandbox, spec.stderr!);
        child.push(err);
        fds = [devnull, out, err, reportW, theirs];
      } else {
        const [inR, inW] = pipe();
        const [outR, outW] = pipe();
        const [errR, errW] = pipe();
        ours.push(inW, outR, errR);
        child.push(inR, outW, errW);
        Object.assign(io, { stdin: inW, stdout: outR, stderr: errR });
        fds = [inR, outW, errW, reportW];
      }
      const pid = spawnProcess({ argv: selfCommand("__init", "--pid1", specPath), env: {}, fds, pidns: pidNamespaceOf(spec) });
      ours.length = 0;
      return track(pid, reportR, io);
    } finally {
      for (const fd of [...child, ...ours]) closeQuietly(fd);
    }
  };

  /** The switchboard of a stage that now runs its workload (its terminal was sent before exec). */
  const openSwitchboard = (spec: LaunchSpec, stage: Stage): void => {
    const io = stage.io!;
    stage.io = undefined;
    let fds: SwitchboardIo;
    const opened: number[] = [];
    try {
      if (io.console !== undefined) {
        const got = receiveFd(io.console);
        closeQuietly(io.console);
        if (!got) throw new Error("the init stage sent no terminal");
        opened.push(got.fd);
        // The launcher's ends are pipes (Bun cannot write a terminal without blocking): a
        // pump thread each way between them and the master.
        const [inR, inW] = pipe();
        opened.push(inR, inW);
        const [outR, outW] = pipe();
        opened.push(outR, outW);
        startPump(inR, dupCloexec(got.fd));
        opened.splice(opened.indexOf(inR), 1);
        startPump(dupCloexec(got.fd), outW);
        opened.splice(opened.indexOf(outW), 1);
        fds = { master: got.fd, stdin: inW, stdout: outR };
      } else {
        fds = { stdin: io.stdin!, stdout: io.stdout!, stderr: io.stderr! };
        opened.push(io.stdin!, io.stdout!, io.stderr!);
      }
      // Mesos' logger keeps all of the output in the sandbox; if a file cannot be had, readers still get it.
      const files: { stdout?: number; stderr?: number } = {};
      for (const name of io.console !== undefined ? (["stdout"] as const) : (["stdout", "stderr"] as const)) {
        try {
          files[name] = openSandboxFile(spec.sandbox, spec[name]!);
          opened.push(files[name]);
        } catch (err) {
          say(`container ${spec.id}: its ${name} is not kept in its sandbox: ${(err as Error).message}`);
        }
      }
      Switchboard.open(fds, {
        id: spec.id,
        runtimeDir: spec.io!.runtimeDir,
        waitForReader: spec.io!.waitForReader === true,
        files,
        say,
        onEnd: () => {
          switchboards--;
          idle();
        },
      });
      switchboards++;
    } catch (err) {
      for (const fd of opened) closeQuietly(fd);
      throw err;
    }
  };

  const dropIo = (stage: Stage) => {
    for (const fd of Object.values(stage.io ?? {})) closeQuietly(fd);
    stage.io = undefined;
  };

  /** Records a workload's end (status file, or the reaper if that fails); the event for agents. */
  const exited = (spec: LaunchSpec, pid: number, status: number): ExitEvent => {
    children--;
    const event: ExitEvent = { container: spec.id, status, pid };
    const written = records.write(spec.id, spec.statusFile, `${status}\n`, () => {
      if (unwrittenStatus.get(spec.id) === event) unwrittenStatus.delete(spec.id);
      tellReaper(() => reaperRecord(ReaperRecord.DONE, pid));
      idle();
    });
    if (!written) {
      unwrittenStatus.set(spec.id, event);
      tellReaper(() => reaperRecord(ReaperRecord.EXITED, pid, status));
    }
    idle();
    return event;
  };

  const reportExit = (event: ExitEvent) => {
    broadcast(event);
    if (children === 0) broadcast({ running: 0 });
  };

  /**
   * One launch; `reply` is called once, and a workload's exit is reported only after it.
   * `queued`: another request is already waiting behind this one (then the setup lane may take this one).
   */
  async function launch(req: LaunchRequest, reply: (r: LaunchReply) => void, queued: boolean): Promise<void> {
    let spec: LaunchSpec;
    let stage: Stage;
    try {
      // A small local file: read at once, not through Bun's thread pool.
      spec = JSON.parse(readFileSync(req.spec, "utf8")) as LaunchSpec;
      if (spec.io) {
        // Loaded with the first container that needs it: an ordinary launch never does.
        await loadSwitchboard();
        stage = startSwitched(spec, req.spec);
      } else if (spec.parentPid === undefined && !spec.debug) {
        stage = await startFork(spec, queued && laneFree());
      } else {
        stage = await startCold(spec, req.spec);
      }
    } catch (e) {
      return reply({ id: req.id, error: `container init failed: ${(e as Error).message}` });
    }
    const { pid } = stage;
    children++;
    if (idleTimer) clearTimeout(idleTimer);
    tellReaper(() => reaperRecord(ReaperRecord.STARTED, pid, 0, spec.statusFile, spec.id));
    let outcome: "pending" | "running" | "failed" = "pending";
    let held: ExitEvent | undefined;
    const ended = new Promise<void>((resolve) => {
      const onExit = (status: number) => {
        const event = exited(spec, pid, status);
        if (outcome === "running") reportExit(event);
        else if (outcome === "pending") held = event;
        resolve();
      };
      if (stage.status !== undefined) onExit(stage.status);
      else stage.onExit = onExit;
    });
    // Before the reply: the agent may read the pid file as soon as it hears the workload runs.
    records.write(spec.id, spec.pidFile, `${pid}\n`);
    // Stage 2 reports setup errors on fd 3; exec closes it (close-on-exec): EOF means running.
    const report = (await stage.report).trim();
    if (report === "" && stage.io) {
      try {
        openSwitchboard(spec, stage);
      } catch (err) {
        dropIo(stage);
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
        outcome = "failed";
        await ended;
        return reply({ id: req.id, error: `container init failed: cannot serve its I/O: ${(err as Error).message}` });
      }
    }
    if (report !== "") {
      dropIo(stage);
      outcome = "failed";
      await ended;
      return reply({ id: req.id, error: report });
    }
    outcome = "running";
    reply({ id: req.id, pid });
    if (held) reportExit(held);
  }

  rmSync(socketPath, { force: true });
  listener = Bun.listen<{ buffer: string; out: Outbox }>({
    unix: socketPath,
    socket: {
      open(s) {
        s.data = { buffer: "", out: new Outbox(s) };
        connections.set(s, s.data.out);
        if (idleTimer) clearTimeout(idleTimer);
        // With the exit reports not written to disk yet: they are known to the agent once it is greeted.
        const hello: Message = { hello: process.pid, running: children, exits: [...unwrittenStatus.values()], acks: true };
        s.data.out.send(`${JSON.stringify(hello)}\n`);
      },
      data(s, chunk) {
        s.data.buffer += chunk.toString();
        let nl: number;
        while ((nl = s.data.buffer.indexOf("\n")) >= 0) {
          const line = s.data.buffer.slice(0, nl);
          s.data.buffer = s.data.buffer.slice(nl + 1);
          let req: LaunchRequest;
          try {
            req = JSON.parse(line) as LaunchRequest;
            if (typeof req.id !== "number" || typeof req.spec !== "string") throw new Error("not a launch request");
          } catch (err) {
            say(`ignoring a malformed request (${(err as Error).message}): ${line.slice(0, 200)}`);
            continue;
          }
          s.data.out.send(`${JSON.stringify({ id: req.id, accepted: true } satisfies Message)}\n`);
          let replied = false;
          const reply = (r: LaunchReply) => {
            if (replied) return;
            replied = true;
            s.data.out.send(`${JSON.stringify(r)}\n`);
          };
          launch(req, reply, s.data.buffer.includes("\n")).catch((e: Error) =>
            reply({ id: req.id, error: `container init failed: ${e.message}` }),
          );
        }
      },
      drain(s) {
        s.data.out.drain();
      },
      close(s) {
        connections.delete(s);
        idle();
      },
      error() {
        // a broken agent connection is the agent's business
      },
    },
  });
  boundIno = statSync(socketPath).ino;
  idle();
  // The forked containers' native code, compiled now rather than in the first launch.
  setTimeout(() => {
    try {
      prepareChild();
    } catch (err) {
      say(`cannot prepare the container process's native code: ${(err as Error).message}`);
    }
  }, 0);
  await new Promise<never>(() => {});
  return 0;
}

let Switchboard: typeof import("./switchboard.ts").Switchboard;
let socketPair: typeof import("../ffi/tty.ts").socketPair;
let receiveFd: typeof import("../ffi/tty.ts").receiveFd;
let dupCloexec: typeof import("../ffi/tty.ts").dupCloexec;
let startPump: typeof import("../ffi/pump.ts").startPump;

/** The switchboard's modules, loaded with the first container that has one. */
async function loadSwitchboard(): Promise<void> {
  if (Switchboard) return;
  const [sb, tty, pump] = await Promise.all([import("./switchboard.ts"), import("../ffi/tty.ts"), import("../ffi/pump.ts")]);
  ({ socketPair, receiveFd, dupCloexec } = tty);
  ({ startPump } = pump);
  Switchboard = sb.Switchboard;
}

/** Everything a container's process (or init stage) writes on its fd 3 until EOF, then the fd closed. */
async function readReport(fd: number): Promise<string> {
  let text = "";
  try {
    for await (const chunk of Bun.file(fd).stream()) text += Buffer.from(chunk).toString();
  } catch (err) {
    text += `container init failed: cannot read the init stage's report: ${(err as Error).message}`;
  } finally {
    closeQuietly(fd);
  }
  return text;
}

function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** What a request waits for when its launcher went away before reading it: it is sent again. */
const AGAIN = Symbol("again");

/** How many exit reports an agent's client remembers (for exitStatus), newest kept. */
const REMEMBERED_EXITS = 10_000;

/**
 * Is the launcher of `socketPath`, or its reaper, alive? Then a workload that has ended still
 * gets its status file written by one of them, however slow a loaded machine makes it.
 */
export function launcherAlive(socketPath: string): boolean {
  if (reaperAlive(`${socketPath}.lock`)) return true;
  // Without its lock (a runtime dir it could not write), the reaper is still told by its
  // title: NUL-separated as an argv, or one line where it took the environment's room too.
  const patterns = [`__launcher\0--serve\0${socketPath}\0`, `__launcher\0${socketPath}\0`, `__launcher ${socketPath}\0`];
  for (const name of readdirSync("/proc")) {
    if (name.charCodeAt(0) > 57) continue; // not a pid
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "latin1");
      if (patterns.some((p) => cmdline.includes(p))) return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

/**
 * How the launcher of `socketPath` and its reaper are started: the reaper titled as it was
 * when it was a start of the binary of its own (`ucr __launcher SOCKET`), holding
 * `SOCKET.lock`, and writing to `logFd` as the launcher does.
 */
export function reaperStart(socketPath: string, logFd: number) {
  return {
    launcher: selfCommand("__launcher", "--serve", socketPath, `--reaper-fd=${REAPER_FD}`),
    title: selfCommand("__launcher", socketPath),
    lockPath: `${socketPath}.lock`,
    logFd,
  };
}

/**
 * The agent's side: one connection to the launcher, started if none answers. It connects
 * at once to a launcher that is already there (one that outlived an agent restart), so
 * exit reports of recovered containers, and those the launcher could not write down, reach
 * this agent too; and it closes the connection once the launcher has had no container
 * running for a while (CLIENT_IDLE_MS), so an idle launcher can exit.
 */
export class LauncherClient {
  private socket: Bun.Socket<undefined> | undefined;
  private connecting: Promise<Bun.Socket<undefined>> | undefined;
  /** Whether the connection under way starts a launcher if none answers. */
  private connectingStarts = false;
  private out: Outbox | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { done: (reply: LaunchReply | typeof AGAIN) => void; accepted: boolean }>();
  /** Whether the current connection's launcher acknowledges each request it reads. */
  private acks = false;
  /** Containers the launcher said it runs (from its greeting, launches and its "running" reports). */
  private launcherRunning = 0;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Exits heard, by container key (bounded). */
  private readonly exits = new Map<string, ExitEvent>();

  constructor(
    readonly socketPath: string,
    /** Told when a workload ends: its container's key and raw wait status. */
    private readonly onExit: (container: string, status: number) => void = () => {},
  ) {
    if (existsSync(socketPath)) void this.attach();
  }

  /** Connects to a launcher that is already running (never starts one); false if none answers. */
  async attach(): Promise<boolean> {
    if (this.socket) return true;
    try {
      await this.connect(false);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Starts the launcher (if none runs) and connects, in the background: called when a launch
   * begins, so that an idle agent's launcher starts while the image is pulled and mounted,
   * not after.
   */
  prepare(): void {
    if (!this.socket) this.connect().catch(() => {});
  }

  /** The exit status the launcher reported for `container`, if this client heard it. */
  exitStatus(container: string): number | undefined {
    return this.exits.get(container)?.status;
  }

  /** The exit status the launcher reported for `container` running as `pid` (not an earlier one of that name). */
  exitStatusOf(container: string, pid: number): number | undefined {
    const e = this.exits.get(container);
    return e?.pid === pid ? e.status : undefined;
  }

  /** Resolves once the launcher has greeted us; rejects if the connection ends first. */
  private connectOnce(): Promise<Bun.Socket<undefined>> {
    return new Promise((resolve, reject) => {
      let buffer = "";
      let greeted = false;
      Bun.connect({
        unix: this.socketPath,
        socket: {
          data: (s, chunk) => {
            buffer += chunk.toString();
            let nl: number;
            while ((nl = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, nl);
              buffer = buffer.slice(nl + 1);
              let message: Message;
              try {
                message = JSON.parse(line) as Message;
              } catch {
                continue;
              }
              try {
                this.handle(s, message, () => {
                  greeted = true;
                  resolve(s);
                });
              } catch {
                // the agent's exit handler failed; the next message still counts
              }
            }
          },
          drain: () => this.out?.drain(),
          close: (s) => {
            if (!greeted) reject(new Error("the launcher closed the connection before greeting"));
            this.forget(s);
          },
          error: () => {},
        },
      }).catch(reject);
    });
  }

  private handle(s: Bun.Socket<undefined>, message: Message, greeted: () => void): void {
    if ("hello" in message) {
      this.launcherRunning = message.running ?? 0;
      this.acks = message.acks === true;
      for (const e of message.exits ?? []) this.remember(e);
      greeted();
      for (const e of message.exits ?? []) this.onExit(e.container, e.status);
    } else if ("container" in message) {
      this.remember(message);
      this.onExit(message.container, message.status);
    } else if ("running" in message) {
      this.launcherRunning = message.running;
      if (this.socket === s) this.checkIdle();
    } else if ("accepted" in message) {
      const w = this.waiting.get(message.id);
      if (w) w.accepted = true;
    } else {
      if ("pid" in message) this.launcherRunning = Math.max(1, this.launcherRunning);
      this.waiting.get(message.id)?.done(message);
      this.waiting.delete(message.id);
    }
  }

  private remember(e: ExitEvent): void {
    this.exits.delete(e.container);
    this.exits.set(e.container, e);
    if (this.exits.size > REMEMBERED_EXITS) this.exits.delete(this.exits.keys().next().value!);
  }

  /** Connects to a running launcher, or (if `start`) starts one (detached) and connects to it. */
  private async connect(start = true): Promise<Bun.Socket<undefined>> {
    if (this.socket) return this.socket;
    // An attach in progress may find no launcher; a launch then starts one.
    if (start && this.connecting && !this.connectingStarts) await this.connecting.catch(() => {});
    if (this.socket) return this.socket;
    if (this.connecting && (this.connectingStarts || !start)) {
      await this.connecting;
      return this.socket!;
    }
    this.connectingStarts = start;
    this.connecting = (async () => {
      try {
        if (existsSync(this.socketPath)) return await this.connectOnce();
      } catch (err) {
        // stale socket, or a launcher on its way out: start a new one below
        if (!start) throw err;
      }
      if (!start) throw new Error("no launcher is running");
      // Not the agent's stderr: the launcher outlives the agent, and whoever reads the
      // agent's output would otherwise wait for it too.
      const log = openSync(`${this.socketPath}.log`, "a", 0o640);
      try {
        startReaper(reaperStart(this.socketPath, log));
      } finally {
        closeSync(log);
      }
      // A new launcher listens ~20-40 ms after the fork (a start of the binary, a compile):
      // looked for every millisecond for its first 100, then every 5, for 2 s in all.
      for (const until = performance.now() + 2_000; performance.now() < until; ) {
        await Bun.sleep(performance.now() + 1_900 > until ? 1 : 5);
        try {
          if (existsSync(this.socketPath)) return await this.connectOnce();
        } catch {
          // not listening yet
        }
      }
      throw new Error("the container launcher did not start");
    })()
      .then((socket) => {
        this.socket = socket;
        this.out = new Outbox(socket as Bun.Socket<unknown>);
        socket.unref();
        this.checkIdle();
        return socket;
      })
      .finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** The connection `socket` is over (if it is the current one): what waits on it has gone away. */
  private forget(socket: Bun.Socket<undefined>): boolean {
    if (this.socket !== socket) return false;
    this.socket = undefined;
    this.out = undefined;
    clearTimeout(this.idleTimer);
    // Those it accepted may have started: how they ended is for recovery and the exit reports.
    // Those it never read were not: they go to the next launcher.
    for (const [id, w] of this.waiting) w.done(this.acks && !w.accepted ? AGAIN : { id, error: "the launcher went away" });
    this.waiting.clear();
    return true;
  }

  /** Forgets a dead connection now, before its close is heard. */
  private dropConnection(socket: Bun.Socket<undefined>): void {
    if (this.forget(socket)) socket.terminate();
  }

  /** Closes the connection once the launcher has run nothing for a while: it may then exit. */
  private checkIdle(): void {
    clearTimeout(this.idleTimer);
    if (!this.socket || this.launcherRunning > 0 || this.waiting.size > 0) return;
    const socket = this.socket;
    this.idleTimer = setTimeout(() => {
      if (this.socket === socket && this.launcherRunning === 0 && this.waiting.size === 0) socket.end();
    }, CLIENT_IDLE_MS);
    this.idleTimer.unref();
  }

  async launch(specPath: string, again = false): Promise<LaunchReply> {
    const socket = await this.connect();
    clearTimeout(this.idleTimer);
    const id = this.nextId++;
    const reply = new Promise<LaunchReply | typeof AGAIN>((done) => this.waiting.set(id, { done, accepted: false }));
    socket.ref();
    if (this.out!.send(`${JSON.stringify({ id, spec: specPath } satisfies LaunchRequest)}\n`) < 0) {
      // The launcher died before this request reached it (the connection's end not heard yet):
      // nothing of it was started, so a new launcher gets it.
      this.waiting.delete(id);
      this.dropConnection(socket);
      if (!again) return this.launch(specPath, true);
      return { id, error: "the launcher went away" };
    }
    let r: LaunchReply | typeof AGAIN;
    try {
      r = await reply;
    } finally {
      if (this.waiting.size === 0) socket.unref();
      this.checkIdle();
    }
    if (r !== AGAIN) return r;
    // The launcher went away without having read it: nothing of it was started.
    return again ? { id, error: "the launcher went away" } : this.launch(specPath, true);
  }
}
