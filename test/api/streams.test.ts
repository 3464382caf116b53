// The streaming calls end to end, in JSON and protobuf: LAUNCH_NESTED_CONTAINER_SESSION runs a
// command inside a running standalone container (Mesos' DEBUG semantics) and streams its output;
// its output ending or its client going away ends it; ATTACH_CONTAINER_OUTPUT and _INPUT reach a
// container launched with tty_info (its own /dev/pts, window sizes) or a session; one writer at
// a time; heartbeats at --http_heartbeat_interval; Mesos' status codes for everything else. A slow
// reader (fetch, or a plain TCP client that leaves the answer in the kernel's buffers) holds the
// output back, and gets every byte of it, the last written right before the exit too, before the end.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, readlinkSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { ENCODINGS, MEDIA, caller, int64, type Encoding } from "../helpers/protobuf.ts";
import { InputStream, Records, slowStreamCall, streamCall, type Id } from "../helpers/streams.ts";
import { RecordDecoder } from "../../src/mesos/recordio.ts";
import { alpineArchive, dockerArgs, eventually, isRoot } from "../agent/support.ts";

const work = tempDir("ucr-streams-");
let agent: RunningAgent;
const HEARTBEAT_NS = 200_000_000;
/** How long heartbeats are counted for (about 15 intervals). */
const HEARTBEAT_WINDOW_MS = 3000;
const image = { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } };

beforeAll(async () => {
  if (!isRoot) return;
  const images = await alpineArchive(join(work, "images"));
  agent = await startAgent({ args: [...dockerArgs(images), "--http_heartbeat_interval=200ms"] });
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

async function json(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}

async function launch(
  encoding: Encoding,
  id: Id,
  script: string,
  container: Record<string, unknown> = image,
  env?: Record<string, string>,
) {
  const res = await caller(
    agent,
    encoding,
  )({
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: id,
      command: {
        value: script,
        ...(env ? { environment: { variables: Object.entries(env).map(([name, value]) => ({ name, value })) } } : {}),
      },
      container,
    },
  });
  expect({ status: res.status, text: await res.text() }).toEqual({ status: 200, text: "" });
}

async function waitFor(encoding: Encoding, id: Id): Promise<any> {
  const res = await caller(agent, encoding)({ type: "WAIT_CONTAINER", wait_container: { container_id: id } });
  expect(res.status).toBe(200);
  return (await json(res)).wait_container;
}

async function kill(id: Id): Promise<void> {
  await agent.call({ type: "KILL_CONTAINER", kill_container: { container_id: id } });
  await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: id } });
  await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: id } });
}

async function pidOf(id: Id): Promise<number> {
  const res = await agent.call({ type: "GET_CONTAINERS", get_containers: { show_nested: true, show_standalone: true } });
  const all = (await json(res)).get_containers.containers as Array<{ container_status: { container_id: Id; executor_pid?: number } }>;
  const found = all.find((c) => JSON.stringify(c.container_status.container_id) === JSON.stringify(id));
  return found!.container_status.executor_pid!;
}

function session(id: Id, script: string, container?: Record<string, unknown>, env?: Record<string, string>) {
  return {
    type: "LAUNCH_NESTED_CONTAINER_SESSION",
    launch_nested_container_session: {
      container_id: id,
      command: {
        value: script,
        ...(env ? { environment: { variables: Object.entries(env).map(([name, value]) => ({ name, value })) } } : {}),
      },
      ...(container ? { container } : {}),
    },
  };
}

describe.skipIf(!isRoot)("streaming calls (need root for containers)", () => {
  for (const encoding of ENCODINGS) {
    describe(encoding, () => {
      test("a session runs inside its standalone parent: environment, working dir, namespaces, cgroups; output, status", async () => {
        const parent = { value: `p-${encoding}` };
        await launch(encoding, parent, "cd /tmp && exec sleep 600", image, { FOO: "from-parent", KEPT: "parent" });
        const ppid = await pidOf(parent);
        const id = { value: "s1", parent };
        const res = await streamCall(
          agent,
          encoding,
          session(
            id,
            "echo FOO=$FOO KEPT=$KEPT SANDBOX=$MESOS_SANDBOX; pwd; for n in mnt pid net uts ipc; do readlink /proc/self/ns/$n; done; " +
              "cat /proc/self/cgroup; echo to-stderr >&2; exit 3",
            undefined,
            { KEPT: "session" },
          ),
        );
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe("application/recordio");
        expect(res.headers.get("message-content-type")).toBe(MEDIA[encoding]);
        const records = new Records(res, encoding);
        await records.finished();
        const lines = records.stdout.split("\n");
        // The parent's environment (its MESOS_SANDBOX too) under the session's own variables.
        expect(lines[0]).toBe("FOO=from-parent KEPT=session SANDBOX=/mnt/mesos/sandbox");
        // The parent's working directory as it was launched (its shell's `cd` is its own business).
        expect(lines[1]).toBe("/mnt/mesos/sandbox");
        // Every namespace of the parent, its mount namespace too.
        const parentNs = ["mnt", "pid", "net", "uts", "ipc"].map((n) => readlinkSync(`/proc/${ppid}/ns/${n}`));
        expect(lines.slice(2, 7)).toEqual(parentNs);
        // Its cgroups (no cgroup namespace: the host's paths).
        expect(lines.slice(7).filter(Boolean).sort()).toEqual(readFileSync(`/proc/${ppid}/cgroup`, "utf8").trim().split("\n").sort());
        expect(records.stderr).toBe("to-stderr\n");
        expect(records.heartbeats().length).toBeGreaterThanOrEqual(1);
        expect(await waitFor(encoding, id)).toEqual({ exit_status: 768 });
        // Listed as a nested container of its parent until removed.
        const removed = await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: id } });
        expect(removed.status).toBe(200);
        await kill(parent);
      });

      test("a session's input: STDIN data, then empty data closes its stdin; the output and the exit follow", async () => {
        const parent = { value: `in-${encoding}` };
        await launch(encoding, parent, "exec sleep 600");
        const id = { value: "cat", parent };
        const records = new Records(await streamCall(agent, encoding, session(id, "tr a-z A-Z; echo done")), encoding);
        const input = new InputStream(agent, encoding, id);
        input.stdin("hello ");
        input.stdin("session\n");
        await records.until(() => records.stdout.includes("HELLO SESSION"));
        input.stdin(""); // EOF
        await records.finished();
        expect(records.stdout).toBe("HELLO SESSION\ndone\n");
        input.close();
        expect((await input.answer).status).toBe(200);
        expect(await waitFor(encoding, id)).toEqual({ exit_status: 0 });
        await kill(parent);
      });

      test("a container with tty_info: its own /dev/pts at the window size, readers, one writer, resized, ended by input", async () => {
        const id = { value: `tty-${encoding}` };
        await launch(encoding, id, "exec sh", { ...image, tty_info: { window_size: { rows: 33, columns: 101 } } });
        const readers = [0, 1].map(
          async () =>
            new Records(
              await streamCall(agent, encoding, { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: id } }),
              encoding,
            ),
        );
        const [a, b] = await Promise.all(readers);
        const input = new InputStream(agent, encoding, id);
        input.stdin("tty; stty size; echo marker-$((40+2))\n");
        await a!.until(() => a!.stdout.includes("marker-42\r\n"));
        await b!.until(() => b!.stdout.includes("marker-42\r\n"));
        expect(a!.stdout).toMatch(/\/dev\/pts\/0\r\n33 101\r\n/);

        // A second writer: 409 while the first holds the input.
        const second = new InputStream(agent, encoding, id);
        const conflict = await second.answer;
        expect({ status: conflict.status, text: await conflict.text() }).toEqual({
          status: 409,
          text: "Multiple input connections are not allowed",
        });
        second.close();

        input.resize(50, 132);
        input.stdin("stty size\n");
        await a!.until(() => a!.stdout.includes("50 132\r\n"));
        input.stdin("exit 7\n");
        await Promise.all([a!.finished(), b!.finished()]);
        // Its output is over: the input's answer is 200 (Mesos answers the input once its switchboard ends).
        expect((await input.answer).status).toBe(200);
        expect(await waitFor(encoding, id)).toEqual({ exit_status: 7 << 8 });
        // The output went to the sandbox too, as Mesos' logger keeps it.
        expect(readFileSync(join(agent.workDir, "containers", id.value, "stdout"), "utf8")).toContain("marker-42");
        // Its switchboard ended with its output.
        const late = await streamCall(agent, encoding, { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: id } });
        expect(late.status).toBe(500);
        expect(await late.text()).toStartWith("I/O switchboard has shutdown");
        await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: id } });
      });

      test("a slow client gets all of the output its session wrote right before its exit, then the end, then its status", async () => {
        const parent = { value: `sl-${encoding}` };
        await launch(encoding, parent, "exec sleep 600");
        const id = { value: "burst", parent };
        // ~7 MB and ~0.6 MB, more than the agent's answer and the kernel's buffers hold for a client
        // that reads nothing: the client lets them fill (the sandbox files stop growing), then reads
        // slower than they are refilled. At the exit, the switchboard and the agent still hold the
        // last of the output for it.
        const sandbox = join(agent.workDir, "containers", parent.value, "containers", id.value);
        const want = { stdout: seq(1000000), stderr: seq(100000) };
        const call = session(id, "seq 1 1000000; seq 1 100000 >&2; exit 3");
        const hold = () => settled([join(sandbox, "stdout"), join(sandbox, "stderr")], want.stdout.length + want.stderr.length);
        const answer = await (await slowStreamCall(agent, encoding, call, { bytesPerSecond: 6 << 20, hold })).answer;
        expect(answer.status).toBe(200);
        expectText(answer.stdout, want.stdout);
        expectText(answer.stderr, want.stderr);
        expect(await waitFor(encoding, id)).toEqual({ exit_status: 3 << 8 });
        await kill(parent);
      });

      test("a TTY session: the parent's /dev/pts, a window size, and Ctrl-D (EOT) ends its shell", async () => {
        const parent = { value: `tp-${encoding}` };
        await launch(encoding, parent, "exec sleep 600");
        const id = { value: "sh", parent };
        const records = new Records(
          await streamCall(
            agent,
            encoding,
            session(id, "exec sh", { type: "MESOS", tty_info: { window_size: { rows: 20, columns: 70 } } }),
          ),
          encoding,
        );
        const input = new InputStream(agent, encoding, id);
        input.stdin("tty; stty size; test -t 0 && echo is-a-$((1+1))-tty\n");
        await records.until(() => records.stdout.includes("is-a-2-tty\r\n"));
        expect(records.stdout).toMatch(/\/dev\/pts\/\d+\r\n20 70\r\n/);
        // Ctrl-D once the shell reads a line again (its prompt is out): typed while it runs the
        // command, the terminal is in canonical mode and takes EOT as an empty line, not as EOF.
        await records.until(() => /is-a-2-tty\r\n[\s\S]*sandbox # /.test(records.stdout));
        input.stdin("\x04");
        await records.finished();
        expect(await waitFor(encoding, id)).toEqual({ exit_status: 0 });
        input.close();
        await kill(parent);
      });
    });
  }

  test("output EOF ends a session that runs on without its output; a client that goes away ends one too", async () => {
    const parent = { value: "ends" };
    await launch("json", parent, "exec sleep 600");
    // Closes stdout and stderr, then sleeps: Mesos destroys it at the output's EOF.
    const closer = { value: "closer", parent };
    const records = new Records(await streamCall(agent, "json", session(closer, "echo bye; exec >&- 2>&-; exec sleep 600")), "json");
    await records.finished();
    expect(records.stdout).toBe("bye\n");
    expect(await waitFor("json", closer)).toEqual({ exit_status: 9 });

    const abort = new AbortController();
    const gone = { value: "gone", parent };
    const res = await streamCall(agent, "json", session(gone, "echo here; exec sleep 600"), abort.signal);
    const r = new Records(res, "json");
    await r.until(() => r.stdout === "here\n");
    abort.abort();
    expect(await waitFor("json", gone)).toEqual({ exit_status: 9 });
    // The agent's output is read from its pipe as it comes: the line may trail WAIT's answer.
    const said = `session ends.gone: its client went away; ending it`;
    for (let i = 0; i < 100 && !agent.log().includes(said); i++) await Bun.sleep(20);
    expect(agent.log()).toContain(said);
    await kill(parent);
  });

  test("a slow reader holds the session's output back: all of it arrives, in order, nothing dropped", async () => {
    const parent = { value: "slow" };
    await launch("json", parent, "exec sleep 600");
    const id = { value: "flood", parent };
    // 15 MB (much more than the agent and the switchboard hold for a reader), in lines that number
    // themselves: a gap or a reordering shows.
    const res = await streamCall(agent, "json", session(id, "seq 1 2000000"));
    const reader = res.body!.getReader();
    const decoder = new RecordDecoder(16 << 20);
    let text = "";
    for (let reads = 0; ; reads++) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const r of decoder.decode(value)) {
        const m = JSON.parse(new TextDecoder().decode(r));
        if (m.type === "DATA") text += Buffer.from(m.data.data, "base64").toString();
      }
      // A reader slower than the session for its first reads: the agent's queue fills, the
      // switchboard and then the session wait.
      if (reads < 50) await Bun.sleep(20);
    }
    const lines = text.trimEnd().split("\n");
    expect(lines.length).toBe(2000000);
    expect(lines.every((l, i) => l === String(i + 1))).toBe(true);
    expect(await waitFor("json", id)).toEqual({ exit_status: 0 });
    await kill(parent);
  });

  test("ATTACH_CONTAINER_OUTPUT: a slow reader and a fast one of a terminal both get all of a large output, then the end", async () => {
    const id = { value: "big-tty" };
    // Waits for a line, so that both readers are there before the output starts.
    await launch("protobuf", id, "read go; seq 1 500000; exit 4", { ...image, tty_info: {} });
    const attach = { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: id } };
    // The terminal echoes the line, and ends each line with CR LF.
    const want = `go\r\n${seq(500000).replaceAll("\n", "\r\n")}`;
    const hold = () => settled([join(agent.workDir, "containers", id.value, "stdout")], want.length);
    // Each answer begins once the agent attached it to the switchboard: both are there before the line goes.
    const slow = await slowStreamCall(agent, "protobuf", attach, { bytesPerSecond: 6 << 20, hold });
    const fast = new Records(await streamCall(agent, "protobuf", attach), "protobuf");
    const input = new InputStream(agent, "protobuf", id);
    input.stdin("go\n");
    const answer = await slow.answer;
    await fast.finished(60_000);
    input.close();
    expect(answer.status).toBe(200);
    expectText(answer.stdout, want);
    expectText(Buffer.from(fast.stdout), want);
    expect(await waitFor("protobuf", id)).toEqual({ exit_status: 4 << 8 });
    await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: id } });
  });

  test("heartbeats every --http_heartbeat_interval while nothing else comes, each saying the interval", async () => {
    const id = { value: "quiet" };
    await launch("json", id, "exec sleep 600", { ...image, tty_info: {} });
    // One attachment per encoding, side by side: each stream has its own heartbeats.
    const streams = await Promise.all(
      ENCODINGS.map(
        async (encoding) =>
          new Records(
            await streamCall(agent, encoding, { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: id } }),
            encoding,
          ),
      ),
    );
    for (const r of streams) await r.until(() => r.heartbeats().length >= 1, 20_000, `a first heartbeat (${r.encoding})`);
    // How many come over a window: about one per interval. The range is wide (half to one and
    // a half times the window over the interval) so a busy machine does not fail it, and still
    // tells the configured interval from the 30 s default or from a timer in seconds.
    const before = streams.map((r) => r.heartbeats().length);
    const start = performance.now();
    await Bun.sleep(HEARTBEAT_WINDOW_MS);
    const counted = streams.map((r, i) => r.heartbeats().length - before[i]!);
    const expected = (performance.now() - start) / (HEARTBEAT_NS / 1e6);
    for (const r of streams) await r.cancel();
    for (const [i, r] of streams.entries()) {
      expect(counted[i]).toBeGreaterThanOrEqual(expected * 0.5);
      expect(counted[i]).toBeLessThanOrEqual(expected * 1.5);
      expect(r.messages.every((m) => m.type === "CONTROL")).toBe(true);
      for (const h of r.heartbeats()) expect(int64(h.control.heartbeat.interval.nanoseconds)).toBe(HEARTBEAT_NS);
    }
    await kill(id);
  });

  test("Mesos' status codes: unknown 404, no switchboard 500, bad sessions 400, an ID in use 202, bad input records 400", async () => {
    const plain = { value: "plain" };
    await launch("json", plain, "exec sleep 600");
    const attach = (id: Id) =>
      streamCall(agent, "json", { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: id } });
    const answer = async (res: Response | Promise<Response>) => {
      const r = await res;
      return { status: r.status, text: await r.text() };
    };
    expect(await answer(attach({ value: "nope" }))).toEqual({ status: 404, text: "Container nope cannot be found" });
    expect(await answer(attach(plain))).toEqual({
      status: 500,
      text: "I/O switchboard server was disabled for this container: plain was launched without tty_info and is not a session",
    });
    const input = new InputStream(agent, "json", plain);
    input.close();
    expect((await answer(input.answer)).status).toBe(500);

    const launchSession = (body: Record<string, unknown>) => answer(streamCall(agent, "json", body));
    expect(await launchSession(session({ value: "orphan" }, "true"))).toEqual({
      status: 400,
      text: "Failed to validate agent::Call: Expecting 'launch_nested_container_session.container_id.parent' to be present",
    });
    expect((await launchSession(session({ value: "x", parent: { value: "nope" } }, "true"))).text).toBe(
      "Parent container nope does not exist",
    );
    expect(
      (await launchSession(session({ value: "x", parent: plain }, "true", { type: "MESOS", linux_info: { share_cgroups: false } }))).status,
    ).toBe(400);
    expect((await launchSession(session({ value: "x", parent: plain }, "true", image))).text).toStartWith(
      "A 'rootfs' cannot be set for DEBUG containers",
    );
    const volumes = { type: "MESOS", volumes: [{ container_path: "/v", mode: "RW", host_path: "/tmp" }] };
    expect((await launchSession(session({ value: "x", parent: plain }, "true", volumes))).text).toBe(
      "Volumes not supported for DEBUG containers",
    );

    // An ID in use: 202 and no stream, as Mesos answers the launch's status as it is.
    const first = new Records(await streamCall(agent, "json", session({ value: "twice", parent: plain }, "exec sleep 600")), "json");
    expect(await launchSession(session({ value: "twice", parent: plain }, "true"))).toEqual({ status: 202, text: "" });
    await first.cancel();

    // A command that cannot run: the session ran (200), its stderr says why, its status is 127 as a shell's.
    const missing = { value: "missing", parent: plain };
    const notFound = new Records(
      await streamCall(agent, "json", {
        type: "LAUNCH_NESTED_CONTAINER_SESSION",
        launch_nested_container_session: { container_id: missing, command: { shell: false, value: "no-such-program" } },
      }),
      "json",
    );
    await notFound.finished();
    expect(notFound.stderr).toStartWith("ucr: executable 'no-such-program' not found in PATH");
    expect(await waitFor("json", missing)).toEqual({ exit_status: 127 << 8 });

    // A session without a terminal cannot be resized; a first record that names no container is refused.
    const piped = { value: "piped", parent: plain };
    const out = new Records(await streamCall(agent, "json", session(piped, "exec cat")), "json");
    const resize = new InputStream(agent, "json", piped);
    resize.resize(10, 10);
    expect(await answer(resize.answer)).toEqual({ status: 400, text: "Unable to set the window size: the container has no terminal" });
    resize.close();
    const wrongFirst = new InputStream(agent, "json", piped, { type: "PROCESS_IO" });
    expect(await answer(wrongFirst.answer)).toEqual({ status: 400, text: "Expecting 'attach_container_input.type' to be CONTAINER_ID" });
    wrongFirst.close();
    const badRecord = new InputStream(agent, "json", piped);
    badRecord.processIO({ type: "DATA", data: { type: "STDOUT", data: "" } });
    expect(await answer(badRecord.answer)).toEqual({ status: 400, text: "Expecting 'process_io.data.type' to be 'STDIN'" });
    badRecord.close();
    await out.cancel();
    await kill(plain);
  });

  test("nothing of a session is left once it and its parent are removed", async () => {
    const parent = { value: "tidy" };
    await launch("json", parent, "exec sleep 600");
    const r = new Records(await streamCall(agent, "json", session({ value: "s", parent }, "echo hi")), "json");
    await r.finished();
    await kill(parent);
    expect(await eventually(() => !readdirSafe(join(agent.workDir, "containers")).includes("tidy"))).toBe(true);
    expect(await eventually(() => !readdirSafe(join(agent.workDir, "run", "containers")).includes("tidy"))).toBe(true);
  });
});

/** The lines 1 to n, as seq prints them. */
function seq(n: number): string {
  return `${Array.from({ length: n }, (_, i) => i + 1).join("\n")}\n`;
}

/** `got` is `want`; if not, where they part and what each has there (not megabytes of both). */
function expectText(got: Buffer, want: string): void {
  const text = got.toString();
  if (text === want) return;
  let at = 0;
  while (at < text.length && text[at] === want[at]) at++;
  expect({ length: text.length, from: at, got: text.slice(at, at + 40) }).toEqual({
    length: want.length,
    from: at,
    got: want.slice(at, at + 40),
  });
}

/**
 * Resolves once the files hold `size` bytes together, or stop growing (three looks 100 ms apart
 * see one size): what a reader that reads nothing holds back has filled every buffer before it.
 */
async function settled(paths: string[], size: number): Promise<void> {
  const sizeOf = (p: string) => {
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  };
  let last = -1;
  let same = 0;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await Bun.sleep(100)) {
    const now = paths.reduce((n, p) => n + sizeOf(p), 0);
    if (now >= size) return;
    same = now === last ? same + 1 : 0;
    if (same >= 3) return;
    last = now;
  }
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
