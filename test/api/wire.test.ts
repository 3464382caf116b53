// The pieces of the API's wire that no call uses end to end yet: streaming answers (RecordIO
// records of ProcessIO with heartbeats, in JSON and protobuf) and an answer whose last field
// comes later, read as a client reads them.
import { describe, expect, test } from "bun:test";
import { answerLater, answerResponse, ProcessIOStream, streamEncoding, streamResponse, type Wire } from "../../src/api/wire.ts";
import { RecordDecoder } from "../../src/mesos/recordio.ts";
import { decodeProcessIO, decodeResponse, ENCODINGS, int64, MEDIA } from "../helpers/protobuf.ts";

/** Reads records off a body until `enough` says stop; returns them decoded. */
async function readUntil(
  body: ReadableStream<Uint8Array>,
  decodeRecord: (r: Uint8Array) => Record<string, unknown>,
  enough: (got: Array<Record<string, unknown>>) => boolean,
): Promise<Array<Record<string, unknown>>> {
  const reader = body.getReader();
  const decoder = new RecordDecoder(1 << 20);
  const got: Array<Record<string, unknown>> = [];
  while (!enough(got)) {
    const { done, value } = await reader.read();
    if (done) break;
    for (const r of decoder.decode(value)) got.push(decodeRecord(r));
  }
  reader.releaseLock();
  return got;
}

for (const encoding of ENCODINGS) {
  const decodeRecord = (r: Uint8Array) =>
    encoding === "json" ? (JSON.parse(new TextDecoder().decode(r)) as Record<string, unknown>) : decodeProcessIO(r);
  const isHeartbeat = (m: Record<string, unknown>) => (m.control as { type?: string } | undefined)?.type === "HEARTBEAT";

  describe(`a streaming answer in ${encoding}`, () => {
    test("heartbeats at once and then every interval, each saying the interval; data records between them", async () => {
      const stream = await ProcessIOStream.open(encoding, 50_000_000);
      stream.send({ type: "DATA", data: { type: "STDOUT", data: Buffer.from("hello\n").toString("base64") } });
      const got = await readUntil(stream.body, decodeRecord, (g) => g.filter(isHeartbeat).length >= 3);
      stream.close();
      expect(got[0]).toMatchObject({ type: "CONTROL", control: { type: "HEARTBEAT" } });
      expect(got[1]).toEqual({ type: "DATA", data: { type: "STDOUT", data: Buffer.from("hello\n").toString("base64") } });
      for (const h of got.filter(isHeartbeat)) {
        const interval = (h.control as { heartbeat: { interval: { nanoseconds: unknown } } }).heartbeat.interval.nanoseconds;
        expect(int64(interval)).toBe(50_000_000);
      }
    });

    test("close ends the body; a client that goes away stops it and is reported", async () => {
      const closed = await ProcessIOStream.open(encoding, 60_000_000_000);
      closed.close();
      const records = await readUntil(closed.body, decodeRecord, () => false);
      expect(records.map(isHeartbeat)).toEqual([true]);

      let gone = 0;
      const cancelled = await ProcessIOStream.open(encoding, 20_000_000, () => gone++);
      await cancelled.body.cancel();
      expect(gone).toBe(1);
      cancelled.send({ type: "DATA", data: { type: "STDOUT", data: "" } }); // a no-op, not a throw
    });
  });

  test(`an answer with a late field in ${encoding}: the first bytes at once, the whole a valid message at the end`, async () => {
    let resolve!: (v: Record<string, unknown>) => void;
    const later = new Promise<Record<string, unknown>>((r) => (resolve = r));
    const wire: Wire = { content: encoding, accept: encoding };
    const res = await answerResponse(answerLater({ type: "WAIT_CONTAINER" }, "wait_container", later), wire);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(MEDIA[encoding]);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.value!.byteLength).toBeGreaterThan(0);
    resolve({ exit_status: 256 });
    const parts = [first.value!];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
    }
    const whole = new Uint8Array(Buffer.concat(parts));
    const message = encoding === "json" ? JSON.parse(new TextDecoder().decode(whole)) : decodeResponse(whole);
    expect(message).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 256 } });
  });
}

test("a streaming answer's headers follow the Accept, as Mesos' I/O switchboard sends them", async () => {
  const cases: Array<[Wire, string, string | null, string]> = [
    [{ content: "json", accept: "recordio", messageAccept: "protobuf" }, "application/recordio", MEDIA.protobuf, "protobuf"],
    [{ content: "json", accept: "recordio", messageAccept: "json" }, "application/recordio", MEDIA.json, "json"],
    // A non-streaming Accept still gets RecordIO records, in that type (Mesos' backwards compatibility).
    [{ content: "json", accept: "json" }, MEDIA.json, null, "json"],
    [{ content: "protobuf", accept: "protobuf" }, MEDIA.protobuf, null, "protobuf"],
  ];
  for (const [wire, type, messageType, encoding] of cases) {
    expect(streamEncoding(wire)).toBe(encoding as "json" | "protobuf");
    const stream = await ProcessIOStream.open(streamEncoding(wire), 1_000_000_000);
    const res = streamResponse(stream, wire);
    stream.close();
    const headers = { type: res.headers.get("content-type"), message: res.headers.get("message-content-type") };
    expect(headers).toEqual({ type, message: messageType });
    await res.body!.cancel();
  }
});
