// The switchboard's framing between the agent and the launcher: frames read back whole however
// the byte stream is cut, data split at the frame limit, an oversized length refused from its
// header, and a sender that keeps what a socket did not take, in order, until it drains, and
// ends its socket only after all of it went out.
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/agent.ts";
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
    end() {},
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

const work = tempDir("ucr-io-frames-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("a sender ended while its peer reads nothing ends the socket after all it holds, on a real socket", async () => {
  const path = join(work, "end.sock");
  const data = new Uint8Array(4 << 20).map((_, i) => i * 7);
  let closed!: () => void;
  const serverClosed = new Promise<void>((resolve) => (closed = resolve));
  let held = 0;
  const listener = Bun.listen<{ sender: FrameSender }>({
    unix: path,
    socket: {
      open: (s) => {
        s.data = { sender: new FrameSender(s) };
        for (const f of dataFrames(Frame.STDOUT, data)) s.data.sender.send(f);
        held = s.data.sender.queued;
        s.data.sender.end(frame(Frame.END));
      },
      drain: (s) => void s.data.sender.drain(),
      close: (s) => {
        s.data.sender.close();
        closed();
      },
      data: () => {},
    },
  });
  try {
    const reader = new FrameReader();
    const got: Uint8Array[] = [];
    let sawEnd = false;
    let gone!: () => void;
    const clientClosed = new Promise<void>((resolve) => (gone = resolve));
    await Bun.connect({
      unix: path,
      socket: {
        data: (_s, chunk) => {
          for (const f of reader.push(chunk)) {
            if (f.kind === Frame.STDOUT) got.push(f.payload);
            if (f.kind === Frame.END) sawEnd = true;
          }
        },
        close: () => gone(),
      },
    });
    await Promise.all([clientClosed, serverClosed]);
    // Much more than the kernel took was held when the socket was asked to end.
    expect(held).toBeGreaterThan(1 << 20);
    expect({ bytes: Buffer.concat(got).equals(Buffer.from(data)), sawEnd }).toEqual({ bytes: true, sawEnd: true });
  } finally {
    listener.stop(true);
  }
});
