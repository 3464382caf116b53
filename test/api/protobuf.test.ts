// Containers driven in protobuf by our own protobuf client (test/helpers/protobuf.ts): LAUNCH,
// GET_CONTAINERS, WAIT, KILL, REMOVE, the nested calls, an OOM verdict and PRUNE_IMAGES against
// a real agent and image; and WAIT_CONTAINER on a container that outlives a 15 s response-header
// timeout (mesos-go's), answered in JSON and protobuf. Needs root (namespaces, overlay, cgroups).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, isRoot, saveArchive } from "../helpers/images.ts";
import { caller, decodeResponse, encodeCall, ENCODINGS, int64, MEDIA, type Encoding } from "../helpers/protobuf.ts";

const work = tempDir("ucr-protobuf-");
let agent: RunningAgent;
const call = (body: unknown, headers?: Record<string, string>) => caller(agent, "protobuf")(body, headers);
const image = { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } };
const ref = (value: string, parent?: string) => ({ container_id: { value, ...(parent ? { parent: { value: parent } } : {}) } });
const launchOf = (id: string, script: string) => ({
  type: "LAUNCH_CONTAINER",
  launch_container: { ...ref(id), command: { value: script }, container: image },
});

beforeAll(async () => {
  if (!isRoot) return;
  const images = join(work, "images");
  mkdirSync(images);
  const layout = join(work, "busybox");
  buildBusyboxImage(layout, { tag: "1" });
  await saveArchive(layout, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  agent = await startAgent({
    args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
  });
});
afterAll(async () => {
  if (agent) {
    // Nothing left behind: every container killed, waited for and removed.
    const list = (await (await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
      get_containers: { containers?: Array<{ container_id: { value: string } }> };
    };
    for (const c of list.get_containers.containers ?? []) {
      await call({ type: "KILL_CONTAINER", kill_container: { container_id: c.container_id } });
      await call({ type: "WAIT_CONTAINER", wait_container: { container_id: c.container_id } });
      await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: c.container_id } });
    }
    expect(await agent.stop()).toBe(0);
  }
  rmSync(work, { recursive: true, force: true });
});

async function bare(res: Response): Promise<{ status: number; body: string; type: string | null }> {
  return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
}

describe.skipIf(!isRoot)("containers in protobuf (needs root)", () => {
  test("LAUNCH, the same ID again, GET_CONTAINERS, WAIT, REMOVE", async () => {
    const launch = launchOf("pb1", "echo hi; exit 3");
    expect(await bare(await call(launch))).toEqual({ status: 200, body: "", type: null });
    expect(await bare(await call(launch))).toEqual({ status: 202, body: "", type: null });
    const wait = await call({ type: "WAIT_CONTAINER", wait_container: ref("pb1") });
    expect(wait.headers.get("content-type")).toBe(MEDIA.protobuf);
    expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 768 } });
    const list = await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
    expect(await list.json()).toEqual({
      type: "GET_CONTAINERS",
      get_containers: { containers: [{ container_id: { value: "pb1" }, container_status: { container_id: { value: "pb1" } } }] },
    });
    const removed = await call({ type: "REMOVE_CONTAINER", remove_container: ref("pb1") });
    expect(await bare(removed)).toEqual({ status: 200, body: "", type: null });
    await expect(call({ type: "WAIT_CONTAINER", wait_container: ref("pb1") }).then((r) => r.status)).resolves.toBe(404);
  });

  test("a running container's statistics, KILL with a signal, and the nested calls under it", async () => {
    // A shell as PID 1 ignores SIGTERM unless it traps it.
    const script = 'trap "exit 7" TERM; while true; do sleep 1; done';
    const launch = launchOf("pb2", script);
    expect((await call(launch)).status).toBe(200);
    const list = (await (await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
      get_containers: { containers: Array<Record<string, { executor_pid?: number; timestamp?: number; mem_total_bytes?: unknown }>> };
    };
    const entry = list.get_containers.containers.find((c) => (c.container_id as unknown as { value: string }).value === "pb2")!;
    expect(entry.container_status!.executor_pid).toBeGreaterThan(1);
    expect(entry.resource_statistics!.timestamp).toBeGreaterThan(1.7e9);
    const memory = entry.resource_statistics!.mem_total_bytes;
    if (memory !== undefined) expect(int64(memory)).toBeGreaterThan(0);

    const child = { type: "LAUNCH_NESTED_CONTAINER", launch_nested_container: { ...ref("kid", "pb2"), command: { value: "exit 5" } } };
    expect((await call(child)).status).toBe(200);
    const waitChild = await call({ type: "WAIT_NESTED_CONTAINER", wait_nested_container: ref("kid", "pb2") });
    expect(await waitChild.json()).toEqual({ type: "WAIT_NESTED_CONTAINER", wait_nested_container: { exit_status: 1280 } });
    const nested = (await (await call({ type: "GET_CONTAINERS", get_containers: { show_nested: true } })).json()) as {
      get_containers: { containers: Array<{ container_id: { value: string }; container_status: { container_id: unknown } }> };
    };
    const ids = nested.get_containers.containers.map((c) => c.container_status.container_id);
    expect(ids).toContainEqual({ value: "kid", parent: { value: "pb2" } });
    expect((await call({ type: "REMOVE_NESTED_CONTAINER", remove_nested_container: ref("kid", "pb2") })).status).toBe(200);

    const killed = await call({ type: "KILL_CONTAINER", kill_container: { ...ref("pb2"), signal: 15 } });
    expect(await bare(killed)).toEqual({ status: 200, body: "", type: null });
    expect(await (await call({ type: "WAIT_CONTAINER", wait_container: ref("pb2") })).json()).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: { exit_status: 7 * 256 },
    });
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: ref("pb2") })).status).toBe(200);
  });

  test("an OOM kill: WAIT's state, reason and limitation (enums and a Resource) in protobuf", async () => {
    const launch = {
      type: "LAUNCH_CONTAINER",
      launch_container: {
        ...ref("pb3"),
        command: { value: "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done" },
        resources: [{ name: "mem", type: "SCALAR", scalar: { value: 48 } }],
        container: image,
      },
    };
    expect((await call(launch)).status).toBe(200);
    expect(await (await call({ type: "WAIT_CONTAINER", wait_container: ref("pb3") })).json()).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: {
        exit_status: 9,
        state: "TASK_FAILED",
        reason: "REASON_CONTAINER_LIMITATION_MEMORY",
        limitation: { resources: [{ name: "mem", type: "SCALAR", scalar: { value: 48 } }] },
        message: expect.stringContaining("Memory limit exceeded"),
      },
    });
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: ref("pb3") })).status).toBe(200);
  });

  test("PRUNE_IMAGES with excluded images is a bare 200, and the excluded image stays", async () => {
    const prune = { type: "PRUNE_IMAGES", prune_images: { excluded_images: [{ type: "DOCKER", docker: { name: "alpine" } }] } };
    expect(await bare(await call(prune))).toEqual({ status: 200, body: "", type: null });
    const again = { type: "LAUNCH_CONTAINER", launch_container: { ...ref("pb4"), command: { value: "true" }, container: { ...image } } };
    expect((await call(again)).status).toBe(200);
    expect(await (await call({ type: "WAIT_CONTAINER", wait_container: ref("pb4") })).json()).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: { exit_status: 0 },
    });
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: ref("pb4") })).status).toBe(200);
    expect(agent.log()).toContain("protobuf codec loaded");
  });
});

test("the protobuf codec loads with the first protobuf call, not before: JSON-only agents never pay for it", async () => {
  const fresh = await startAgent();
  try {
    expect((await fresh.call({ type: "GET_HEALTH" })).status).toBe(200);
    await Bun.sleep(50);
    expect(fresh.log()).not.toContain("protobuf codec loaded");
    const res = await caller(fresh, "protobuf")({ type: "GET_HEALTH" });
    expect(await res.json()).toEqual({ type: "GET_HEALTH", get_health: { healthy: true } });
    await Bun.sleep(50);
    expect(fresh.log()).toMatch(/protobuf codec loaded \(\d+\.\dms\)/);
  } finally {
    expect(await fresh.stop()).toBe(0);
  }
});

/** What a client with a response-header timeout sees of one POST: headers (or not in time), then the body. */
interface Answered {
  headers: string;
  /** The container's state (from GET_CONTAINERS) at the moment the headers arrived. */
  runningAtHeaders: boolean;
  body: Uint8Array;
}

/**
 * POSTs `body` over a raw socket and gives up, as Go's http.Transport with ResponseHeaderTimeout
 * does, if the status line and headers have not arrived within `headerTimeoutMs`.
 */
async function postWithHeaderTimeout(
  encoding: Encoding,
  body: Uint8Array,
  headerTimeoutMs: number,
  onHeaders: () => Promise<boolean>,
): Promise<Answered> {
  let data = Buffer.alloc(0);
  let headersSeen!: () => void;
  const headersIn = new Promise<void>((r) => (headersSeen = r));
  let closed!: () => void;
  const done = new Promise<void>((r) => (closed = r));
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port: agent.port,
    socket: {
      data: (_s, chunk) => {
        data = Buffer.concat([data, chunk]);
        if (data.includes("\r\n\r\n")) headersSeen();
      },
      close: () => closed(),
      error: () => closed(),
    },
  });
  sock.write(
    `POST /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${MEDIA[encoding]}\r\nAccept: ${MEDIA[encoding]}\r\n` +
      `Content-Length: ${body.byteLength}\r\nConnection: close\r\n\r\n`,
  );
  sock.write(body);
  const timedOut = await Promise.race([headersIn.then(() => false), Bun.sleep(headerTimeoutMs).then(() => true)]);
  if (timedOut) {
    sock.end();
    throw new Error(`no response headers within ${headerTimeoutMs} ms (a Go client would give up here)`);
  }
  const runningAtHeaders = await onHeaders();
  await done;
  const at = data.indexOf("\r\n\r\n");
  const headers = data.subarray(0, at).toString();
  return { headers, runningAtHeaders, body: dechunk(data.subarray(at + 4)) };
}

/** The body of a chunked HTTP/1.1 response. */
function dechunk(raw: Buffer): Uint8Array {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = raw.indexOf("\r\n", at);
    const size = parseInt(raw.subarray(at, eol).toString(), 16);
    if (!(size > 0)) break;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return new Uint8Array(Buffer.concat(parts));
}

describe.skipIf(!isRoot)("a WAIT_CONTAINER longer than a client's response-header timeout (needs root)", () => {
  test("headers come while the container runs (20 s), the exit status at its end, in JSON and protobuf", async () => {
    const launch = launchOf("slow", "sleep 20; exit 4");
    expect((await call(launch)).status).toBe(200);
    const running = async () => {
      const list = (await (await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
        get_containers: { containers?: Array<{ container_id: { value: string }; container_status?: { executor_pid?: number } }> };
      };
      return list.get_containers.containers?.find((c) => c.container_id.value === "slow")?.container_status?.executor_pid !== undefined;
    };
    const wait = { type: "WAIT_CONTAINER", wait_container: ref("slow") };
    const answers = await Promise.all(
      ENCODINGS.map((encoding) => {
        const body = encoding === "json" ? new TextEncoder().encode(JSON.stringify(wait)) : encodeCall(wait);
        return postWithHeaderTimeout(encoding, body, 15_000, running);
      }),
    );
    for (const [i, encoding] of ENCODINGS.entries()) {
      const a = answers[i]!;
      expect(a.headers).toStartWith("HTTP/1.1 200 OK");
      expect(a.headers.toLowerCase()).toContain(`content-type: ${MEDIA[encoding]}`);
      expect(a.runningAtHeaders).toBe(true);
      const message = encoding === "json" ? JSON.parse(new TextDecoder().decode(a.body)) : decodeResponse(a.body);
      expect({ encoding, message }).toEqual({ encoding, message: { type: "WAIT_CONTAINER", wait_container: { exit_status: 1024 } } });
    }
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: ref("slow") })).status).toBe(200);
  }, 60_000);
});
