// The Operator API front door against the built binary: response shapes of the calls this
// agent answers, and every transport error with its status code and message.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningAgent, startAgent } from "../helpers/agent.ts";

let agent: RunningAgent;

beforeAll(async () => {
  agent = await startAgent({ args: ["--docker_registry=/srv/images", "--switch_user=false", "--http_heartbeat_interval=90secs"] });
});
afterAll(async () => {
  expect(await agent.stop()).toBe(0);
});

async function expectText(res: Response, status: number, pattern: RegExp): Promise<string> {
  const body = await res.text();
  expect({ status: res.status, body }).toMatchObject({ status, body: expect.stringMatching(pattern) });
  expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(body).not.toContain("\n");
  return body;
}

describe("answers", () => {
  test("GET_HEALTH", async () => {
    const res = await agent.call({ type: "GET_HEALTH" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ type: "GET_HEALTH", get_health: { healthy: true } });
  });

  test("GET_VERSION carries the version and the build", async () => {
    const res = await agent.call({ type: "GET_VERSION" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { type: string; get_version: { version_info: Record<string, unknown> } };
    expect(body.type).toBe("GET_VERSION");
    const info = body.get_version.version_info;
    const pkg = await Bun.file(`${import.meta.dir}/../../package.json`).json();
    expect(info.version).toBe(pkg.version);
    expect(typeof info.build_time).toBe("number");
    expect(info.build_date).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(typeof info.git_sha).toBe("string");
  });

  test("GET_FLAGS reflects the flags given and the defaults, sorted, as strings", async () => {
    const res = await agent.call({ type: "GET_FLAGS" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { type: string; get_flags: { flags: Array<{ name: string; value: string }> } };
    expect(body.type).toBe("GET_FLAGS");
    const flags = body.get_flags.flags;
    const names = flags.map((f) => f.name);
    expect(names).toEqual([...names].sort());
    const byName = Object.fromEntries(flags.map((f) => [f.name, f.value]));
    for (const value of Object.values(byName)) expect(typeof value).toBe("string");
    expect(byName).toMatchObject({
      docker_registry: "/srv/images",
      switch_user: "false",
      http_heartbeat_interval: "1.5mins",
      work_dir: agent.workDir,
      docker_store_dir: `${agent.workDir}/store/docker`,
      ip: "127.0.0.1",
      port: "0",
      isolation: "posix/cpu,posix/mem",
      sandbox_directory: "/mnt/mesos/sandbox",
      appc_store_dir: "/tmp/mesos/store/appc",
      authenticate_http_readwrite: "false",
      logging_level: "INFO",
    });
    // Unset optional flags are omitted, as Mesos does.
    for (const unset of ["docker_config", "image_gc_config", "image_providers", "http_credentials", "image_provisioner_backend"]) {
      expect(names).not.toContain(unset);
    }
  });

  test("Content-Type with parameters and Accept with q-values are understood", async () => {
    const res = await agent.call(
      { type: "GET_HEALTH" },
      { "Content-Type": "application/json; charset=utf-8", Accept: "application/x-protobuf, application/json;q=0.5" },
    );
    expect(res.status).toBe(200);
  });

  test("unknown fields are ignored, as protobuf's JSON parsing does", async () => {
    const res = await agent.call({ type: "GET_HEALTH", get_health: { x: 1 }, extra: true });
    expect(res.status).toBe(200);
  });

  test("GET_STATE is empty: standalone containers never appear there", async () => {
    const res = await agent.call({ type: "GET_STATE" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      type: "GET_STATE",
      get_state: { get_tasks: {}, get_executors: {}, get_frameworks: {} },
    });
  });

  test("GET /health is 200 with an empty body; GET /version is the version JSON", async () => {
    const health = await fetch(`${agent.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("");
    const version = await fetch(`${agent.url}/version`);
    expect(version.status).toBe(200);
    expect(((await version.json()) as { version: string }).version).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe("transport errors", () => {
  test("non-POST is 405 with Allow: POST", async () => {
    for (const method of ["GET", "PUT", "DELETE"]) {
      const res = await fetch(`${agent.url}/api/v1`, { method });
      expect(res.headers.get("allow")).toBe("POST");
      await expectText(res, 405, new RegExp(`Expecting a 'POST' request, received '${method}'`));
    }
  });

  test("missing Content-Type is 400", async () => {
    const res = await fetch(`${agent.url}/api/v1`, { method: "POST", body: new Blob(['{"type":"GET_HEALTH"}']) });
    await expectText(res, 400, /Expecting 'Content-Type' to be present/);
  });

  test("protobuf, recordio and other content types are 415 naming the type", async () => {
    await expectText(await agent.call("x", { "Content-Type": "application/x-protobuf" }), 415, /application\/x-protobuf/);
    await expectText(await agent.call("x", { "Content-Type": "application/recordio" }), 415, /application\/recordio/);
    await expectText(await agent.call("x", { "Content-Type": "text/plain" }), 415, /Expecting 'Content-Type' of application\/json, got 'text\/plain'/);
  });

  test("Message-Content-Type on a non-streaming request is 415", async () => {
    const res = await agent.call({ type: "GET_HEALTH" }, { "Message-Content-Type": "application/json" });
    await expectText(res, 415, /Message-Content-Type/);
  });

  test("Accept that does not allow JSON is 406", async () => {
    await expectText(await agent.call({ type: "GET_HEALTH" }, { Accept: "application/x-protobuf" }), 406, /Expecting 'Accept' to allow application\/json/);
    await expectText(await agent.call({ type: "GET_HEALTH" }, { Accept: "application/json;q=0" }), 406, /Accept/);
    await expectText(await agent.call({ type: "GET_HEALTH" }, { Accept: "text/html" }), 406, /text\/html/);
    expect((await agent.call({ type: "GET_HEALTH" }, { Accept: "*/*" })).status).toBe(200);
    expect((await agent.call({ type: "GET_HEALTH" }, { Accept: "application/*" })).status).toBe(200);
  });

  test("Message-Accept without a streaming Accept is 406", async () => {
    await expectText(await agent.call({ type: "GET_HEALTH" }, { "Message-Accept": "application/json" }), 406, /Message-Accept/);
  });

  test("malformed JSON is 400 with the parse error", async () => {
    await expectText(await agent.call('{"type": "GET_HEALTH"'), 400, /^Failed to parse body into JSON: .+/);
    await expectText(await agent.call(""), 400, /^Failed to parse body into JSON/);
  });

  test("a body that is not an object, or lacks type, is 400", async () => {
    await expectText(await agent.call("[1,2]"), 400, /expected a JSON object with a 'type' field, got an array/);
    await expectText(await agent.call({}), 400, /Expecting 'type' to be present/);
    await expectText(await agent.call({ type: 7 }), 400, /'type' must be a string/);
  });

  test("unknown type is 400 naming it; UNKNOWN is 501", async () => {
    await expectText(await agent.call({ type: "LAUNCH_ROCKET" }), 400, /Unknown call type 'LAUNCH_ROCKET'/);
    await expectText(await agent.call({ type: "UNKNOWN" }), 501, /UNKNOWN/);
  });

  test("a schema violation is 400 naming the field path", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ type: "LAUNCH_CONTAINER" }, /Expecting 'launch_container' to be present/],
      [{ type: "LAUNCH_CONTAINER", launch_container: {} }, /launch_container\.container_id: is required but missing/],
      [{ type: "LAUNCH_CONTAINER", launch_container: { container_id: { value: 5 } } }, /launch_container\.container_id\.value: must be a string, got 5/],
      [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a/b" } } }, /wait_container\.container_id\.value: 'a\/b' contains '\/'/],
      [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: ".." } } }, /wait_container\.container_id\.value: '\.\.' is not allowed/],
      [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "x".repeat(243) } } }, /is 243 characters long; at most 242/],
      [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a b" } } }, /contains ' '/],
      [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a\u0001b" } } }, /control character \(0x01\)/],
      [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "" } } }, /must not be empty/],
      [{ type: "KILL_CONTAINER", kill_container: { container_id: { value: "ok", parent: { value: "p.q" } }, signal: 9 } }, /kill_container\.container_id\.parent\.value: 'p\.q' contains '\.'/],
      [{ type: "KILL_CONTAINER", kill_container: { container_id: { value: "c" }, signal: 99 } }, /kill_container\.signal: must be a signal number from 1 to 64/],
      [
        { type: "LAUNCH_CONTAINER", launch_container: { container_id: { value: "c" }, container: { type: "MESOS", mesos: { image: { type: "DOCKER" } } } } },
        /launch_container\.container\.mesos\.image\.docker: an image of type DOCKER needs 'docker' set/,
      ],
      [
        { type: "LAUNCH_CONTAINER", launch_container: { container_id: { value: "c" }, command: { environment: { variables: [{ name: "K" }] } } } },
        /environment variable 'K' of type VALUE must have a value set/,
      ],
      [{ type: "PRUNE_IMAGES", prune_images: { excluded_images: [{ type: "OCI" }] } }, /prune_images\.excluded_images\.0\.type: must be APPC or DOCKER/],
      [{ type: "GET_CONTAINERS", get_containers: { show_nested: "yes" } }, /get_containers\.show_nested: expected boolean, got "yes"/],
    ];
    for (const [body, pattern] of cases) {
      const text = await expectText(await agent.call(body), 400, pattern);
      expect(text).toStartWith("Failed to validate agent::Call: ");
    }
  });

  test("container calls reach their handlers: unknown IDs are 404, as Mesos", async () => {
    const id = { container_id: { value: "nobody-here" } };
    await expectText(await agent.call({ type: "WAIT_CONTAINER", wait_container: id }), 404, /Container 'nobody-here' cannot be found/);
    await expectText(await agent.call({ type: "KILL_CONTAINER", kill_container: id }), 404, /cannot be found \(or is already killed\)/);
    await expectText(await agent.call({ type: "REMOVE_CONTAINER", remove_container: id }), 404, /cannot be found/);
    await expectText(await agent.call({ type: "LAUNCH_CONTAINER", launch_container: id }), 400, /Shell specified but no command value provided/);
    const list = await agent.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
    expect(await list.json()).toEqual({ type: "GET_CONTAINERS", get_containers: { containers: [] } });
  });

  test("calls not built yet answer 501 and say so, never a pretend success", async () => {
    const id = { container_id: { value: "c1", parent: { value: "p" } } };
    for (const call of [
      { type: "LAUNCH_NESTED_CONTAINER_SESSION", launch_nested_container_session: { ...id, command: { value: "true" } } },
      { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: id },
    ]) {
      await expectText(await agent.call(call), 501, /not implemented/);
    }
    // PRUNE_IMAGES on an empty store is a bare 200; nested launches answer Mesos' 400 for a missing parent.
    const prune = await agent.call({ type: "PRUNE_IMAGES" });
    expect({ status: prune.status, body: await prune.text(), type: prune.headers.get("content-type") }).toEqual({ status: 200, body: "", type: null });
    await expectText(await agent.call({ type: "LAUNCH_CONTAINER", launch_container: { ...id, command: { value: "true" } } }), 400, /^Parent container p does not exist$/);
  });

  test("a body over 1 MiB is 413, declared or streamed", async () => {
    const big = JSON.stringify({ type: "GET_HEALTH", pad: "x".repeat(1024 * 1024) });
    await expectText(await agent.call(big), 413, /over the limit of 1048576 bytes/);
    // Chunked, no Content-Length: the limit still holds while reading.
    const status = await rawRequest(
      agent.port,
      "POST /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      (write) => {
        const chunk = "y".repeat(64 * 1024);
        for (let i = 0; i < 20; i++) write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        write("0\r\n\r\n");
      },
    );
    expect(status).toMatch(/^HTTP\/1\.1 413/);
  });

  test("an agent reached by a short host name routes like any other (Host: a, ucr)", async () => {
    for (const host of ["a", "ucr", "127.0.0.1"]) {
      const body = '{"type":"GET_HEALTH"}';
      const status = await rawRequest(
        agent.port,
        `POST /api/v1 HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        (write) => write(body),
      );
      expect({ host, status }).toEqual({ host, status: "HTTP/1.1 200 OK" });
    }
    const missing = await rawRequest(agent.port, "GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", () => {});
    expect(missing).toBe("HTTP/1.1 404 Not Found");
  });

  test("unknown paths are 404", async () => {
    await expectText(await fetch(`${agent.url}/api/v2`), 404, /No endpoint at \/api\/v2/);
  });

  test("the agent logs one line per request: method, path, call type, status, ms", async () => {
    await agent.call({ type: "GET_FLAGS" });
    await Bun.sleep(50);
    expect(agent.log()).toMatch(/POST \/api\/v1 GET_FLAGS 200 \d+\.\dms/);
    expect(agent.log()).toMatch(/POST \/api\/v1 - 415 \d+\.\dms/);
  });
});

/** Send a raw HTTP request over TCP; returns the status line of the answer. */
async function rawRequest(port: number, head: string, body: (write: (s: string) => void) => void): Promise<string> {
  let data = "";
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  // Bun's socket.write writes what fits and returns the count; the rest waits for drain.
  let pending = Buffer.alloc(0);
  const flush = (s: Bun.Socket) => {
    const n = s.write(pending);
    if (n > 0) pending = pending.subarray(n);
  };
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, chunk) => void (data += chunk.toString()),
      drain: (s) => flush(s),
      close: () => closed(),
      error: () => closed(),
    },
  });
  const parts: string[] = [head];
  body((s) => void parts.push(s));
  pending = Buffer.from(parts.join(""));
  flush(sock);
  // The server may answer 413 and close while we are still writing; what counts is the
  // answer it sent before closing.
  await Promise.race([done, Bun.sleep(10_000)]);
  sock.end();
  return data.split("\r\n")[0] ?? "";
}
