// The launcher's switchboard in this process, on real pipes and a real socket: it keeps the
// output in the sandbox files and hands it to readers and ends when the output does. Its
// socket is bound through /proc/self/fd/N of its runtime dir, and Bun unlinks the path it bound
// when the listener stops: N must still be that directory then, so the switchboard holds it
// open until it has stopped (had N been closed and taken by another directory, Bun would unlink
// a file of that name there, which the first test shows Bun doing).
import { afterAll, expect, test } from "bun:test";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { attachOutput, type OutputEvent } from "../../src/agent/switchboard-client.ts";
import { pipe } from "../../src/ffi/spawn.ts";
import { Switchboard } from "../../src/runtime/switchboard.ts";
import { tempDir } from "../helpers/agent.ts";
import { eventually } from "../agent/support.ts";

const work = tempDir("ucr-switchboard-unit-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The descriptors of this process open on `dir`. */
function fdsOn(dir: string): number[] {
  return readdirSync("/proc/self/fd")
    .map(Number)
    .filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === dir;
      } catch {
        return false;
      }
    });
}

test("Bun unlinks the path a listener bound when it stops, through /proc/self/fd/N whatever N is then", () => {
  const mine = join(work, "bun-mine");
  const theirs = join(work, "bun-theirs");
  mkdirSync(mine);
  mkdirSync(theirs);
  writeFileSync(join(theirs, "io.sock"), "not ours");
  const n = openSync(mine, "r");
  const listener = Bun.listen({ unix: `/proc/self/fd/${n}/io.sock`, socket: { data() {} } });
  closeSync(n);
  const taken = openSync(theirs, "r"); // the lowest free number: n again
  try {
    listener.stop(true);
    // Only when `theirs` took the number does this show the hazard.
    if (taken === n) expect(existsSync(join(theirs, "io.sock"))).toBe(false);
    expect(existsSync(join(mine, "io.sock"))).toBe(true);
  } finally {
    closeSync(taken);
  }
});

test("output to the sandbox files and a reader; its runtime dir held while bound; the end unlinks its own socket only", async () => {
  const runtime = join(work, "runtime");
  const other = join(work, "other");
  mkdirSync(runtime);
  mkdirSync(other);
  const [inR, inW] = pipe();
  const [outR, outW] = pipe();
  const [errR, errW] = pipe();
  const files = { stdout: openSync(join(work, "stdout"), "a"), stderr: openSync(join(work, "stderr"), "a") };
  let ended!: () => void;
  const over = new Promise<void>((resolve) => (ended = resolve));
  Switchboard.open(
    { stdin: inW, stdout: outR, stderr: errR },
    { id: "t", runtimeDir: runtime, waitForReader: true, files, say: () => {}, onEnd: ended },
  );
  // Another directory opened after the bind, under many numbers: had the bound directory's
  // descriptor been closed, one of them would have taken its number.
  writeFileSync(join(other, "io.sock"), "not ours");
  const otherFds = Array.from({ length: 32 }, () => openSync(other, "r"));
  try {
    const events: OutputEvent[] = [];
    let done!: () => void;
    const eof = new Promise<void>((resolve) => (done = resolve));
    await attachOutput(runtime, (e) => {
      events.push(e);
      if (e.kind === "end") done();
    });
    writeSync(outW, "to stdout\n");
    writeSync(errW, "to stderr\n");
    closeSync(outW);
    closeSync(errW);
    await eof;
    await over;
    const text = (kind: string) =>
      events
        .filter((e) => e.kind === kind)
        .map((e) => Buffer.from((e as { data: Uint8Array }).data).toString())
        .join("");
    expect({ stdout: text("stdout"), stderr: text("stderr") }).toEqual({ stdout: "to stdout\n", stderr: "to stderr\n" });
    expect(readFileSync(join(work, "stdout"), "utf8")).toBe("to stdout\n");
    expect(readFileSync(join(work, "stderr"), "utf8")).toBe("to stderr\n");
    expect(existsSync(join(runtime, "io.sock"))).toBe(false);
    expect(readFileSync(join(other, "io.sock"), "utf8")).toBe("not ours");
    expect(fdsOn(runtime)).toEqual([]);
  } finally {
    for (const fd of otherFds) closeSync(fd);
    closeSync(inR);
  }
});

test("output written right before the workload's exit reaches a reader that was paused until the output was over", async () => {
  const runtime = join(work, "runtime-paused");
  mkdirSync(runtime);
  const [inR, inW] = pipe();
  const [outR, outW] = pipe();
  const [errR, errW] = pipe();
  const files = { stdout: openSync(join(work, "paused-stdout"), "a"), stderr: openSync(join(work, "paused-stderr"), "a") };
  let ended = false;
  const over = new Promise<void>((resolve) => {
    Switchboard.open(
      { stdin: inW, stdout: outR, stderr: errR },
      {
        id: "paused",
        runtimeDir: runtime,
        waitForReader: true,
        files,
        say: () => {},
        onEnd: () => {
          ended = true;
          resolve();
        },
      },
    );
  });
  try {
    // Two readers: one that reads as it comes, one that reads nothing until the output is over.
    const reader = () => {
      const got = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };
      let done!: () => void;
      const eof = new Promise<void>((resolve) => (done = resolve));
      const text = (kind: "stdout" | "stderr") => Buffer.concat(got[kind]).toString();
      const onEvent = (e: OutputEvent) => {
        if (e.kind === "end") done();
        else got[e.kind].push(e.data);
      };
      return { onEvent, eof, text };
    };
    const eager = reader();
    const slow = reader();
    await attachOutput(runtime, eager.onEvent);
    const held = await attachOutput(runtime, slow.onEvent);
    held.pause();
    // ~0.6 MB and ~0.3 MB, less than the switchboard holds for a reader: it reads the pipes to EOF
    // while the slow reader reads nothing, and then has all of it queued for that reader.
    const child = Bun.spawn(["sh", "-c", "seq 1 100000; seq 1 50000 >&2"], { stdin: "ignore", stdout: outW, stderr: errW });
    closeSync(outW);
    closeSync(errW);
    expect(await child.exited).toBe(0);
    // The output is over (the socket is unlinked then, late readers are told it has shut down),
    // but the switchboard is not: the slow reader has not had it yet.
    expect(await eventually(() => !existsSync(join(runtime, "io.sock")))).toBe(true);
    expect(ended).toBe(false);
    held.resume();
    await Promise.all([eager.eof, slow.eof, over]);
    const want = { stdout: seq(100000), stderr: seq(50000) };
    expect({ stdout: eager.text("stdout"), stderr: eager.text("stderr") }).toEqual(want);
    expect({ stdout: slow.text("stdout"), stderr: slow.text("stderr") }).toEqual(want);
    expect(readFileSync(join(work, "paused-stdout"), "utf8")).toBe(want.stdout);
    expect(readFileSync(join(work, "paused-stderr"), "utf8")).toBe(want.stderr);
  } finally {
    closeSync(inR);
  }
});

function seq(n: number): string {
  return `${Array.from({ length: n }, (_, i) => i + 1).join("\n")}\n`;
}
