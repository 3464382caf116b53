// Clients of the streaming calls for tests, in JSON or protobuf: a call answered with RecordIO
// ProcessIO records (LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_OUTPUT) read as it comes,
// and an ATTACH_CONTAINER_INPUT whose records are sent one by one while the request is open.
import { RecordDecoder, encodeRecord } from "../../src/mesos/recordio.ts";
import type { RunningAgent } from "./agent.ts";
import { MEDIA, decodeProcessIO, encodeCall, type Encoding } from "./protobuf.ts";

export type Id = { value: string; parent?: Id };
export type Message = Record<string, any>;

/** POSTs `call` in `encoding`, asking for a RecordIO answer of messages in the same encoding. */
export function streamCall(
  agent: RunningAgent,
  encoding: Encoding,
  call: Record<string, unknown>,
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${agent.url}/api/v1`, {
    method: "POST",
    headers: { "Content-Type": MEDIA[encoding], Accept: "application/recordio", "Message-Accept": MEDIA[encoding] },
    body: encoding === "json" ? JSON.stringify(call) : encodeCall(call),
    ...(signal ? { signal } : {}),
  });
}

/** The ProcessIO records of a streaming answer as they arrive, with the DATA bytes gathered. */
export class Records {
  readonly messages: Message[] = [];
  stdout = "";
  stderr = "";
  /** Settles when the answer's body ends (or breaks). */
  readonly done: Promise<void>;
  private readonly reader: { cancel(): Promise<void> };
  private changed: Array<() => void> = [];

  constructor(
    res: Response,
    readonly encoding: Encoding,
  ) {
    const reader = res.body!.getReader();
    this.reader = reader;
    const decoder = new RecordDecoder(16 << 20);
    this.done = (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          for (const r of decoder.decode(value)) {
            const m = encoding === "json" ? (JSON.parse(new TextDecoder().decode(r)) as Message) : decodeProcessIO(r);
            this.messages.push(m);
            if (m.type === "DATA") {
              const text = Buffer.from(m.data.data ?? "", "base64").toString();
              if (m.data.type === "STDOUT") this.stdout += text;
              if (m.data.type === "STDERR") this.stderr += text;
            }
          }
          for (const f of this.changed.splice(0)) f();
        }
      } catch {
        // cancelled or cut: what came is kept
      } finally {
        for (const f of this.changed.splice(0)) f();
      }
    })();
  }

  heartbeats(): Message[] {
    return this.messages.filter((m) => m.type === "CONTROL" && m.control?.type === "HEARTBEAT");
  }

  /** Waits until `ok` holds (checked at each new record), or throws after `ms` saying what came. */
  async until(ok: () => boolean, ms = 15_000, what = "the expected output"): Promise<void> {
    const deadline = Date.now() + ms;
    let over = false;
    void this.done.then(() => (over = true));
    while (!ok()) {
      if (over || Date.now() > deadline) {
        throw new Error(
          `no ${what} (stream ${over ? "ended" : "still open"}); ` +
            `stdout ${JSON.stringify(this.stdout)}, stderr ${JSON.stringify(this.stderr)}`,
        );
      }
      await Promise.race([new Promise<void>((r) => this.changed.push(r)), Bun.sleep(100)]);
    }
  }

  /** Waits for the answer's end, or throws after `ms` saying what came. */
  async finished(ms = 15_000): Promise<void> {
    let over = false;
    await Promise.race([this.done.then(() => (over = true)), Bun.sleep(ms)]);
    if (!over)
      throw new Error(
        `the stream did not end within ${ms} ms; stdout ${JSON.stringify(this.stdout)}, stderr ${JSON.stringify(this.stderr)}`,
      );
  }

  cancel(): Promise<void> {
    return this.reader.cancel().catch(() => {});
  }
}

/** An ATTACH_CONTAINER_INPUT request whose records go out one by one; `answer` is the agent's. */
export class InputStream {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly answer: Promise<Response>;

  constructor(
    agent: RunningAgent,
    readonly encoding: Encoding,
    id: Id,
    first: Record<string, unknown> = { type: "CONTAINER_ID", container_id: id },
  ) {
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (this.controller = c) });
    this.send({ type: "ATTACH_CONTAINER_INPUT", attach_container_input: first });
    this.answer = fetch(`${agent.url}/api/v1`, {
      method: "POST",
      headers: { "Content-Type": "application/recordio", "Message-Content-Type": MEDIA[encoding] },
      body,
      duplex: "half",
    } as RequestInit);
    // Awaited by the tests that look at it; a connection cut at the end is no error of the others.
    this.answer.catch(() => {});
  }

  send(call: Record<string, unknown>): void {
    this.controller.enqueue(encodeRecord(this.encoding === "json" ? JSON.stringify(call) : encodeCall(call)));
  }

  processIO(processIO: Record<string, unknown>): void {
    this.send({ type: "ATTACH_CONTAINER_INPUT", attach_container_input: { type: "PROCESS_IO", process_io: processIO } });
  }

  stdin(text: string): void {
    this.processIO({ type: "DATA", data: { type: "STDIN", data: Buffer.from(text).toString("base64") } });
  }

  resize(rows: number, columns: number): void {
    this.processIO({ type: "CONTROL", control: { type: "TTY_INFO", tty_info: { window_size: { rows, columns } } } });
  }

  close(): void {
    try {
      this.controller.close();
    } catch {
      // already over
    }
  }
}

/** What slowStreamCall got: the answer's status and headers, and its records as Records gathers them (a 200's). */
export interface SlowAnswer {
  status: number;
  headers: Record<string, string>;
  /** The body of an answer other than 200. */
  text: string;
  messages: Message[];
  stdout: Buffer;
  stderr: Buffer;
}

/**
 * A streaming call on a plain TCP connection whose reader is slow: once the answer has begun
 * it reads nothing until `hold()` (if given) resolves, then after each chunk nothing until its
 * average is down to `bytesPerSecond`. fetch() would take all the agent sends into memory as
 * it comes; this reader leaves it in the kernel's buffers, so the agent's answer waits, and
 * with it the switchboard and the container. HTTP/1.1 with `Connection: close`; the answer
 * (chunked) is taken apart once the agent has closed the connection. Resolves once the answer
 * has begun (the agent attached to the output before it answered).
 */
export async function slowStreamCall(
  agent: RunningAgent,
  encoding: Encoding,
  call: Record<string, unknown>,
  { bytesPerSecond = 4 << 20, hold }: { bytesPerSecond?: number; hold?: () => Promise<void> } = {},
): Promise<{ answer: Promise<SlowAnswer> }> {
  const body = Buffer.from(encoding === "json" ? JSON.stringify(call) : encodeCall(call));
  const chunks: Buffer[] = [];
  let closed!: () => void;
  const over = new Promise<void>((resolve) => (closed = resolve));
  let begun!: () => void;
  const answering = new Promise<void>((resolve) => (begun = resolve));
  let received = 0;
  /** When the paced reading began (after the hold). */
  let start: number | undefined;
  let holding = false;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: agent.port,
    socket: {
      data: (s, chunk) => {
        chunks.push(Buffer.from(chunk));
        if (start === undefined && !holding) {
          begun();
          if (hold) {
            holding = true;
            s.pause();
            const go = () => {
              holding = false;
              start = performance.now();
              s.resume();
            };
            void hold().then(go, go);
            return;
          }
          start = performance.now();
        }
        if (start === undefined) return;
        received += chunk.byteLength;
        const ahead = start + (received / bytesPerSecond) * 1000 - performance.now();
        if (ahead <= 0) return;
        s.pause();
        setTimeout(() => s.resume(), ahead);
      },
      close: () => {
        begun();
        closed();
      },
      error: () => {},
    },
  });
  const head =
    "POST /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
    `Content-Type: ${MEDIA[encoding]}\r\nAccept: application/recordio\r\nMessage-Accept: ${MEDIA[encoding]}\r\n` +
    `Content-Length: ${body.byteLength}\r\n\r\n`;
  const request = Buffer.concat([Buffer.from(head), body]);
  for (let at = 0; at < request.byteLength; ) {
    const n = socket.write(request.subarray(at));
    if (n < 0) throw new Error("the agent closed the connection before the request was sent");
    at += n;
    if (at < request.byteLength) await Bun.sleep(1);
  }
  await answering;
  return { answer: over.then(() => parseAnswer(Buffer.concat(chunks), encoding)) };
}

/** An HTTP/1.1 answer read to its end: status, headers, and the ProcessIO records of its (chunked) body. */
function parseAnswer(raw: Buffer, encoding: Encoding): SlowAnswer {
  const split = raw.indexOf("\r\n\r\n");
  if (split < 0) throw new Error(`no HTTP answer: ${JSON.stringify(raw.subarray(0, 200).toString())}`);
  const [statusLine, ...lines] = raw.subarray(0, split).toString().split("\r\n");
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(split + 4);
  if (headers["transfer-encoding"] === "chunked") {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = body.indexOf("\r\n", at);
      if (eol < 0) throw new Error(`the chunked body was cut at byte ${at}`);
      const size = parseInt(body.subarray(at, eol).toString(), 16);
      if (size === 0) break;
      if (eol + 2 + size > body.byteLength) throw new Error(`the chunked body was cut in a chunk of ${size} bytes`);
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  }
  const answer: SlowAnswer = { status, headers, text: "", messages: [], stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  if (status !== 200) {
    answer.text = body.toString();
    return answer;
  }
  const out: { STDOUT: Buffer[]; STDERR: Buffer[] } = { STDOUT: [], STDERR: [] };
  for (const r of new RecordDecoder(16 << 20).decode(body)) {
    const m = encoding === "json" ? (JSON.parse(new TextDecoder().decode(r)) as Message) : decodeProcessIO(r);
    answer.messages.push(m);
    if (m.type === "DATA" && (m.data.type === "STDOUT" || m.data.type === "STDERR")) {
      out[m.data.type as "STDOUT" | "STDERR"].push(Buffer.from(m.data.data ?? "", "base64"));
    }
  }
  answer.stdout = Buffer.concat(out.STDOUT);
  answer.stderr = Buffer.concat(out.STDERR);
  return answer;
}
