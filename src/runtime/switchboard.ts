// A container's I/O switchboard, kept by the launcher (Mesos runs one process per container
// for this; the launcher already outlives the agent and starts every workload, so it holds
// them all): the container's terminal, or its stdin/stdout/stderr pipes, served on a unix
// socket in the container's runtime dir (io-frames.ts says what travels on it). Output goes
// to the sandbox's stdout/stderr files, as Mesos' logger writes them, and to every attached
// reader; input comes from one writer at a time. It ends when the container's output does,
// and is over once every reader has had all of it (a slow one holds it that long).
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { setWindowSize } from "../ffi/tty.ts";
import { Frame, FrameReader, FrameSender, IO_SOCKET, dataFrames, frame, parseWindow } from "./io-frames.ts";

/** Output held for one slow reader before reading from the container pauses (the container then waits). */
const HIGH_WATER = 1 << 20;

/** The launcher's ends of a container's I/O. */
export interface SwitchboardIo {
  /** The terminal's master (window sizes go to it); absent: pipes. */
  master?: number;
  /** Where input goes (a pipe's write end). */
  stdin: number;
  /** Where output comes from (pipes' read ends); a terminal has stdout only. */
  stdout: number;
  stderr?: number;
}

export interface SwitchboardOptions {
  /** The container's key, for messages. */
  id: string;
  /** Its runtime dir, where the socket goes. */
  runtimeDir: string;
  /** Read no output until the first reader attaches (a session: nothing is lost before). */
  waitForReader: boolean;
  /** The sandbox files the output is appended to, opened (the switchboard closes them); a terminal's all goes to stdout. */
  files: { stdout?: number; stderr?: number };
  say: (message: string) => void;
  /** Called once, when the switchboard is over and everything of it is closed. */
  onEnd: () => void;
}

interface Peer {
  role?: "output" | "input";
  reader: FrameReader;
  /** Everything sent on the connection goes through it, and it ends it (see FrameSender). */
  sender: FrameSender;
}

export class Switchboard {
  private listener: Bun.UnixSocketListener<Peer> | undefined;
  /** The runtime dir, held while the socket is bound in it (see listen). */
  private dir: number | undefined;
  private readonly outputs = new Set<Bun.Socket<Peer>>();
  private input: Bun.Socket<Peer> | undefined;
  private stdin: { fd: number; sink: ReturnType<ReturnType<typeof Bun.file>["writer"]> } | undefined;
  private started = false;
  /** The output is over: no more is read, readers get END after what they are still owed. */
  private ended = false;
  /** Every connection of it closed after the end: onEnd was called. */
  private over = false;
  private sources = 0;
  /** Output loops waiting for readers to drain. */
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly io: SwitchboardIo,
    private readonly opts: SwitchboardOptions,
  ) {}

  /** Serves `io` on `<runtimeDir>/io.sock`; the socket listens when this returns. */
  static open(io: SwitchboardIo, opts: SwitchboardOptions): Switchboard {
    const sb = new Switchboard(io, opts);
    sb.listen();
    sb.stdin = { fd: io.stdin, sink: Bun.file(io.stdin).writer() };
    if (!opts.waitForReader) sb.start();
    return sb;
  }

  /**
   * Binds through the runtime dir's descriptor: its path may be longer than a socket address
   * holds. The descriptor stays open as long as the listener: Bun unlinks the path it bound
   * when the listener stops, and /proc/self/fd/N must still be this directory then (a number
   * closed and taken again by another directory would have it unlink a file there).
   */
  private listen(): void {
    const dir = openSync(this.opts.runtimeDir, 0o200000 | 0o400000 | 0o2000000); // O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
    try {
      const path = `/proc/self/fd/${dir}/${IO_SOCKET}`;
      rmSync(path, { force: true });
      this.listener = Bun.listen<Peer>({
        unix: path,
        socket: {
          open: (s) => {
            s.data = { reader: new FrameReader(), sender: new FrameSender(s) };
            if (this.ended) s.data.sender.end(frame(Frame.END));
          },
          data: (s, chunk) => this.received(s, chunk),
          drain: (s) => {
            if (s.data.sender.drain()) this.wake();
          },
          close: (s) => this.gone(s),
          error: () => {},
        },
      });
      this.dir = dir;
    } catch (err) {
      closeSync(dir);
      throw err;
    }
  }

  private received(s: Bun.Socket<Peer>, chunk: Uint8Array): void {
    let frames;
    try {
      frames = s.data.reader.push(chunk);
    } catch (err) {
      this.opts.say(`container ${this.opts.id}: dropping a switchboard connection: ${(err as Error).message}`);
      s.data.sender.end();
      return;
    }
    for (const f of frames) {
      // Answered and being closed (a refused frame, a conflict): what follows is not applied.
      if (s.data.sender.ending) return;
      if (s.data.role === undefined) {
        this.hello(s, f.kind);
        continue;
      }
      if (s.data.role === "input" && s === this.input) this.inputFrame(s, f.kind, f.payload);
    }
  }

  private hello(s: Bun.Socket<Peer>, kind: number): void {
    const sender = s.data.sender;
    // Connected before the end, heard after it: there is nothing more to read or write.
    if (this.ended) {
      sender.end(frame(Frame.END));
      return;
    }
    if (kind === Frame.OUTPUT) {
      s.data.role = "output";
      this.outputs.add(s);
      this.start();
      this.wake();
    } else if (kind === Frame.INPUT) {
      s.data.role = "input";
      if (this.input) {
        sender.end(frame(Frame.CONFLICT));
        return;
      }
      this.input = s;
      sender.send(frame(Frame.ACCEPTED));
    } else {
      sender.end();
    }
  }

  private inputFrame(s: Bun.Socket<Peer>, kind: number, payload: Uint8Array): void {
    const fail = (k: number, why: string) => s.data.sender.end(frame(k, Buffer.from(why)));
    switch (kind) {
      case Frame.STDIN: {
        if (!this.stdin) {
          fail(Frame.FAILED, "Failed writing to stdin: it is closed");
          return;
        }
        if (payload.byteLength === 0) return;
        try {
          const written = this.stdin.sink.write(payload);
          if (written instanceof Promise) {
            // The container is not reading: stop reading the agent until it does.
            s.pause();
            written.then(
              () => s.resume(),
              (err: Error) => fail(Frame.FAILED, `Failed writing to stdin: ${err.message}`),
            );
          } else {
            const flushed = this.stdin.sink.flush();
            if (flushed instanceof Promise) {
              s.pause();
              flushed.then(
                () => s.resume(),
                (err: Error) => fail(Frame.FAILED, `Failed writing to stdin: ${err.message}`),
              );
            }
          }
        } catch (err) {
          fail(Frame.FAILED, `Failed writing to stdin: ${(err as Error).message}`);
        }
        return;
      }
      case Frame.STDIN_EOF:
        // A terminal's EOF is the EOT character the client sends; only pipes are closed.
        if (this.io.master === undefined) void this.closeStdin();
        return;
      case Frame.WINDOW: {
        if (this.io.master === undefined) {
          fail(Frame.BAD_REQUEST, "Unable to set the window size: the container has no terminal");
          return;
        }
        try {
          setWindowSize(this.io.master, parseWindow(payload));
        } catch (err) {
          fail(Frame.BAD_REQUEST, `Unable to set the window size: ${(err as Error).message}`);
        }
        return;
      }
      default:
        fail(Frame.BAD_REQUEST, `unknown switchboard frame 0x${kind.toString(16)}`);
    }
  }

  private gone(s: Bun.Socket<Peer>): void {
    s.data.sender.close();
    this.outputs.delete(s);
    if (this.input === s) this.input = undefined;
    this.wake();
    this.finish();
  }

  private wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  /** Starts reading the container's output (once). */
  private start(): void {
    if (this.started) return;
    this.started = true;
    const loops = [this.readLoop(this.io.stdout, Frame.STDOUT, this.opts.files.stdout)];
    if (this.io.stderr !== undefined) loops.push(this.readLoop(this.io.stderr, Frame.STDERR, this.opts.files.stderr));
    this.sources = loops.length;
  }

  /** May output be read now? Not while a reader holds more than HIGH_WATER unsent. */
  private async mayRead(): Promise<void> {
    for (;;) {
      let full = false;
      for (const s of this.outputs) if (s.data.sender.queued > HIGH_WATER) full = true;
      if (!full) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private async readLoop(fd: number, kind: number, file: number | undefined): Promise<void> {
    const reader = Bun.file(fd).stream().getReader();
    try {
      for (;;) {
        await this.mayRead();
        const { done, value } = await reader.read();
        if (done) break;
        if (file !== undefined) appendAll(file, value);
        const frames = dataFrames(kind, value);
        for (const s of this.outputs) for (const f of frames) s.data.sender.send(f);
      }
    } catch (err) {
      this.opts.say(`container ${this.opts.id}: reading its output failed: ${(err as Error).message}`);
    } finally {
      reader.releaseLock();
      closeQuiet(fd);
      if (--this.sources === 0) this.end();
    }
  }

  private async closeStdin(): Promise<void> {
    const stdin = this.stdin;
    if (!stdin) return;
    this.stdin = undefined;
    try {
      await stdin.sink.end();
    } catch {
      // the container stopped reading: nothing more to give it anyway
    }
    closeQuiet(stdin.fd);
  }

  /**
   * The output is over: the socket goes and input is closed at once; each reader gets END
   * after all the output it is still owed (a slow one may hold much of it), and the
   * switchboard is over (onEnd) once every connection closed. Ending a reader's connection
   * here directly would drop what its sender still holds.
   */
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const s of this.outputs) s.data.sender.end(frame(Frame.END));
    this.input?.data.sender.end(frame(Frame.END));
    // Stopping unlinks the socket (through the directory's descriptor, still open: see listen).
    this.listener?.stop(false);
    if (this.dir !== undefined) {
      try {
        rmSync(`/proc/self/fd/${this.dir}/${IO_SOCKET}`, { force: true });
      } catch {
        // its directory went first
      }
      closeQuiet(this.dir);
    }
    void this.closeStdin();
    closeQuiet(this.io.master);
    for (const fd of Object.values(this.opts.files)) closeQuiet(fd);
    this.finish();
  }

  /** Over once the output is and every reader and the writer have closed (their peers go, or their data went out). */
  private finish(): void {
    if (!this.ended || this.over || this.outputs.size > 0 || this.input) return;
    this.over = true;
    this.opts.onEnd();
  }
}

function appendAll(fd: number, data: Uint8Array): void {
  try {
    for (let at = 0; at < data.byteLength; ) at += writeSync(fd, data, at);
  } catch {
    // a full disk loses the sandbox copy, not what readers get
  }
}

function closeQuiet(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
