// RecordIO framing: records encoded as `<length>\n<bytes>`, decoded however the stream is cut
// (byte by byte, several records per chunk), and garbage refused with a message saying where.
import { describe, expect, test } from "bun:test";
import { encodeRecord, readRecords, RecordDecoder, RecordioError } from "../../src/mesos/recordio.ts";

const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

describe("encodeRecord", () => {
  test("length in bytes, a newline, the message", () => {
    expect(text(encodeRecord("hello"))).toBe("5\nhello");
    expect(text(encodeRecord(""))).toBe("0\n");
    // é is two bytes in UTF-8: the length counts bytes, not characters.
    expect(text(encodeRecord("é"))).toBe("2\n\xc3\xa9");
    expect(encodeRecord(new Uint8Array([0, 10, 255]))).toEqual(new Uint8Array([0x33, 0x0a, 0, 10, 255]));
  });
});

describe("RecordDecoder", () => {
  // Records with newlines and digits inside, an empty one, and binary bytes.
  const messages = ['{"type":"DATA"}', "", "12\n34\n", "\x00\xff\n", "x".repeat(300)].map(bytes);
  const stream = new Uint8Array(Buffer.concat(messages.map((m) => encodeRecord(m))));

  test("a stream in one piece gives every record, in order", () => {
    const d = new RecordDecoder(1024);
    expect(d.decode(stream)).toEqual(messages);
    d.end();
  });

  test("a stream fed byte by byte gives the same records", () => {
    const d = new RecordDecoder(1024);
    const got: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i++) got.push(...d.decode(stream.subarray(i, i + 1)));
    expect(got).toEqual(messages);
    d.end();
  });

  test("every cut of the stream into two pieces gives the same records", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new RecordDecoder(1024);
      const got = [...d.decode(stream.subarray(0, cut)), ...d.decode(stream.subarray(cut))];
      expect({ cut, got }).toEqual({ cut, got: messages });
      d.end();
    }
  });

  test("records given out do not change when the decoder reuses its input", () => {
    const d = new RecordDecoder(64);
    const chunk = bytes("3\nabc");
    const [record] = d.decode(chunk);
    chunk.fill(0x7a);
    expect(text(record!)).toBe("abc");
  });

  const garbage: Array<[string, string, RegExp]> = [
    ["a letter in the length", "1x\nab", /record length must be decimal digits and a newline; byte 1 is 'x'/],
    ["a control byte in the length", "\x01", /byte 0 is 0x01/],
    ["a sign", "-1\n", /byte 0 is '-'/],
    ["an empty length", "\nabc", /a record length is empty \(a newline at byte 0\)/],
    ["a record over the limit", "1025\n", /a record of 1025 bytes is over the limit of 1024 bytes/],
    ["a length with more digits than the limit has", "00001\n", /a record length of more than 4 digits is over the limit of 1024 bytes/],
    ["JSON without framing", '{"type":"GET_HEALTH"}', /byte 0 is '\{'/],
  ];
  for (const [what, input, pattern] of garbage) {
    test(`garbage is refused: ${what}`, () => {
      const d = new RecordDecoder(1024);
      expect(() => d.decode(bytes(input))).toThrow(pattern);
      // The decoder stays failed: there is no way to find the next record boundary.
      expect(() => d.decode(bytes("1\na"))).toThrow(RecordioError);
      expect(() => d.end()).toThrow(pattern);
    });
  }

  test("the position in errors counts bytes across chunks", () => {
    const d = new RecordDecoder(1024);
    expect(d.decode(bytes("2\nab1"))).toEqual([bytes("ab")]);
    expect(() => d.decode(bytes("0?"))).toThrow(/byte 6 is '\?'/);
  });

  test("a stream that ends inside a record or its length is an error; on a boundary it is not", () => {
    const inside = new RecordDecoder(1024);
    inside.decode(bytes("5\nab"));
    expect(() => inside.end()).toThrow(/the stream ended inside a record: 2 of its 5 bytes arrived/);
    const inLength = new RecordDecoder(1024);
    inLength.decode(bytes("12"));
    expect(() => inLength.end()).toThrow(/the stream ended inside a record length \('12' and no newline\)/);
    const clean = new RecordDecoder(1024);
    clean.decode(bytes("1\na0\n"));
    clean.end();
  });
});

describe("readRecords", () => {
  function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
    return new ReadableStream({
      start(c) {
        for (const chunk of chunks) c.enqueue(bytes(chunk));
        c.close();
      },
    });
  }

  test("yields records as chunks complete them", async () => {
    const got: string[] = [];
    for await (const r of readRecords(streamOf(["3\nab", "c2", "\nde", "", "0\n"]), 100)) got.push(text(r));
    expect(got).toEqual(["abc", "de", ""]);
  });

  test("throws on garbage after the records before it, and on a cut record", async () => {
    const got: string[] = [];
    const bad = (async () => {
      for await (const r of readRecords(streamOf(["1\na", "zz"]), 100)) got.push(text(r));
    })();
    await expect(bad).rejects.toThrow(/byte 3 is 'z'/);
    expect(got).toEqual(["a"]);
    const cut = (async () => {
      for await (const _ of readRecords(streamOf(["9\nabc"]), 100));
    })();
    await expect(cut).rejects.toThrow(/3 of its 9 bytes/);
  });
});
