// Request bodies and headers the way real and hostile clients send them: null for unset
// fields, repeated header lines, a byte order mark, deep nesting, out-of-range resources.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent } from "../helpers/agent.ts";

let agent: RunningAgent;

beforeAll(async () => {
  agent = await startAgent();
});
afterAll(async () => {
  expect(await agent.stop()).toBe(0);
});

async function expectText(res: Response, status: number, pattern: RegExp): Promise<string> {
  const body = await res.text();
  expect({ status: res.status, body }).toMatchObject({ status, body: expect.stringMatching(pattern) });
  return body;
}

/** Sends raw request bytes (so header lines can repeat) and returns status line and body. */
async function raw(head: string, body = ""): Promise<{ status: string; body: string }> {
  let data = "";
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port: agent.port,
    socket: { data: (_s, d) => void (data += d.toString()), close: () => closed(), error: () => closed() },
  });
  sock.write(`${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  await Promise.race([done, Bun.sleep(10_000)]);
  sock.end();
  const at = data.indexOf("\r\n\r\n");
  return { status: data.split("\r\n")[0] ?? "", body: at < 0 ? "" : data.slice(at + 4) };
}

const POST = "POST /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/** Cgroup dirs the agent made under its cgroups root, in every hierarchy. */
function cgroupDirs(): string[] {
  const found: string[] = [];
  const base = "/sys/fs/cgroup";
  const hierarchies = existsSync(join(base, "cgroup.controllers")) ? [base] : readdirSync(base).map((h) => join(base, h));
  for (const h of hierarchies) {
    const dir = join(h, agent.cgroupsRoot!);
    if (existsSync(dir)) for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) found.push(join(dir, e.name));
  }
  return found;
}

function launch(id: string, extra: Record<string, unknown>) {
  return agent.call({
    type: "LAUNCH_CONTAINER",
    launch_container: { container_id: { value: id }, command: { value: "sleep 30" }, ...extra },
  });
}

describe("null is an unset field, as in Mesos", () => {
  test("nulls where mesos-go writes them pass the schemas", async () => {
    // Reaches the handler's own check, so every null above was taken as unset.
    const res = await agent.call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "nulls", parent: null },
        command: { uris: null, shell: null, value: null, arguments: null, environment: { variables: null } },
        resources: null,
        limits: null,
        container: { type: "MESOS", volumes: null, network_infos: null, mesos: { image: null } },
      },
    });
    await expectText(res, 400, /^Shell specified but no command value provided$/);
    const prune = await agent.call({ type: "PRUNE_IMAGES", prune_images: { excluded_images: null } });
    expect(prune.status).toBe(200);
    const list = await agent.call({ type: "GET_CONTAINERS", get_containers: { show_nested: null, show_standalone: true } });
    expect(await list.json()).toEqual({ type: "GET_CONTAINERS", get_containers: { containers: [] } });
  });

  test("a null array element adds nothing; a null required field is missing", async () => {
    const res = await agent.call({ type: "PRUNE_IMAGES", prune_images: { excluded_images: [null, { type: "OCI" }] } });
    // The null element was dropped: the bad image is element 0.
    await expectText(res, 400, /prune_images\.excluded_images\.0\.type: must be APPC or DOCKER/);
    await expectText(await agent.call({ type: null }), 400, /Expecting 'type' to be present/);
    await expectText(
      await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: null } }),
      400,
      /wait_container\.container_id: is required but missing/,
    );
    await expectText(await agent.call({ type: "WAIT_CONTAINER", wait_container: null }), 400, /Expecting 'wait_container' to be present/);
  });
});

describe("repeated header lines: the last one counts, as in libprocess", () => {
  const call = '{"type":"GET_HEALTH"}';

  test("Content-Type given twice", async () => {
    const last = await raw(`${POST}Content-Type: text/plain\r\nContent-Type: application/json\r\n`, call);
    expect(last.status).toBe("HTTP/1.1 200 OK");
    const wrong = await raw(`${POST}Content-Type: application/json\r\nContent-Type: text/plain\r\n`, call);
    expect(wrong.status).toMatch(/^HTTP\/1\.1 415/);
    expect(wrong.body).toContain("got 'text/plain'");
  });

  test("Accept: application/json twice (mesos-go's non-streaming calls)", async () => {
    const r = await raw(`${POST}Content-Type: application/json\r\nAccept: application/json\r\nAccept: application/json\r\n`, call);
    expect(r.status).toBe("HTTP/1.1 200 OK");
    expect(JSON.parse(r.body)).toEqual({ type: "GET_HEALTH", get_health: { healthy: true } });
  });

  test("Accept: application/json, then application/recordio with Message-Accept (mesos-go's streaming calls)", async () => {
    const head =
      `${POST}Content-Type: application/json\r\nAccept: application/json\r\n` +
      "Accept: application/recordio\r\nMessage-Accept: application/json\r\n";
    // A streaming call reaches its handler (an unknown container: 404) instead of a 406.
    const attach = await raw(head, '{"type":"ATTACH_CONTAINER_OUTPUT","attach_container_output":{"container_id":{"value":"c"}}}');
    expect(attach.status).toMatch(/^HTTP\/1\.1 404/);
    expect(attach.body).toContain("Container c cannot be found");
    // A non-streaming call asked for as a stream is 406, as Mesos answers it.
    const health = await raw(head, call);
    expect(health.status).toMatch(/^HTTP\/1\.1 406/);
    expect(health.body).toContain("Streaming response is not supported for GET_HEALTH call");
    const badMessageAccept = await raw(
      `${POST}Content-Type: application/json\r\nAccept: application/recordio\r\nMessage-Accept: text/html\r\n`,
      call,
    );
    expect(badMessageAccept.status).toMatch(/^HTTP\/1\.1 406/);
    expect(badMessageAccept.body).toContain("Expecting 'Message-Accept' to allow application/json");
  });
});

describe("hostile bodies", () => {
  test("a UTF-8 byte order mark is 400", async () => {
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"type":"GET_HEALTH"}')]);
    const res = await fetch(`${agent.url}/api/v1`, { method: "POST", headers: { "Content-Type": "application/json" }, body: bom });
    await expectText(res, 400, /^Failed to parse body into JSON: the body starts with a UTF-8 byte order mark \(EF BB BF\)/);
  });

  test("nesting deeper than 100 is 400 naming the limit, and the agent answers right after", async () => {
    const deep = "[".repeat(1024 * 1024 - 16);
    await expectText(
      await agent.call(deep),
      400,
      /^Failed to parse body into JSON: arrays and objects are nested more than 100 deep .*at most 100 levels/,
    );
    const objects = `${'{"a":'.repeat(150_000)}1${"}".repeat(150_000)}`;
    await expectText(await agent.call(objects), 400, /nested more than 100 deep/);
    expect((await agent.call({ type: "GET_HEALTH" })).status).toBe(200);
  });

  test("the limit leaves room for real messages: a ContainerID chain of 98 levels is read, 99 is not", async () => {
    const chain = (n: number): Record<string, unknown> => (n === 1 ? { value: "c1" } : { value: `c${n}`, parent: chain(n - 1) });
    // Depth: the call (1), wait_container (2), then one object per ContainerID.
    await expectText(await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: chain(98) } }), 404, /cannot be found/);
    await expectText(
      await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: chain(99) } }),
      400,
      /nested more than 100 deep/,
    );
  });

  test("brackets inside strings do not count as nesting", async () => {
    const res = await agent.call({ type: "GET_HEALTH", pad: `${"[{".repeat(5000)}\\"${"[".repeat(5000)}` });
    expect(res.status).toBe(200);
  });
});

describe("resources are checked before anything is created", () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      "neg-cpus",
      { resources: [{ name: "cpus", type: "SCALAR", scalar: { value: -1 } }] },
      /resources\.0\.scalar\.value: 'cpus' is -1; it must not be negative/,
    ],
    [
      "inf-cpus",
      { resources: [{ name: "cpus", type: "SCALAR", scalar: { value: "Infinity" } }] },
      /'cpus' is Infinity; a resource must be a finite number/,
    ],
    ["nan-mem", { resources: [{ name: "mem", type: "SCALAR", scalar: { value: "NaN" } }] }, /'mem' is NaN/],
    ["neg-mem", { resources: [{ name: "mem", type: "SCALAR", scalar: { value: -64 } }] }, /'mem' is -64; it must not be negative/],
    [
      "huge-mem",
      { resources: [{ name: "mem", type: "SCALAR", scalar: { value: 1e300 } }] },
      /'mem' is 1e\+300 MB; at most 4294967296 MB \(4 PiB\)/,
    ],
    ["many-cpus", { resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 100000 } }] }, /'cpus' is 100000; at most 8192/],
    ["tiny-cpus", { resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 0.0001 } }] }, /thousandths, where this is 0/],
    [
      "no-scalar",
      { resources: [{ name: "cpus", type: "SCALAR" }] },
      /resources\.0\.scalar: resource 'cpus' of type SCALAR needs 'scalar' set/,
    ],
    ["neg-limit", { limits: { mem: { value: -1 } } }, /limits\.mem\.value: 'mem' is -1; it must not be negative/],
    ["nan-limit", { limits: { cpus: { value: "NaN" } } }, /limits\.cpus\.value: 'cpus' is NaN/],
  ];
  for (const [id, extra, pattern] of cases) {
    test(`${id}: 400 naming the field, and no sandbox or cgroup made`, async () => {
      const text = await expectText(await launch(id, extra), 400, pattern);
      expect(text).toStartWith("Failed to validate agent::Call: launch_container.");
      expect(existsSync(join(agent.workDir, "containers", id))).toBe(false);
      expect(cgroupDirs()).toEqual([]);
    });
  }

  test("an infinite limit means unlimited, as in Mesos", async () => {
    // Past the schema: the handler's own check answers.
    const res = await agent.call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "inf-limit" },
        command: { shell: true },
        limits: { cpus: { value: "Infinity" }, mem: { value: "Infinity" } },
      },
    });
    await expectText(res, 400, /^Shell specified but no command value provided$/);
  });
});
