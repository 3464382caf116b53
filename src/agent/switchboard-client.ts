// The agent's side of a container's I/O switchboard (runtime/switchboard.ts, in the launcher):
// one connection per attach to `<runtime dir>/io.sock`, in the frames of runtime/io-frames.ts.
// An output attachment hands each chunk on and can be paused while its reader is slow; an
// input attachment sends stdin, EOF and window sizes, and waits while the container does not
// read.
import { closeSync, openSync } from "node:fs";
import { Frame, FrameReader, FrameSender, IO_SOCKET, dataFrames, frame, windowFrame } from "../runtime/io-frames.ts";

/** The switchboard does not answer: it ended with the container's output, or never ran. */
export class SwitchboardGone extends Error {
  constructor(why: string) {
    super(`I/O switchboard has shutdown: ${why}`);
    this.name = "SwitchboardGone";
  }
}

export type OutputEvent = { kind: "stdout" | "stderr"; data: Uint8Array } | { kind: "end" };

interface Link {
  socket: Bun.Socket<undefined>;
  sender: FrameSender;
  closed: boolean;
}

/**
 * Connects to the switchboard in `runtimeDir`, through the directory's descriptor (its path
 * may be longer than a socket address holds); `first` is the frame that says what for.
 */
async function connect(
  runtimeDir: string,
  first: Uint8Array,
  onFrame: (kind: number, payload: Uint8Array) => void,
  onClose: () => void,
): Promise<Link> {
  let dir: number;
  try {
    dir = openSync(runtimeDir, 0o200000 | 0o400000 | 0o2000000); // O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
  } catch (err) {
    throw new SwitchboardGone(`the container's runtime dir is gone (${(err as NodeJS.ErrnoException).code})`);
  }
  const reader = new FrameReader();
  const link: Link = { socket: undefined as never, sender: undefined as never, closed: false };
  try {
    link.socket = await Bun.connect({
      unix: `/proc/self/fd/${dir}/${IO_SOCKET}`,
      socket: {
        data: (s, chunk) => {
          let frames;
          try {
            frames = reader.push(chunk);
          } catch {
            s.end();
            return;
          }
          for (const f of frames) onFrame(f.kind, f.payload);
        },
        drain: () => void link.sender?.drain(),
        close: () => {
          link.closed = true;
          link.sender?.close();
          onClose();
        },
        error: () => {},
      },
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new SwitchboardGone(`its socket does not answer (${code})`);
  } finally {
    closeSync(dir);
  }
  link.sender = new FrameSender(link.socket);
  if (link.closed) link.sender.close();
  link.sender.send(first);
  return link;
}

export interface OutputAttachment {
  /** Stop reading (the reader is slow); the switchboard then holds, and the container waits. */
  pause(): void;
  resume(): void;
  close(): void;
}

/** Reads the container's output: `onEvent` gets each chunk, then `end` (also if the link breaks). */
export async function attachOutput(runtimeDir: string, onEvent: (e: OutputEvent) => void): Promise<OutputAttachment> {
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    onEvent({ kind: "end" });
  };
  const link = await connect(
    runtimeDir,
    frame(Frame.OUTPUT),
    (kind, payload) => {
      if (ended) return;
      if (kind === Frame.STDOUT) onEvent({ kind: "stdout", data: payload });
      else if (kind === Frame.STDERR) onEvent({ kind: "stderr", data: payload });
      else if (kind === Frame.END) end();
    },
    end,
  );
  return {
    pause: () => link.socket.pause(),
    resume: () => link.socket.resume(),
    close: () => {
      ended = true;
      link.sender.end();
    },
  };
}

/** How an input attachment ended, as Mesos' switchboard answers it. */
type InputResult = { status: 200 } | { status: 400 | 500; message: string };

export interface InputAttachment {
  /** Sends stdin bytes; resolves once they went out (the container may be slow to read). */
  write(data: Uint8Array): Promise<void>;
  /** No more input (pipes are closed; a terminal ignores it, its EOF is the EOT character). */
  eof(): void;
  resize(rows: number, columns: number): void;
  close(): void;
  /** Settles when the switchboard ends the attachment (its output is over, or a record failed). */
  readonly ended: Promise<InputResult>;
}

/** The one input attachment of a container; "conflict" if another one holds it (Mesos: 409). */
export async function attachInput(runtimeDir: string): Promise<InputAttachment | "conflict"> {
  let accepted!: (answer: "accepted" | "conflict" | "closed") => void;
  const answer = new Promise<"accepted" | "conflict" | "closed">((resolve) => (accepted = resolve));
  let finish!: (r: InputResult) => void;
  const ended = new Promise<InputResult>((resolve) => (finish = resolve));
  const link = await connect(
    runtimeDir,
    frame(Frame.INPUT),
    (kind, payload) => {
      if (kind === Frame.ACCEPTED) accepted("accepted");
      else if (kind === Frame.CONFLICT) accepted("conflict");
      else if (kind === Frame.BAD_REQUEST) finish({ status: 400, message: Buffer.from(payload).toString() });
      else if (kind === Frame.FAILED) finish({ status: 500, message: Buffer.from(payload).toString() });
      else if (kind === Frame.END) finish({ status: 200 });
    },
    () => {
      accepted("closed");
      finish({ status: 200 });
    },
  );
  const got = await answer;
  if (got !== "accepted") {
    link.sender.end();
    if (got === "closed") throw new SwitchboardGone("it closed the connection");
    return "conflict";
  }
  return {
    async write(data) {
      for (const f of dataFrames(Frame.STDIN, data)) link.sender.send(f);
      await link.sender.drained();
    },
    eof: () => link.sender.send(frame(Frame.STDIN_EOF)),
    resize: (rows, columns) => link.sender.send(windowFrame(rows, columns)),
    // After what was sent (an EOF the container has not read yet, above all), not instead of it.
    close: () => link.sender.end(),
    ended,
  };
}
