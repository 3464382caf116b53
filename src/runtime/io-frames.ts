// The framing on a container's I/O switchboard socket (<runtime dir>/io.sock), between the
// agent and the launcher that holds the container's terminal or pipes: one byte saying what a
// frame is, its length (4 bytes, big-endian), then that many bytes.
//
// The agent opens one connection per attach and says first what it is: OUTPUT (then the
// launcher sends STDOUT/STDERR frames, and END when the container's output is over) or INPUT
// (then ACCEPTED or CONFLICT, and the agent sends STDIN, STDIN_EOF and WINDOW frames; the
// launcher answers BAD_REQUEST or FAILED if one cannot be applied, END when the switchboard
// is over). Either side closes the connection when it is done.

export const Frame = {
  /** agent -> launcher, first frame: this connection reads the output. */
  OUTPUT: 0x6f, // 'o'
  /** agent -> launcher, first frame: this connection writes the input. */
  INPUT: 0x69, // 'i'
  STDIN: 0x64, // 'd'
  /** No more input: stdin is closed (pipes; a terminal gets its EOF as the character EOT). */
  STDIN_EOF: 0x65, // 'e'
  /** A window size: rows and columns, two big-endian 16-bit numbers. */
  WINDOW: 0x77, // 'w'
  STDOUT: 0x31, // '1'
  STDERR: 0x32, // '2'
  ACCEPTED: 0x6b, // 'k'
  CONFLICT: 0x63, // 'c'
  /** What the agent sent cannot be applied (payload: why); Mesos answers 400. */
  BAD_REQUEST: 0x62, // 'b'
  /** Writing to the container failed (payload: why); Mesos answers 500. */
  FAILED: 0x66, // 'f'
  /** The output is over (all of it was sent before this). */
  END: 0x78, // 'x'
} as const;

/** A frame's payload is at most this long; larger data is cut into several frames. */
export const MAX_FRAME = 1 << 20;
const HEADER = 5;

export function frame(kind: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.byteLength > MAX_FRAME) throw new Error(`a switchboard frame of ${payload.byteLength} bytes is over ${MAX_FRAME}`);
  const out = new Uint8Array(HEADER + payload.byteLength);
  out[0] = kind;
  new DataView(out.buffer).setUint32(1, payload.byteLength);
  out.set(payload, HEADER);
  return out;
}

/** Data as frames of `kind`, each at most MAX_FRAME long. */
export function dataFrames(kind: number, data: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let at = 0; at < data.byteLength; at += MAX_FRAME) frames.push(frame(kind, data.subarray(at, at + MAX_FRAME)));
  return frames;
}

export function windowFrame(rows: number, columns: number): Uint8Array {
  const payload = new Uint8Array(4);
  const v = new DataView(payload.buffer);
  v.setUint16(0, rows);
  v.setUint16(2, columns);
  return frame(Frame.WINDOW, payload);
}

export function parseWindow(payload: Uint8Array): { rows: number; columns: number } {
  if (payload.byteLength !== 4) throw new Error(`a window frame has ${payload.byteLength} bytes, not 4`);
  const v = new DataView(payload.buffer, payload.byteOffset, 4);
  return { rows: v.getUint16(0), columns: v.getUint16(2) };
}

/** Splits a byte stream into frames, however it is cut. Throws on a frame over MAX_FRAME. */
export class FrameReader {
  private buffered = new Uint8Array(0);

  push(chunk: Uint8Array): Array<{ kind: number; payload: Uint8Array }> {
    const data = this.buffered.byteLength === 0 ? chunk : concat(this.buffered, chunk);
    const frames: Array<{ kind: number; payload: Uint8Array }> = [];
    let at = 0;
    while (data.byteLength - at >= HEADER) {
      const length = new DataView(data.buffer, data.byteOffset + at + 1, 4).getUint32(0);
      if (length > MAX_FRAME) throw new Error(`a switchboard frame of ${length} bytes is over ${MAX_FRAME}`);
      if (data.byteLength - at < HEADER + length) break;
      frames.push({ kind: data[at]!, payload: data.slice(at + HEADER, at + HEADER + length) });
      at += HEADER + length;
    }
    this.buffered = data.slice(at);
    return frames;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/** What FrameSender writes to: a Bun socket (write returns the bytes the kernel took; Bun keeps none of the rest). */
interface Writable {
  write(bytes: Uint8Array): number;
  end(): void;
}

/**
 * Writes whole frames on a socket in order, keeping what the kernel did not take until the
 * socket drains (call drain() from its drain handler). `queued` is what waits. The socket is
 * ended through end(), never directly: what waits here would be lost with it.
 */
export class FrameSender {
  private queue: Uint8Array[] = [];
  private waiting: Array<() => void> = [];
  queued = 0;
  closed = false;
  /** end() was called: nothing more is taken, the socket ends once the queue is written. */
  ending = false;
  private socketEnded = false;

  constructor(private readonly socket: Writable) {}

  send(bytes: Uint8Array): void {
    if (this.closed || this.ending) return;
    if (this.queue.length === 0) {
      const n = this.socket.write(bytes);
      if (n >= bytes.byteLength) return;
      bytes = bytes.subarray(Math.max(0, n));
    }
    this.queue.push(bytes);
    this.queued += bytes.byteLength;
  }

  /** Writes what waits; true once nothing does (those waiting in drained() are told, an ending socket is ended). */
  drain(): boolean {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const n = this.socket.write(head);
      if (n <= 0) return false;
      this.queued -= Math.min(n, head.byteLength);
      if (n < head.byteLength) {
        this.queue[0] = head.subarray(n);
        return false;
      }
      this.queue.shift();
    }
    for (const resolve of this.waiting.splice(0)) resolve();
    if (this.ending) this.endSocket();
    return true;
  }

  /** Resolves once nothing waits (or the socket is closed). */
  drained(): Promise<void> {
    if (this.queue.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Sends `last` (if any) after all that waits, then ends the socket: at once if nothing waits, else once it drained. */
  end(last?: Uint8Array): void {
    if (this.closed || this.ending) return;
    if (last) this.send(last);
    this.ending = true;
    if (this.queue.length === 0) this.endSocket();
  }

  private endSocket(): void {
    if (this.closed || this.socketEnded) return;
    this.socketEnded = true;
    this.socket.end();
  }

  /** The socket closed: nothing more is sent, and nobody waits. */
  close(): void {
    this.closed = true;
    this.queue = [];
    this.queued = 0;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

/** The switchboard socket's file name in a container's runtime dir. */
export const IO_SOCKET = "io.sock";
