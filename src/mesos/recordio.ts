// RecordIO, the framing of Mesos' streaming calls: each record is its length in decimal ASCII,
// a newline, then that many bytes of message. An encoder, and a decoder fed in pieces.
import { errorOfKind } from "../errors.ts";

export class RecordioError extends errorOfKind("invalid") {}

const NEWLINE = 0x0a;
const encoder = new TextEncoder();

/** `<length>\n<message>`, one record. A string message is sent as its UTF-8 bytes. */
export function encodeRecord(message: Uint8Array | string): Uint8Array {
  const body = typeof message === "string" ? encoder.encode(message) : message;
  const head = encoder.encode(`${body.byteLength}\n`);
  const record = new Uint8Array(head.byteLength + body.byteLength);
  record.set(head, 0);
  record.set(body, head.byteLength);
  return record;
}

/**
 * Splits a byte stream into records, however the stream is cut. A record longer than
 * `maxRecordBytes` is refused from its header alone, before any of it is buffered; a length
 * that is not decimal digits is refused at its first wrong byte. After an error the decoder
 * stays failed: the stream has no way to find the next record boundary.
 */
export class RecordDecoder {
  private readonly maxDigits: number;
  /** Digits of the length being read, or null while inside a record's message. */
  private header: string | null = "";
  private need = 0;
  private parts: Uint8Array[] = [];
  private have = 0;
  private failed: RecordioError | undefined;
  /** Bytes consumed so far, so errors can say where the stream went wrong. */
  private offset = 0;

  constructor(readonly maxRecordBytes: number) {
    this.maxDigits = String(maxRecordBytes).length;
  }

  /** Feeds the next bytes of the stream; returns the records they complete, in order. */
  decode(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    const records: Uint8Array[] = [];
    let i = 0;
    while (i < chunk.byteLength) {
      if (this.header !== null) {
        const byte = chunk[i]!;
        if (byte === NEWLINE) {
          if (this.header === "") this.fail(`a record length is empty (a newline at byte ${this.offset + i})`);
          this.need = Number(this.header);
          if (this.need > this.maxRecordBytes) {
            this.fail(`a record of ${this.need} bytes is over the limit of ${this.maxRecordBytes} bytes`);
          }
          this.header = null;
          i++;
          if (this.need === 0) records.push(this.take());
          continue;
        }
        if (byte < 0x30 || byte > 0x39) {
          this.fail(`a record length must be decimal digits and a newline; byte ${this.offset + i} is ${show(byte)}`);
        }
        if (this.header.length >= this.maxDigits) {
          this.fail(`a record length of more than ${this.maxDigits} digits is over the limit of ${this.maxRecordBytes} bytes`);
        }
        this.header += String.fromCharCode(byte);
        i++;
        continue;
      }
      const n = Math.min(this.need - this.have, chunk.byteLength - i);
      this.parts.push(chunk.subarray(i, i + n));
      this.have += n;
      i += n;
      if (this.have === this.need) records.push(this.take());
    }
    this.offset += chunk.byteLength;
    return records;
  }

  /** The stream ended: an error if it ended inside a record. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.header === null) {
      this.fail(`the stream ended inside a record: ${this.have} of its ${this.need} bytes arrived`);
    }
    if (this.header !== "") this.fail(`the stream ended inside a record length ('${this.header}' and no newline)`);
  }

  private take(): Uint8Array {
    const record = this.parts.length === 1 ? this.parts[0]!.slice() : new Uint8Array(this.need);
    if (this.parts.length !== 1) {
      let at = 0;
      for (const p of this.parts) {
        record.set(p, at);
        at += p.byteLength;
      }
    }
    this.parts = [];
    this.have = 0;
    this.need = 0;
    this.header = "";
    return record;
  }

  private fail(message: string): never {
    this.failed = new RecordioError(`Malformed RecordIO stream: ${message}`);
    throw this.failed;
  }
}

function show(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? `'${String.fromCharCode(byte)}'` : `0x${byte.toString(16).padStart(2, "0")}`;
}

/**
 * The records of a byte stream, as they complete. Ends when the stream ends on a record
 * boundary; throws RecordioError on garbage or a stream cut inside a record.
 */
export async function* readRecords(stream: ReadableStream<Uint8Array>, maxRecordBytes: number): AsyncGenerator<Uint8Array> {
  const decoder = new RecordDecoder(maxRecordBytes);
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* decoder.decode(value);
    }
    decoder.end();
  } finally {
    reader.releaseLock();
  }
}
