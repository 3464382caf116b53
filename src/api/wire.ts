// The Operator API's encodings, as Mesos' agent chooses them (src/slave/http.cpp Http::api):
// which of JSON, protobuf and RecordIO a request is in and its answer gets, the call decoded from
// any of them into one JSON-shaped object, and answers encoded from one JSON-shaped object.
import type * as Codec from "../mesos/codec.ts";
import { encodeRecord, readRecords, RecordioError } from "../mesos/recordio.ts";
import { log } from "../log.ts";
import type { CallType } from "../mesos/calls.ts";
import { ApiError, JSON_TYPE, PROTOBUF_TYPE, RECORDIO_TYPE, accepts, decodeUtf8, lastValue, mediaType, names } from "./http.ts";

export type Encoding = "json" | "protobuf";
type Media = Encoding | "recordio";

/** How a request came and how it wants its answer; the message types only for RecordIO. */
/** How the call came: its encodings and, for a streaming request, the records after the call. */
export interface CallContext {
  wire: Wire;
  records?: AsyncGenerator<Uint8Array>;
}

export interface Wire {
  content: Media;
  messageContent?: Encoding;
  accept: Media;
  messageAccept?: Encoding;
}

const MEDIA_TYPE: Record<Media, string> = { json: JSON_TYPE, protobuf: PROTOBUF_TYPE, recordio: RECORDIO_TYPE };
const MESSAGE_CONTENT_TYPE = "Message-Content-Type";
const MESSAGE_ACCEPT = "Message-Accept";

/** Calls whose request is a RecordIO stream, and calls whose answer may be one (Mesos' _api). */
const STREAMING_REQUEST: ReadonlySet<CallType> = new Set(["ATTACH_CONTAINER_INPUT"]);
const STREAMING_ANSWER: ReadonlySet<CallType> = new Set(["ATTACH_CONTAINER_OUTPUT", "LAUNCH_NESTED_CONTAINER_SESSION"]);

let codec: Promise<typeof Codec> | undefined;

/**
 * The protobuf codec, loaded on first use: building its descriptors takes tens of
 * milliseconds that an agent whose clients speak JSON never pays.
 */
function protobuf(): Promise<typeof Codec> {
  codec ??= (async () => {
    const started = performance.now();
    const loaded = await import("../mesos/codec.ts");
    log.info(`protobuf codec loaded (${(performance.now() - started).toFixed(1)}ms)`);
    return loaded;
  })();
  return codec;
}

function encodingOf(header: string): Encoding | undefined {
  const type = mediaType(header);
  return type === JSON_TYPE ? "json" : type === PROTOBUF_TYPE ? "protobuf" : undefined;
}

/**
 * The transport checks that need only the headers, in Mesos' order: Content-Type (400
 * missing, 415 other), Message-Content-Type (with RecordIO: 400 missing, 415 other; else 415
 * if present), Accept (JSON, then protobuf, then RecordIO, else 406), Message-Accept (with a
 * RecordIO Accept: JSON, then protobuf, else 406; else 406 if present).
 */
export function negotiate(headers: Headers): Wire {
  // Repeated lines of a one-value header: the last wins, as in libprocess (see lastValue).
  const contentTypeHeader = lastValue(headers.get("content-type"));
  if (contentTypeHeader === null) throw new ApiError(400, "Expecting 'Content-Type' to be present");
  const content: Media | undefined = mediaType(contentTypeHeader) === RECORDIO_TYPE ? "recordio" : encodingOf(contentTypeHeader);
  if (!content) {
    throw new ApiError(415, `Expecting 'Content-Type' of ${JSON_TYPE} or ${PROTOBUF_TYPE} or ${RECORDIO_TYPE}, got '${contentTypeHeader}'`);
  }
  const messageContentHeader = lastValue(headers.get(MESSAGE_CONTENT_TYPE));
  let messageContent: Encoding | undefined;
  if (content === "recordio") {
    if (messageContentHeader === null) {
      throw new ApiError(400, `Expecting '${MESSAGE_CONTENT_TYPE}' to be set for streaming requests`);
    }
    messageContent = encodingOf(messageContentHeader);
    if (!messageContent) {
      throw new ApiError(415, `Expecting '${MESSAGE_CONTENT_TYPE}' of ${JSON_TYPE} or ${PROTOBUF_TYPE}, got '${messageContentHeader}'`);
    }
  } else if (messageContentHeader !== null) {
    throw new ApiError(415, `Expecting '${MESSAGE_CONTENT_TYPE}' to be not set for non-streaming requests`);
  }

  // Mesos reads the last Accept line; Bun joins repeated lines, so "json" then "recordio" on
  // two lines and "json, recordio" on one look the same here. A request that names RecordIO and
  // either sends Message-Accept (which only a streaming Accept may carry) or accepts neither
  // JSON nor protobuf asks for a stream: that is what mesos-go sends for its streaming calls
  // (Accept: application/json, then Accept: application/recordio and Message-Accept).
  const acceptHeader = headers.get("accept");
  const messageAcceptHeader = lastValue(headers.get(MESSAGE_ACCEPT));
  const wantsStream =
    names(acceptHeader, RECORDIO_TYPE) &&
    (messageAcceptHeader !== null || !(accepts(acceptHeader, JSON_TYPE) || accepts(acceptHeader, PROTOBUF_TYPE)));
  const accept = wantsStream ? "recordio" : (["json", "protobuf", "recordio"] as const).find((m) => accepts(acceptHeader, MEDIA_TYPE[m]));
  if (!accept) {
    throw new ApiError(406, `Expecting 'Accept' to allow ${JSON_TYPE} or ${PROTOBUF_TYPE} or ${RECORDIO_TYPE}, got '${acceptHeader}'`);
  }
  let messageAccept: Encoding | undefined;
  if (accept === "recordio") {
    messageAccept = (["json", "protobuf"] as const).find((m) => accepts(messageAcceptHeader, MEDIA_TYPE[m]));
    if (!messageAccept) {
      throw new ApiError(406, `Expecting '${MESSAGE_ACCEPT}' to allow ${JSON_TYPE} or ${PROTOBUF_TYPE}, got '${messageAcceptHeader}'`);
    }
  } else if (messageAcceptHeader !== null) {
    throw new ApiError(406, `Expecting '${MESSAGE_ACCEPT}' to be not set for non-streaming responses`);
  }
  return { content, messageContent, accept, messageAccept };
}

/** The checks that need the call's type: which calls may stream their request or answer. */
export function checkStreaming(type: CallType, wire: Wire): void {
  if (wire.content === "recordio" && !STREAMING_REQUEST.has(type)) {
    throw new ApiError(415, `Streaming 'Content-Type' ${RECORDIO_TYPE} is not supported for ${type} call`);
  }
  if (wire.content !== "recordio" && STREAMING_REQUEST.has(type)) {
    throw new ApiError(415, `Expecting 'Content-Type' to be ${RECORDIO_TYPE} for ${type} call`);
  }
  if (wire.accept === "recordio" && !STREAMING_ANSWER.has(type)) {
    throw new ApiError(406, `Streaming response is not supported for ${type} call`);
  }
}

/**
 * A whole body or one record as the JSON-shaped agent::Call: JSON parsed, protobuf decoded
 * to the same shape (proto field names, enum names); 400 naming what is wrong.
 */
export async function decodeCall(bytes: Uint8Array, encoding: Encoding, parseJson: (text: string) => unknown): Promise<unknown> {
  if (encoding === "json") return parseJson(decodeUtf8(bytes));
  const { decode, ProtobufError } = await protobuf();
  try {
    return decode("mesos.v1.agent.Call", bytes);
  } catch (err) {
    if (err instanceof ProtobufError) throw new ApiError(400, `Failed to parse body into a protobuf object: ${err.message}`);
    throw err;
  }
}

/**
 * The first record of a RecordIO request body, and the records after it for the handler.
 * 400 if the body ends before one, or is not RecordIO.
 */
export async function firstRecord(
  request: Request,
  maxRecordBytes: number,
): Promise<{ record: Uint8Array; rest: AsyncGenerator<Uint8Array> }> {
  if (!request.body) throw new ApiError(400, "Received EOF while reading request body");
  const records = readRecords(request.body, maxRecordBytes);
  let first;
  try {
    first = await records.next();
  } catch (err) {
    if (err instanceof RecordioError) throw new ApiError(400, err.message);
    throw err;
  }
  if (first.done) throw new ApiError(400, "Received EOF while reading request body");
  return { record: first.value, rest: records };
}

// --- answers ---------------------------------------------------------------------------------

/**
 * A call's answer as its JSON-shaped agent::Response, built once and sent in the encoding the
 * client accepts. `later` is a field whose value comes later (WAIT_CONTAINER's at exit): the
 * status line, headers and the head's fields go out at once, the field when it resolves.
 */
export class Answer {
  constructor(
    readonly head: Message,
    readonly later?: { field: string; value: Promise<Message> },
  ) {}
}

/** A JSON-shaped message: what JSON.stringify makes of it is what is sent, in either encoding. */
export type Message = Record<string, unknown>;

export function answer(body: Message): Answer {
  return new Answer(body);
}

export function answerLater(head: Message, field: string, value: Promise<Message>): Answer {
  return new Answer(head, { field, value });
}

const utf8 = new TextEncoder();

/** The HTTP response for an Answer in `wire.accept` (JSON or protobuf). */
export async function answerResponse(a: Answer, wire: Wire): Promise<Response> {
  const encoding: Encoding = wire.accept === "protobuf" ? "protobuf" : "json";
  const headers = { "Content-Type": MEDIA_TYPE[encoding] };
  const encode = encoding === "protobuf" ? (await protobuf()).encode : undefined;
  if (!a.later) {
    const body = encode ? encode("mesos.v1.agent.Response", a.head) : JSON.stringify(a.head);
    return new Response(body, { status: 200, headers });
  }
  const { field, value } = a.later;
  // Both encodings can be cut in two: JSON text split before the late field's value, and
  // protobuf, where a message followed by another is read as the two merged.
  const first = encode
    ? encode("mesos.v1.agent.Response", a.head)
    : utf8.encode(`${JSON.stringify(a.head).slice(0, -1)}${Object.keys(a.head).length ? "," : ""}${JSON.stringify(field)}:`);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      // Bun sends the status line and headers with the first bytes of the body, not before.
      controller.enqueue(first);
    },
    async pull(controller) {
      try {
        const v = await value;
        controller.enqueue(encode ? encode("mesos.v1.agent.Response", { [field]: v }) : utf8.encode(`${JSON.stringify(v)}}`));
        controller.close();
      } catch (err) {
        // The status is out already: all that is left is to cut the body short.
        log.warn(`answering ${String(a.head.type)}: ${(err as Error).message}; the response body is cut short`);
        controller.error(err);
      }
    },
  });
  return new Response(body, { status: 200, headers });
}

// --- streaming answers -------------------------------------------------------------------------

/** What a streaming answer holds for a slow client before its source is asked to wait (backlogged). */
const STREAM_QUEUE = new ByteLengthQueuingStrategy({ highWaterMark: 1 << 20 });

/**
 * The body of a streaming answer (LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_OUTPUT):
 * RecordIO records of agent::ProcessIO in the message encoding, with a HEARTBEAT record at
 * once and every `heartbeatNs` after it, until closed or the client goes away.
 */
export class ProcessIOStream {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private timer: ReturnType<typeof setInterval> | undefined;
  private done = false;
  /** Waiting for the client to take what is queued (see drained). */
  private pulled: Array<() => void> = [];

  /** A stream in `encoding`, once the protobuf codec is loaded if it needs it. */
  static async open(encoding: Encoding, heartbeatNs: number, onClientGone?: () => void): Promise<ProcessIOStream> {
    const codec = encoding === "protobuf" ? await protobuf() : undefined;
    return new ProcessIOStream(encoding, heartbeatNs, codec, onClientGone);
  }

  private constructor(
    readonly encoding: Encoding,
    readonly heartbeatNs: number,
    private readonly codec: typeof Codec | undefined,
    private readonly onClientGone: () => void = () => {},
  ) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
          this.heartbeat();
          this.timer = setInterval(() => this.heartbeat(), Math.max(1, Math.round(heartbeatNs / 1e6)));
        },
        pull: () => {
          for (const resolve of this.pulled.splice(0)) resolve();
        },
        cancel: () => {
          this.stop();
          this.onClientGone();
        },
      },
      STREAM_QUEUE,
    );
  }

  /** Does the client have more queued than it took so far? (Then wait for drained() before sending more.) */
  backlogged(): boolean {
    return !this.done && (this.controller.desiredSize ?? 1) <= 0;
  }

  /** Resolves once the client has taken what is queued (at once if nothing waits, or the stream is over). */
  drained(): Promise<void> {
    if (this.done || (this.controller.desiredSize ?? 1) > 0) return Promise.resolve();
    return new Promise((resolve) => this.pulled.push(resolve));
  }

  /** Sends one agent::ProcessIO (JSON-shaped). */
  send(processIO: Message): void {
    if (this.done) return;
    const message = this.codec ? this.codec.encode("mesos.v1.agent.ProcessIO", processIO) : JSON.stringify(processIO);
    this.controller.enqueue(encodeRecord(message));
  }

  close(): void {
    if (this.done) return;
    this.stop();
    this.controller.close();
  }

  private heartbeat(): void {
    this.send({ type: "CONTROL", control: { type: "HEARTBEAT", heartbeat: { interval: { nanoseconds: this.heartbeatNs } } } });
  }

  private stop(): void {
    this.done = true;
    if (this.timer) clearInterval(this.timer);
    for (const resolve of this.pulled.splice(0)) resolve();
  }
}

/**
 * The HTTP response carrying a ProcessIOStream. As Mesos' I/O switchboard: Content-Type is the
 * accepted type, and with RecordIO, Message-Content-Type the accepted message type; the body
 * is RecordIO either way.
 */
export function streamResponse(stream: ProcessIOStream, wire: Wire): Response {
  const headers: Record<string, string> = { "Content-Type": MEDIA_TYPE[wire.accept] };
  if (wire.accept === "recordio") headers[MESSAGE_CONTENT_TYPE] = MEDIA_TYPE[stream.encoding];
  return new Response(stream.body, { status: 200, headers });
}

/** The message encoding of a streaming answer: Message-Accept with RecordIO, else the Accept. */
export function streamEncoding(wire: Wire): Encoding {
  return wire.accept === "recordio" ? (wire.messageAccept ?? "json") : wire.accept;
}
