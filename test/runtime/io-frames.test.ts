// The switchboard's framing between the agent and the launcher: frames read back whole however
// the byte stream is cut, data split at the frame limit, an oversized length refused from its
// header, and a sender that keeps what a socket did not take, in order, until it drains.
import { expect, test } from "bun:test";
import { Frame, FrameReader, FrameSender, MAX_FRAME, dataFrames, frame, parseWindow, windowFrame } from "../../src/runtime/io-frames.ts";

test("frames come back whole and in order however the stream is cut", () => {
  const sent = [frame(Frame.OUTPUT), frame(Frame.STDOUT, Buffer.from("hello")), windowFrame(50, 132), frame(Frame.END)];
  const bytes = Buffer.concat(sent);
  for (const cut of [1, 2, 3, 5, 7, bytes.byteLength]) {
    const reader = new FrameReader();
    const got = [];
    for (let at = 0; at < bytes.byteLength; at += cut) got.push(...reader.push(bytes.subarray(at, at + cut)));
    expect(got.map((f) => f.kind)).toEqual([Frame.OUTPUT, Frame.STDOUT, Frame.WINDOW, Frame.END]);
    expect(Buffer.from(got[1]!.payload).toString()).toBe("hello");
    expect(parseWindow(got[2]!.payload)).toEqual({ rows: 50, columns: 132 });
  }
});

test("data larger than a frame is cut into frames of at most MAX_FRAME; a longer length is refused from its header", () => {
  const frames = dataFrames(Frame.STDIN, new Uint8Array(MAX_FRAME * 2 + 3));
  expect(frames.map((f) => f.byteLength - 5)).toEqual([MAX_FRAME, MAX_FRAME, 3]);
  const header = new Uint8Array([Frame.STDOUT, 0xff, 0xff, 0xff, 0xff]);
  expect(() => new FrameReader().push(header)).toThrow(`a switchboard frame of ${0xffffffff} bytes is over ${MAX_FRAME}`);
  expect(() => parseWindow(new Uint8Array(3))).toThrow("a window frame has 3 bytes, not 4");
});

test("a sender keeps what the socket did not take and writes it, in order, when it drains", async () => {
  const written: number[] = [];
  let room = 3;
  const socket = {
    write(bytes: Uint8Array): number {
      const n = Math.min(room, bytes.byteLength);
      written.push(...bytes.subarray(0, n));
      room -= n;
      return n;
    },
  };
  const sender = new FrameSender(socket);
  sender.send(new Uint8Array([1, 2, 3, 4, 5]));
  sender.send(new Uint8Array([6, 7]));
  expect(written).toEqual([1, 2, 3]);
  expect(sender.queued).toBe(4);
  let drained = false;
  void sender.drained().then(() => (drained = true));
  room = 2;
  expect(sender.drain()).toBe(false);
  room = 100;
  expect(sender.drain()).toBe(true);
  await Bun.sleep(0);
  expect({ written, queued: sender.queued, drained }).toEqual({ written: [1, 2, 3, 4, 5, 6, 7], queued: 0, drained: true });
});
