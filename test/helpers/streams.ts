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
