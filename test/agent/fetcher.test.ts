// The URI fetcher against hostile input: servers on loopback that trickle or stall (the stall
// and total deadlines end the launch, KILL_CONTAINER still does), and a parent workload that
// plants links where its nested child's fetched file and archive land (nothing is written
// through them: the files land in the child's sandbox and the host's sentinel is unchanged).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { call, eventually, isRoot, killBody, launchBody, removeBody, waitBody } from "./support.ts";

const work = tempDir("ucr-fetcher-");
let agent: RunningAgent;
let n = 0;

beforeAll(async () => {
  if (!isRoot) return;
  agent = await startAgent({ args: ["--fetcher_stall_timeout=2secs", "--image_fetch_timeout=6secs"] });
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

/** A server whose body sends `chunk` bytes every `everyMs` (never ending), after `first` bytes at once. */
function trickle(opts: { first: number; chunk: number; everyMs: number }) {
  let sent = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch: () =>
      new Response(
        new ReadableStream({
          async start(ctl) {
            ctl.enqueue(new Uint8Array(opts.first));
            sent += opts.first;
          },
          async pull(ctl) {
            if (opts.chunk === 0) return new Promise<void>(() => {}); // silence, forever
            await Bun.sleep(opts.everyMs);
            sent += opts.chunk;
            ctl.enqueue(new Uint8Array(opts.chunk));
          },
        }),
      ),
  });
  return { server, sent: () => sent };
}

const fetching = (id: string, url: string) => launchBody(id, "true", { extra: { command: { value: "true", uris: [{ value: url }] } } });

/** A launch that failed leaves nothing behind: no container, no sandbox, no staging. */
async function gone(id: string): Promise<void> {
  expect((await call(agent, waitBody(id))).status).toBe(404);
  expect(existsSync(join(agent.workDir, "containers", id))).toBe(false);
  expect(existsSync(join(agent.workDir, "provisioner", "fetch", id))).toBe(false);
}

describe.skipIf(!isRoot)("download deadlines (need root)", () => {
  test("a body that stalls (1 byte, then nothing) fails the launch on --fetcher_stall_timeout", async () => {
    const { server } = trickle({ first: 1, chunk: 0, everyMs: 0 });
    try {
      const id = `stall${n++}`;
      const url = `http://127.0.0.1:${server.port}/stalls.bin`;
      const r = await call(agent, fetching(id, url));
      expect({ status: r.status, text: r.text }).toEqual({
        status: 400,
        text: `Failed to fetch '${url}': stalled: less than 1 byte/s for 2secs (--fetcher_stall_timeout)`,
      });
      await gone(id);
    } finally {
      server.stop(true);
    }
  }, 30_000);

  test("a body that keeps trickling (above 1 byte/s) fails the launch on the total deadline", async () => {
    const { server } = trickle({ first: 16, chunk: 16, everyMs: 200 });
    try {
      const id = `total${n++}`;
      const url = `http://127.0.0.1:${server.port}/forever.bin`;
      const r = await call(agent, fetching(id, url));
      expect({ status: r.status, text: r.text }).toEqual({
        status: 400,
        text: `Failed to fetch '${url}': did not finish within 6secs (--image_fetch_timeout)`,
      });
      await gone(id);
    } finally {
      server.stop(true);
    }
  }, 30_000);

  test("KILL_CONTAINER during a 1 byte/s download ends the launch", async () => {
    const { server, sent } = trickle({ first: 1, chunk: 1, everyMs: 500 });
    try {
      const id = `kill${n++}`;
      const launching = call(agent, fetching(id, `http://127.0.0.1:${server.port}/slow.bin`));
      expect(await eventually(() => sent() > 2, 20_000)).toBe(true);
      expect((await call(agent, killBody(id))).status).toBe(200);
      expect(await launching).toMatchObject({ status: 400, text: "Container destroyed during fetching" });
      const wait = await call(agent, waitBody(id));
      expect(wait.json?.wait_container).toMatchObject({ state: "TASK_KILLED", reason: "REASON_TASK_KILLED_DURING_LAUNCH" });
      expect((await call(agent, removeBody(id))).status).toBe(200);
    } finally {
      server.stop(true);
    }
  }, 30_000);
});

/** Every file under `dir` with its content (the sentinel's state). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    const st = lstatSync(path);
    out[name] = st.isFile() ? readFileSync(path, "utf8") : st.isDirectory() ? "<dir>" : "<other>";
  }
  return out;
}

describe.skipIf(!isRoot)("a parent's workload plants links in its nested child's sandbox (needs root)", () => {
  test("the fetched file and the archive land in the child's sandbox; nothing is written through the links", async () => {
    const sentinel = join(work, "sentinel");
    mkdirSync(sentinel, { recursive: true });
    writeFileSync(join(sentinel, "victim.txt"), "original\n");
    const before = snapshot(sentinel);

    const files = join(work, "files");
    mkdirSync(join(files, "pkg"), { recursive: true });
    writeFileSync(join(files, "payload.txt"), "payload\n");
    writeFileSync(join(files, "pkg", "evil.txt"), "from the archive\n");
    // members only (no directory entry for pkg/): GNU tar walks an existing pkg link
    expect(Bun.spawnSync(["tar", "-czf", join(files, "pkg.tar.gz"), "-C", files, "pkg/evil.txt"]).exitCode).toBe(0);

    const parent = `p${n++}`;
    const childSandbox = join(agent.workDir, "containers", parent, "containers", "c");
    const planted = () => {
      try {
        return lstatSync(join(childSandbox, "payload.txt")).isSymbolicLink() && lstatSync(join(childSandbox, "pkg")).isSymbolicLink();
      } catch {
        return false;
      }
    };
    // The first URI is a gate: answered once the parent's links are in place, so the links are
    // there before the agent writes the next two (a parent would race for it; the test waits).
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch: async (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/gate") {
          await eventually(planted, 20_000);
          return new Response("open\n");
        }
        return new Response(Bun.file(join(files, path)));
      },
    });
    try {
      // The parent (no image: it sees its sandbox at the host path) waits for the child's
      // sandbox and plants the links, as a workload with an image would through its mount.
      const plant =
        `while [ ! -d ${childSandbox} ]; do sleep 0.05; done; ` +
        `ln -s ${join(sentinel, "victim.txt")} ${childSandbox}/payload.txt; ln -s ${sentinel} ${childSandbox}/pkg; exec sleep 60`;
      expect((await call(agent, launchBody(parent, plant))).status).toBe(200);
      const child = { value: "c", parent: { value: parent } };
      const script = "cat payload.txt pkg/evil.txt";
      const r = await call(
        agent,
        launchBody(child, script, {
          extra: {
            command: {
              value: script,
              uris: [
                { value: `http://127.0.0.1:${server.port}/gate`, output_file: "gate.txt" },
                { value: `file://${join(files, "payload.txt")}`, output_file: "payload.txt" },
                { value: `http://127.0.0.1:${server.port}/pkg.tar.gz` },
              ],
            },
          },
        }),
      );
      expect({ status: r.status, text: r.text }).toEqual({ status: 200, text: "" });
      expect((await call(agent, waitBody(child))).json?.wait_container).toMatchObject({ exit_status: 0 });
      expect(readFileSync(join(childSandbox, "stdout"), "utf8")).toBe("payload\nfrom the archive\n");
      expect(lstatSync(join(childSandbox, "payload.txt")).isFile()).toBe(true);
      expect(lstatSync(join(childSandbox, "pkg")).isDirectory()).toBe(true);
      expect(snapshot(sentinel)).toEqual(before);
      expect((await call(agent, killBody(parent))).status).toBe(200);
      await call(agent, waitBody(parent));
      expect((await call(agent, removeBody(parent))).status).toBe(200);
    } finally {
      server.stop(true);
    }
  }, 60_000);
});
