// `ucr exec` and `ucr attach`: a command in a running container (a session, Mesos'
// LAUNCH_NESTED_CONTAINER_SESSION) or the I/O of a container with a terminal, from this
// terminal, as `docker exec` and `docker attach` do: output streamed, stdin forwarded, raw
// mode and window sizes for a TTY, and the command's exit status as ours. (Over 400 lines:
// both commands share the stream handling, the terminal and the input forwarding.)
import { encodeRecord, RecordDecoder } from "../mesos/recordio.ts";
import {
  AgentError,
  type ClientOptions,
  UsageError,
  call,
  clientCommand,
  describeFailure,
  expectJson,
  splitClientOptions,
} from "./agent-client.ts";
import { exitCodeOf } from "./client.ts";

export const EXEC_USAGE = "usage: ucr exec [-i] [-t] [-u USER] [-e K=V]... [-w DIR] ID [--] CMD [ARG...]";
const EXEC_HELP = `Runs CMD in the running container ID (nested IDs as parent.child) as a session: in its
namespaces, cgroups, environment and working directory; its output streamed here, its exit status ours.
  -i, --interactive   forward stdin (without it, stdin is empty)
  -t, --tty           a terminal (from the container's own /dev/pts), in raw mode here, resized with this one
  -u, --user USER     run as USER (default: the container's user; the agent needs --switch_user)
  -e, --env K=V       set an environment variable (-e K passes K from here)
  --agent HOST:PORT   the agent (default $UCR_AGENT, else 127.0.0.1:5051); --principal/--secret authenticate`;

export const ATTACH_USAGE = "usage: ucr attach [--no-stdin] ID";
const ATTACH_HELP = `Attaches to the container ID, launched with a terminal (tty_info) or as a session: its output here,
stdin there (unless --no-stdin). With a terminal here, it is put in raw mode and its size sent; Ctrl-P Ctrl-Q
detaches and leaves the container running. Exits with the container's status once its output is over.`;

const STREAM_HEADERS = { Accept: "application/recordio", "Message-Accept": "application/json" };
/** Ctrl-P Ctrl-Q, docker's detach keys. */
const DETACH = Buffer.from([0x10, 0x11]);

export interface ExecOptions {
  parent: { value: string; parent?: ExecOptions["parent"] };
  command: string[];
  interactive: boolean;
  tty: boolean;
  user?: string;
  env: Array<{ name: string; value: string }>;
  help: boolean;
}

/** "a.b" -> {value: "b", parent: {value: "a"}} (Mesos' string form of a ContainerID chain). */
export function containerIdOf(text: string): ExecOptions["parent"] {
  const parts = text.split(".");
  if (parts.some((p) => p === "")) throw new UsageError(`'${text}' is not a container ID (nested ones are parent.child)`);
  let id: ExecOptions["parent"] | undefined;
  for (const value of parts) id = id ? { value, parent: id } : { value };
  return id!;
}

/** Parses `ucr exec` as docker does: options until the container ID, then the command. */
export function parseExecArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ExecOptions {
  const o: Omit<ExecOptions, "parent"> & { parent?: ExecOptions["parent"] } = {
    command: [],
    interactive: false,
    tty: false,
    env: [],
    help: false,
  };
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--help" || a === "-h") {
      o.help = true;
      continue;
    }
    if (!a.startsWith("-") || a === "-") break;
    const value = (name: string) => {
      const eq = a.indexOf("=");
      if (a.startsWith("--") && eq > 0) return a.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value (${EXEC_USAGE})`);
      return v;
    };
    const name = a.startsWith("--") ? a.split("=")[0]! : a;
    if (name === "--interactive") o.interactive = true;
    else if (name === "--tty") o.tty = true;
    else if (name === "-u" || name === "--user") o.user = value(name);
    else if (name === "-e" || name === "--env") {
      const kv = value(name);
      const eq = kv.indexOf("=");
      if (eq === 0) throw new UsageError(`${name} ${kv}: the variable has no name`);
      if (eq > 0) o.env.push({ name: kv.slice(0, eq), value: kv.slice(eq + 1) });
      else if (env[kv] !== undefined) o.env.push({ name: kv, value: env[kv]! });
    } else if (/^-[it]+$/.test(a)) {
      // -i, -t and -it together
      if (a.includes("i")) o.interactive = true;
      if (a.includes("t")) o.tty = true;
    } else throw new UsageError(`unknown option '${a}' (${EXEC_USAGE})`);
  }
  if (o.help) return { ...o, parent: { value: "-" } };
  const id = args[i++];
  if (id === undefined) throw new UsageError(`no container ID given (${EXEC_USAGE})`);
  if (args[i] === "--") i++;
  o.command = args.slice(i);
  if (o.command.length === 0) throw new UsageError(`no command given (${EXEC_USAGE})`);
  return { ...o, parent: containerIdOf(id) };
}

/** This terminal's size (stdout's, else stdin's), if either is one. */
function windowSize(): { rows: number; columns: number } | undefined {
  for (const s of [process.stdout, process.stderr]) if (s.isTTY && s.rows && s.columns) return { rows: s.rows, columns: s.columns };
  return undefined;
}

/** POST /api/v1 with a JSON call, answered with a RecordIO stream (or an error). */
async function streamCall(opts: ClientOptions, body: unknown, signal: AbortSignal): Promise<Response> {
  try {
    return await fetch(`${opts.agent}/api/v1`, {
      method: "POST",
      timeout: false,
      signal,
      headers: { "Content-Type": "application/json", ...STREAM_HEADERS, ...(opts.auth ? { Authorization: opts.auth } : {}) },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new AgentError(`cannot reach the agent at ${opts.agent} (${(err as Error).message}); pass --agent HOST:PORT (or set UCR_AGENT)`);
  }
}

/** Writes the DATA records of a ProcessIO stream to stdout and stderr until it ends. */
async function printOutput(res: Response): Promise<void> {
  const reader = res.body!.getReader();
  const decoder = new RecordDecoder(16 << 20);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      for (const record of decoder.decode(value)) {
        const m = JSON.parse(new TextDecoder().decode(record)) as { type?: string; data?: { type?: string; data?: string } };
        if (m.type !== "DATA" || !m.data?.data) continue;
        const bytes = Buffer.from(m.data.data, "base64");
        await write(m.data.type === "STDERR" ? process.stderr : process.stdout, bytes);
      }
    }
  } catch (err) {
    if ((err as Error).name === "AbortError") return;
    throw new AgentError(`the output stream broke: ${(err as Error).message}`);
  }
}

function write(out: NodeJS.WriteStream, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => (out.write(bytes) ? resolve() : out.once("drain", () => resolve())));
}

/** An ATTACH_CONTAINER_INPUT request: records go out as they are sent; `answer` is the agent's. */
class InputRequest {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private closed = false;
  readonly answer: Promise<Response>;

  constructor(opts: ClientOptions, id: ExecOptions["parent"]) {
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (this.controller = c) });
    this.send({ type: "ATTACH_CONTAINER_INPUT", attach_container_input: { type: "CONTAINER_ID", container_id: id } });
    this.answer = fetch(`${opts.agent}/api/v1`, {
      method: "POST",
      timeout: false,
      headers: {
        "Content-Type": "application/recordio",
        "Message-Content-Type": "application/json",
        ...(opts.auth ? { Authorization: opts.auth } : {}),
      },
      body,
      duplex: "half",
    } as RequestInit);
  }

  private send(m: unknown): void {
    if (!this.closed) this.controller.enqueue(encodeRecord(JSON.stringify(m)));
  }

  private io(processIO: unknown): void {
    this.send({ type: "ATTACH_CONTAINER_INPUT", attach_container_input: { type: "PROCESS_IO", process_io: processIO } });
  }

  data(bytes: Uint8Array): void {
    this.io({ type: "DATA", data: { type: "STDIN", data: Buffer.from(bytes).toString("base64") } });
  }

  /** Empty data: EOF (pipes are closed; a terminal takes its EOF as Ctrl-D). */
  eof(): void {
    this.io({ type: "DATA", data: { type: "STDIN", data: "" } });
  }

  resize(size: { rows: number; columns: number }): void {
    this.io({ type: "CONTROL", control: { type: "TTY_INFO", tty_info: { window_size: size } } });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.controller.close();
    } catch {
      // the request is over already
    }
  }
}

/**
 * This terminal in raw mode while a TTY is attached (keys go to the container as they are
 * typed, Ctrl-C included), and back as it was at the end, whatever ends it.
 */
function rawMode(): () => void {
  if (!process.stdin.isTTY) return () => {};
  process.stdin.setRawMode(true);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    try {
      process.stdin.setRawMode(false);
    } catch {
      // stdin is gone
    }
  };
  process.once("exit", restore);
  return restore;
}

/**
 * Forwards stdin to `input` until it ends (then EOF) or `stop`; window changes too with a
 * TTY. `onDetach` (attach only): Ctrl-P Ctrl-Q typed.
 */
function forwardStdin(input: InputRequest, tty: boolean, onDetach?: () => void): () => void {
  /** A Ctrl-P that ended the last read: held until the next key says whether it detaches. */
  let held = false;
  const onData = (read: Buffer) => {
    let chunk = read;
    if (onDetach && tty) {
      if (held) chunk = Buffer.concat([Buffer.from([0x10]), chunk]);
      held = false;
      if (chunk.includes(DETACH)) return onDetach();
      if (chunk[chunk.length - 1] === 0x10) {
        held = true;
        chunk = chunk.subarray(0, -1);
      }
      if (chunk.byteLength === 0) return;
    }
    input.data(chunk);
  };
  const onEnd = () => input.eof();
  const onResize = () => {
    const size = windowSize();
    if (size) input.resize(size);
  };
  process.stdin.on("data", onData);
  process.stdin.on("end", onEnd);
  if (tty) process.on("SIGWINCH", onResize);
  return () => {
    process.stdin.off("data", onData);
    process.stdin.off("end", onEnd);
    process.off("SIGWINCH", onResize);
    process.stdin.pause();
  };
}

/** How the container ID ended, from WAIT_CONTAINER: our exit code. */
async function exitCode(opts: ClientOptions, id: ExecOptions["parent"]): Promise<number> {
  const answer = await call(opts, { type: "WAIT_CONTAINER", wait_container: { container_id: id } }, { long: true });
  const waited = expectJson<{ wait_container: { exit_status?: number; message?: string } }>(opts, "WAIT_CONTAINER", answer).wait_container;
  if (waited.exit_status === undefined) throw new AgentError(`${waited.message ?? "the container ended without an exit status"}`);
  return exitCodeOf(waited.exit_status);
}

function randomId(): string {
  return `exec-${Math.random().toString(36).slice(2, 10)}`;
}

export function execMain(args: readonly string[]): Promise<number> {
  return clientCommand("exec", async () => {
    const { opts, rest } = splitClientOptions(args);
    const o = parseExecArgs(rest);
    if (o.help) {
      process.stdout.write(`${EXEC_USAGE}\n\n${EXEC_HELP}\n`);
      return 0;
    }
    const id = { value: randomId(), parent: o.parent };
    const size = o.tty ? windowSize() : undefined;
    const abort = new AbortController();
    const res = await streamCall(
      opts,
      {
        type: "LAUNCH_NESTED_CONTAINER_SESSION",
        launch_nested_container_session: {
          container_id: id,
          command: {
            shell: false,
            value: o.command[0],
            arguments: o.command,
            ...(o.user ? { user: o.user } : {}),
            ...(o.env.length > 0 ? { environment: { variables: o.env.map((e) => ({ type: "VALUE", ...e })) } } : {}),
          },
          ...(o.tty ? { container: { type: "MESOS", tty_info: size ? { window_size: size } : {} } } : {}),
        },
      },
      abort.signal,
    );
    if (res.status !== 200)
      throw new AgentError(`LAUNCH_NESTED_CONTAINER_SESSION: ${describeFailure({ status: res.status, text: await res.text() })}`);

    // Interrupted without a terminal: our connection goes, and the agent ends the session.
    const interrupted = () => abort.abort();
    process.on("SIGINT", interrupted);
    process.on("SIGTERM", interrupted);
    const restore = o.tty && o.interactive ? rawMode() : () => {};
    let input: InputRequest | undefined;
    let stopStdin = () => {};
    try {
      if (o.interactive || !o.tty) {
        input = new InputRequest(opts, id);
        if (o.interactive) stopStdin = forwardStdin(input, o.tty);
        else input.eof(); // no -i: stdin is empty, as docker exec gives it
        void input.answer.then(
          async (r) => {
            if (r.status !== 200 && r.status !== 409)
              process.stderr.write(`ucr exec: stdin: ${describeFailure({ status: r.status, text: await r.text() })}\r\n`);
          },
          () => {},
        );
      }
      await printOutput(res);
    } finally {
      stopStdin();
      input?.close();
      restore();
    }
    const code = await exitCode(opts, id);
    await call(opts, { type: "REMOVE_CONTAINER", remove_container: { container_id: id } }).catch(() => undefined);
    return code;
  });
}

export function attachMain(args: readonly string[]): Promise<number> {
  return clientCommand("attach", async () => {
    const { opts, rest } = splitClientOptions(args);
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(`${ATTACH_USAGE}\n\n${ATTACH_HELP}\n`);
      return 0;
    }
    const noStdin = rest.includes("--no-stdin");
    const ids = rest.filter((a) => a !== "--no-stdin");
    if (ids.length !== 1 || ids[0]!.startsWith("-")) throw new UsageError(`one container ID, and no other argument (${ATTACH_USAGE})`);
    const id = containerIdOf(ids[0]!);
    const abort = new AbortController();
    const res = await streamCall(opts, { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: id } }, abort.signal);
    if (res.status !== 200)
      throw new AgentError(`ATTACH_CONTAINER_OUTPUT: ${describeFailure({ status: res.status, text: await res.text() })}`);

    let detached = false;
    const detach = () => {
      detached = true;
      abort.abort();
    };
    let tty = !noStdin && process.stdin.isTTY === true;
    let restore = tty ? rawMode() : () => {};
    let input: InputRequest | undefined;
    let stopStdin = () => {};
    const startInput = () => {
      const req = new InputRequest(opts, id);
      input = req;
      const size = tty ? windowSize() : undefined;
      if (size) req.resize(size);
      stopStdin = forwardStdin(req, tty, detach);
      void req.answer.then(
        async (r) => {
          const text = await r.text();
          // A container without a terminal refuses the window size: attach its pipes instead.
          if (r.status === 400 && tty && /window size/i.test(text) && !detached) {
            stopStdin();
            restore();
            tty = false;
            restore = () => {};
            startInput();
            process.stdin.resume();
          } else if (r.status !== 200) {
            process.stderr.write(`ucr attach: stdin: ${describeFailure({ status: r.status, text })}\r\n`);
          }
        },
        () => {},
      );
    };
    if (!noStdin) startInput();
    try {
      await printOutput(res);
    } finally {
      stopStdin();
      input?.close();
      restore();
    }
    if (detached) {
      process.stderr.write(`ucr attach: detached from ${ids[0]}; it keeps running\n`);
      return 0;
    }
    return exitCode(opts, id);
  });
}
