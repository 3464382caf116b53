// `ucr __launcher SOCKET`: one long-lived process that does init stage 1's job for every
// container, so a launch starts the binary once (stage 2) instead of twice, and one
// process waits for all workloads instead of one per container. It is detached from the
// agent (containers outlive an agent that dies or restarts; a new agent reconnects to
// the same socket) and exits by itself once it has no containers and no agent for a while.
//
// Protocol: newline-delimited JSON over a unix socket. Request {id, spec} (a LaunchSpec
// file path); reply {id, pid} once the workload runs, or {id, error} if setup failed.
import { closeSync, existsSync, openSync, rmSync } from "node:fs";
import { setParentDeathSignal } from "../ffi/libc.ts";
import { spawnStage2, spawnWarmStage2, waitStatus } from "./init.ts";
import type { LaunchSpec } from "./spec.ts";
import { writeStateFile } from "./state.ts";

const IDLE_EXIT_MS = 10_000;
/** When the next warm stage 2 starts: after the workload's exit is reported, or its exec. */
const WARM_AFTER_EXIT_MS = 2;
const WARM_AFTER_EXEC_MS = 25;

export interface LaunchRequest {
  id: number;
  spec: string;
}

export type LaunchReply = { id: number; pid: number } | { id: number; error: string };

/** Sent to every connected agent when a workload ends (after its status file is written). */
export interface ExitEvent {
  /** The container's key (its spec's `id`). */
  container: string;
  /** Its raw wait status, as in the status file. */
  status: number;
}

export async function launcherMain(args: readonly string[]): Promise<number> {
  const socketPath = args[0];
  if (!socketPath) {
    process.stderr.write("ucr __launcher: started by the agent; it is not for direct use\n");
    return 2;
  }
  setParentDeathSignal(0);
  rmSync(socketPath, { force: true });

  let children = 0;
  let clients = 0;
  const connected = new Set<Bun.Socket<{ buffer: string }>>();
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const idle = () => {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = undefined;
    if (children === 0 && clients === 0) idleTimer = setTimeout(() => process.exit(0), IDLE_EXIT_MS);
  };

  // One stage 2 started ahead, for the next top-level container: a launch then skips the
  // start of the binary (most of its time). It sits idle in its own (empty) PID namespace
  // and exits at EOF on stdin, so it dies with the launcher.
  let warm: ReturnType<typeof spawnWarmStage2> | undefined;
  const prepare = () => {
    if (warm) return;
    try {
      warm = spawnWarmStage2();
      // Not ours to wait for until it has a container.
      warm.unref();
    } catch (e) {
      process.stderr.write(`ucr launcher: cannot start a warm init stage: ${(e as Error).message}\n`);
    }
  };

  /** Hands `specPath` to the warm stage 2, if there is a live one; undefined: start one cold. */
  const takeWarm = (specPath: string): Bun.Subprocess | undefined => {
    const w = warm;
    warm = undefined;
    if (!w || w.exitCode !== null || w.signalCode !== null) return undefined;
    try {
      w.stdin.write(`${specPath}\n`);
      w.stdin.end();
    } catch {
      w.kill("SIGKILL"); // died under us: this launch goes cold
      return undefined;
    }
    w.ref();
    return w;
  };

  async function launch(req: LaunchRequest): Promise<LaunchReply> {
    let spec: LaunchSpec;
    let out: number | undefined;
    let err: number | undefined;
    let child: Bun.Subprocess;
    try {
      spec = (await Bun.file(req.spec).json()) as LaunchSpec;
      // A warm stage waits in a new PID namespace: for top-level containers that want one.
      const ready = spec.parentPid === undefined && spec.pidNamespace !== "agent" ? takeWarm(req.spec) : undefined;
      if (ready) {
        child = ready;
      } else {
        out = openSync(spec.stdout!, "a", 0o640);
        err = openSync(spec.stderr!, "a", 0o640);
        child = spawnStage2(spec, req.spec, ["ignore", out, err, "pipe"]);
      }
    } catch (e) {
      return { id: req.id, error: `container init failed: ${(e as Error).message}` };
    } finally {
      if (out !== undefined) closeSync(out);
      if (err !== undefined) closeSync(err);
    }
    children++;
    if (idleTimer) clearTimeout(idleTimer);
    // Before the reply: the agent reads the pid file as soon as it hears the workload runs.
    writeStateFile(spec.pidFile, `${child.pid}\n`);
    let warmSoon: ReturnType<typeof setTimeout> | undefined;
    void child.exited.then(() => {
      const status = waitStatus(child);
      writeStateFile(spec.statusFile, `${status}\n`);
      const event = `${JSON.stringify({ container: spec.id, status } satisfies ExitEvent)}\n`;
      for (const s of connected) s.write(event);
      children--;
      idle();
      if (spec.parentPid === undefined) {
        clearTimeout(warmSoon);
        setTimeout(prepare, WARM_AFTER_EXIT_MS);
      }
    });
    // Stage 2 reports setup errors on fd 3; exec closes it (close-on-exec): EOF means running.
    const report = (await Bun.file((child.stdio as unknown as number[])[3]!).text()).trim();
    // The next warm stage 2 starts once this launch's hot path is over: just after its
    // workload's exit has been reported, or WARM_AFTER_EXEC_MS after the exec if it runs on.
    // Started at once, the binary's start (~10 ms of CPU, and fresh memory the hypervisor
    // faults in, which stalls the vCPU whatever the guest's scheduler says: SCHED_IDLE for it
    // measured no better) delayed the exit report of a short workload: WAIT_CONTAINER after
    // a `/bin/true` took 1.3-2.0 ms median and ~6 ms p90, against 0.7-1.0 and 1.5 ms.
    if (spec.parentPid === undefined) warmSoon = setTimeout(prepare, WARM_AFTER_EXEC_MS);
    if (report !== "") {
      await child.exited;
      return { id: req.id, error: report };
    }
    return { id: req.id, pid: child.pid };
  }

  Bun.listen<{ buffer: string }>({
    unix: socketPath,
    socket: {
      open(s) {
        s.data = { buffer: "" };
        connected.add(s);
        clients++;
        if (idleTimer) clearTimeout(idleTimer);
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
          } catch {
            continue;
          }
          void launch(req).then((reply) => s.write(`${JSON.stringify(reply)}\n`));
        }
      },
      close(s) {
        connected.delete(s);
        clients--;
        idle();
      },
      error() {
        // a broken agent connection is the agent's business
      },
    },
  });
  idle();
  prepare();
  await new Promise<never>(() => {});
  return 0;
}

/** The agent's side: one connection to the launcher, started if none answers. */
export class LauncherClient {
  private socket: Bun.Socket<undefined> | undefined;
  private connecting: Promise<Bun.Socket<undefined>> | undefined;
  private buffer = "";
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: LaunchReply) => void>();

  constructor(
    readonly socketPath: string,
    private readonly command: string[],
    /** Told when a workload ends: its container's key and raw wait status. */
    private readonly onExit: (container: string, status: number) => void = () => {},
  ) {}

  private connectOnce(): Promise<Bun.Socket<undefined>> {
    return Bun.connect({
      unix: this.socketPath,
      socket: {
        data: (_s, chunk) => {
          this.buffer += chunk.toString();
          let nl: number;
          while ((nl = this.buffer.indexOf("\n")) >= 0) {
            const message = JSON.parse(this.buffer.slice(0, nl)) as LaunchReply | ExitEvent;
            this.buffer = this.buffer.slice(nl + 1);
            if ("container" in message) {
              this.onExit(message.container, message.status);
              continue;
            }
            this.waiting.get(message.id)?.(message);
            this.waiting.delete(message.id);
          }
        },
        close: () => {
          this.socket = undefined;
          for (const [id, done] of this.waiting) done({ id, error: "the launcher went away" });
          this.waiting.clear();
        },
        error: () => {},
      },
    });
  }

  /** Connects to a running launcher, or starts one (detached) and connects to it. */
  private async connect(): Promise<Bun.Socket<undefined>> {
    if (this.socket) return this.socket;
    this.connecting ??= (async () => {
      try {
        if (existsSync(this.socketPath)) return await this.connectOnce();
      } catch {
        // stale socket: start a new launcher below
      }
      // Not the agent's stderr: the launcher outlives the agent, and whoever reads the
      // agent's output would otherwise wait for it too.
      const log = openSync(`${this.socketPath}.log`, "a", 0o640);
      const proc = Bun.spawn(this.command, { stdio: ["ignore", "ignore", log], env: {}, detached: true });
      closeSync(log);
      proc.unref();
      for (let i = 0; i < 400; i++) {
        await Bun.sleep(5);
        try {
          if (existsSync(this.socketPath)) return await this.connectOnce();
        } catch {
          // not listening yet
        }
      }
      throw new Error("the container launcher did not start");
    })().finally(() => (this.connecting = undefined));
    this.socket = await this.connecting;
    this.socket.unref();
    return this.socket;
  }

  async launch(specPath: string): Promise<LaunchReply> {
    const socket = await this.connect();
    const id = this.nextId++;
    const reply = new Promise<LaunchReply>((resolve) => this.waiting.set(id, resolve));
    socket.ref();
    socket.write(`${JSON.stringify({ id, spec: specPath } satisfies LaunchRequest)}\n`);
    try {
      return await reply;
    } finally {
      if (this.waiting.size === 0) socket.unref();
    }
  }
}
