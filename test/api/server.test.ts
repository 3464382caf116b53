// The Operator API front door against the built binary: response shapes of the calls this
// agent answers, and every transport error with its status code and message, each in JSON and
// in protobuf (requests and answers), and the rules for RecordIO (streaming) requests.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type RunningAgent, startAgent } from "../helpers/agent.ts";
import { ENCODINGS, MEDIA, NotEncodable, caller, encodeCall, type Encoding } from "../helpers/protobuf.ts";
import { encodeRecord } from "../../src/mesos/recordio.ts";

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

/** Protobuf bytes of fields the schema does not have: 999 (varint 5) and 1000 (bytes "xy"). */
const UNKNOWN_FIELDS = new Uint8Array([0xb8, 0x3e, 0x05, 0xc2, 0x3e, 0x02, 0x78, 0x79]);

const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

for (const encoding of ENCODINGS) {
  describe(`${encoding}:`, () => {
    const call = (body: unknown, headers?: Record<string, string>) => caller(agent, encoding)(body, headers);
    const other: Encoding = encoding === "json" ? "protobuf" : "json";

    describe("answers", () => {
      test("GET_HEALTH", async () => {
        const res = await call({ type: "GET_HEALTH" });
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe(MEDIA[encoding]);
        expect(await res.json()).toEqual({ type: "GET_HEALTH", get_health: { healthy: true } });
      });

      test("GET_VERSION carries the version and the build", async () => {
        const res = await call({ type: "GET_VERSION" });
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
        const res = await call({ type: "GET_FLAGS" });
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
        const res = await call(
          { type: "GET_HEALTH" },
          { "Content-Type": `${MEDIA[encoding]}; charset=utf-8`, Accept: `text/html, ${MEDIA[encoding]};q=0.5` },
        );
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe(MEDIA[encoding]);
      });

      test("the answer is in the encoding the client accepts, whatever the request's: JSON first, as Mesos", async () => {
        const crossed = await call({ type: "GET_HEALTH" }, { Accept: MEDIA[other] });
        expect(crossed.headers.get("content-type")).toBe(MEDIA[other]);
        const both = await call({ type: "GET_HEALTH" }, { Accept: `${MEDIA.protobuf}, ${MEDIA.json};q=0.5` });
        expect(both.headers.get("content-type")).toBe(MEDIA.json);
        for (const accept of ["*/*", "application/*"]) {
          const res = await call({ type: "GET_HEALTH" }, { Accept: accept });
          expect({ accept, status: res.status, type: res.headers.get("content-type") }).toEqual({ accept, status: 200, type: MEDIA.json });
        }
        const none = await fetch(`${agent.url}/api/v1`, {
          method: "POST",
          headers: { "Content-Type": MEDIA[encoding] },
          body: encoding === "json" ? '{"type":"GET_HEALTH"}' : encodeCall({ type: "GET_HEALTH" }),
        });
        expect(none.headers.get("content-type")).toBe(MEDIA.json);
        expect(await none.json()).toEqual({ type: "GET_HEALTH", get_health: { healthy: true } });
      });

      test("unknown fields are ignored, as protobuf does", async () => {
        const bodies =
          encoding === "json"
            ? [{ type: "GET_HEALTH", get_health: { x: 1 }, extra: true }]
            : [
                concat(encodeCall({ type: "GET_HEALTH" }), UNKNOWN_FIELDS),
                // inside a payload too: GET_CONTAINERS { show_standalone: true, <999>, <1000> }
                concat(
                  encodeCall({ type: "GET_CONTAINERS" }),
                  new Uint8Array([0xa2, 0x01, 2 + UNKNOWN_FIELDS.length, 0x10, 0x01]),
                  UNKNOWN_FIELDS,
                ),
              ];
        for (const body of bodies) {
          const res = await call(body);
          expect(res.status).toBe(200);
        }
      });

      test("GET_STATE is empty: standalone containers never appear there", async () => {
        const res = await call({ type: "GET_STATE" });
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({
          type: "GET_STATE",
          get_state: { get_tasks: {}, get_executors: {}, get_frameworks: {} },
        });
      });
    });

    describe("transport errors", () => {
      test("Message-Content-Type on a non-streaming request is 415", async () => {
        const res = await call({ type: "GET_HEALTH" }, { "Message-Content-Type": MEDIA[encoding] });
        await expectText(res, 415, /Expecting 'Message-Content-Type' to be not set for non-streaming requests/);
      });

      test("Accept that allows none of JSON, protobuf and RecordIO is 406", async () => {
        const expected = /Expecting 'Accept' to allow application\/json or application\/x-protobuf or application\/recordio/;
        await expectText(await call({ type: "GET_HEALTH" }, { Accept: `${MEDIA[encoding]};q=0` }), 406, expected);
        await expectText(await call({ type: "GET_HEALTH" }, { Accept: "text/html" }), 406, /got 'text\/html'/);
      });

      test("Message-Accept without a streaming Accept is 406", async () => {
        const res = await call({ type: "GET_HEALTH" }, { "Message-Accept": MEDIA[encoding] });
        await expectText(res, 406, /Expecting 'Message-Accept' to be not set for non-streaming responses/);
      });

      const malformed: Record<Encoding, Array<[string | Uint8Array, RegExp]>> = {
        json: [
          ['{"type": "GET_HEALTH"', /^Failed to parse body into JSON: .+/],
          ["", /^Failed to parse body into JSON/],
          [new Uint8Array([0x7b, 0xff, 0x7d]), /^Failed to parse body into JSON: body is not valid UTF-8$/],
        ],
        protobuf: [
          [new Uint8Array([0xff, 0xff]), /^Failed to parse body into a protobuf object: not a valid mesos\.v1\.agent\.Call: .+/],
          ['{"type":"GET_HEALTH"}', /^Failed to parse body into a protobuf object/],
          // wait_container { container_id { value: "\xff\xfe" } }: a string that is not UTF-8
          [
            concat(encodeCall({ type: "WAIT_CONTAINER" }), new Uint8Array([0x72, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe])),
            /^Failed to parse body into a protobuf object: .*a string field is not valid UTF-8$/,
          ],
        ],
      };
      test("a body that is not the encoding it says is 400 naming what is wrong", async () => {
        for (const [body, pattern] of malformed[encoding]) {
          await expectText(await call(body), 400, pattern);
        }
      });

      test("a call without a type is 400; UNKNOWN is 501", async () => {
        await expectText(await call({}), 400, /Expecting 'type' to be present/);
        if (encoding === "json") {
          await expectText(await call("[1,2]"), 400, /expected a JSON object with a 'type' field, got an array/);
          await expectText(await call({ type: 7 }), 400, /'type' must be a string/);
        } else {
          // An empty body is an empty message; protobuf has no other shape for "no type".
          await expectText(await call(new Uint8Array()), 400, /Expecting 'type' to be present/);
        }
        await expectText(await call({ type: "UNKNOWN" }), 501, /UNKNOWN/);
      });

      test("an unknown call type is 400", async () => {
        if (encoding === "json") {
          await expectText(await call({ type: "LAUNCH_ROCKET" }), 400, /Unknown call type 'LAUNCH_ROCKET'/);
        } else {
          // proto2 enums are closed: a number the schema lacks is an unknown field, so the call has no type.
          await expectText(await call({ type: 99 }), 400, /Expecting 'type' to be present/);
        }
      });

      test("a schema violation is 400 naming the field path", async () => {
        // [call, message in JSON, message in protobuf if it differs (null: protobuf cannot say it)]
        const cases: Array<[Record<string, unknown>, RegExp, (RegExp | null)?]> = [
          [{ type: "LAUNCH_CONTAINER" }, /Expecting 'launch_container' to be present/],
          [{ type: "LAUNCH_CONTAINER", launch_container: {} }, /launch_container\.container_id: is required but missing/],
          [
            { type: "LAUNCH_CONTAINER", launch_container: { container_id: { value: 5 } } },
            /launch_container\.container_id\.value: must be a string, got 5/,
            null,
          ],
          [
            { type: "LAUNCH_CONTAINER", launch_container: { container_id: {} } },
            /launch_container\.container_id\.value: is required but missing/,
          ],
          [
            { type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a/b" } } },
            /wait_container\.container_id\.value: 'a\/b' contains '\/'/,
          ],
          [
            { type: "WAIT_CONTAINER", wait_container: { container_id: { value: ".." } } },
            /wait_container\.container_id\.value: '\.\.' is not allowed/,
          ],
          [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "x".repeat(243) } } }, /is 243 characters long; at most 242/],
          [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a b" } } }, /contains ' '/],
          [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a\u0001b" } } }, /control character \(0x01\)/],
          [{ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "" } } }, /must not be empty/],
          [
            { type: "KILL_CONTAINER", kill_container: { container_id: { value: "ok", parent: { value: "p.q" } }, signal: 9 } },
            /kill_container\.container_id\.parent\.value: 'p\.q' contains '\.'/,
          ],
          [
            { type: "KILL_CONTAINER", kill_container: { container_id: { value: "c" }, signal: 99 } },
            /kill_container\.signal: must be a signal number from 1 to 64/,
          ],
          [
            {
              type: "LAUNCH_CONTAINER",
              launch_container: { container_id: { value: "c" }, container: { type: "MESOS", mesos: { image: { type: "DOCKER" } } } },
            },
            /launch_container\.container\.mesos\.image\.docker: an image of type DOCKER needs 'docker' set/,
          ],
          [
            {
              type: "LAUNCH_CONTAINER",
              launch_container: { container_id: { value: "c" }, command: { environment: { variables: [{ name: "K" }] } } },
            },
            /environment variable 'K' of type VALUE must have a value set/,
          ],
          [
            { type: "PRUNE_IMAGES", prune_images: { excluded_images: [{ type: "OCI" }] } },
            /prune_images\.excluded_images\.0\.type: must be APPC or DOCKER/,
            null,
          ],
          // An enum number the schema lacks: JSON names the value; protobuf drops it as an unknown field.
          [
            { type: "PRUNE_IMAGES", prune_images: { excluded_images: [{ type: 7, docker: { name: "a" } }] } },
            /prune_images\.excluded_images\.0\.type: must be APPC or DOCKER, got 7/,
            /prune_images\.excluded_images\.0\.type: is required but missing/,
          ],
          [
            { type: "GET_CONTAINERS", get_containers: { show_nested: "yes" } },
            /get_containers\.show_nested: expected boolean, got "yes"/,
            null,
          ],
        ];
        for (const [body, json, protobuf] of cases) {
          const pattern = encoding === "json" ? json : protobuf === undefined ? json : protobuf;
          if (pattern === null) {
            // Protobuf cannot carry this value at all: the wire's types rule it out.
            expect(() => encodeCall(body)).toThrow(NotEncodable);
            continue;
          }
          const text = await expectText(await call(body), 400, pattern);
          expect(text).toStartWith("Failed to validate agent::Call: ");
        }
      });

      test("container calls reach their handlers: unknown IDs are 404, as Mesos", async () => {
        const id = { container_id: { value: "nobody-here" } };
        await expectText(await call({ type: "WAIT_CONTAINER", wait_container: id }), 404, /Container 'nobody-here' cannot be found/);
        await expectText(await call({ type: "KILL_CONTAINER", kill_container: id }), 404, /cannot be found \(or is already killed\)/);
        await expectText(await call({ type: "REMOVE_CONTAINER", remove_container: id }), 404, /cannot be found/);
        await expectText(
          await call({ type: "LAUNCH_CONTAINER", launch_container: id }),
          400,
          /Shell specified but no command value provided/,
        );
        const nested = { container_id: { value: "n", parent: { value: "nobody-here" } } };
        await expectText(await call({ type: "WAIT_NESTED_CONTAINER", wait_nested_container: nested }), 404, /cannot be found/);
        const list = await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
        expect(list.headers.get("content-type")).toBe(MEDIA[encoding]);
        // Protobuf has no empty list: an empty repeated field is absent.
        expect(await list.json()).toEqual({ type: "GET_CONTAINERS", get_containers: encoding === "json" ? { containers: [] } : {} });
      });

      test("calls not built yet answer 501 and say so, never a pretend success; the streaming calls answer Mesos' statuses", async () => {
        const id = { container_id: { value: "c1", parent: { value: "p" } } };
        await expectText(await call({ type: "GET_METRICS" }), 501, /not implemented/);
        const session = { type: "LAUNCH_NESTED_CONTAINER_SESSION", launch_nested_container_session: { ...id, command: { value: "true" } } };
        await expectText(await call(session), 400, /^Parent container p does not exist$/);
        await expectText(
          await call({ type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: id }),
          404,
          /^Container p\.c1 cannot be found$/,
        );
        // PRUNE_IMAGES on an empty store is a bare 200; nested launches answer Mesos' 400 for a missing parent.
        const prune = await call({ type: "PRUNE_IMAGES" });
        expect({ status: prune.status, body: await prune.text(), type: prune.headers.get("content-type") }).toEqual({
          status: 200,
          body: "",
          type: null,
        });
        await expectText(
          await call({ type: "LAUNCH_CONTAINER", launch_container: { ...id, command: { value: "true" } } }),
          400,
          /^Parent container p does not exist$/,
        );
      });

      test("a body over 1 MiB is 413", async () => {
        const big =
          encoding === "json"
            ? JSON.stringify({ type: "GET_HEALTH", pad: "x".repeat(1024 * 1024) })
            : encodeCall({ type: "LIST_FILES", list_files: { path: "x".repeat(1024 * 1024) } });
        await expectText(await call(big), 413, /over the limit of 1048576 bytes/);
      });
    });

    describe("streaming (RecordIO) requests and answers", () => {
      const recordio = (records: Uint8Array[], headers: Record<string, string> = {}) =>
        fetch(`${agent.url}/api/v1`, {
          method: "POST",
          headers: { "Content-Type": "application/recordio", "Message-Content-Type": MEDIA[encoding], ...headers },
          body: concat(...records),
        });
      const message = (c: Record<string, unknown>) => encodeRecord(encoding === "json" ? JSON.stringify(c) : encodeCall(c));
      const input = { type: "ATTACH_CONTAINER_INPUT", attach_container_input: { type: "CONTAINER_ID", container_id: { value: "c1" } } };

      test("ATTACH_CONTAINER_INPUT in RecordIO passes the transport checks and reaches its handler (an unknown container: 404)", async () => {
        const stdin = { type: "PROCESS_IO", process_io: { type: "DATA", data: { type: "STDIN", data: "aGkK" } } };
        const res = await recordio([message(input), message({ type: "ATTACH_CONTAINER_INPUT", attach_container_input: stdin })]);
        await expectText(res, 404, /^Container c1 cannot be found$/);
      });

      test("other calls in RecordIO are 415; ATTACH_CONTAINER_INPUT in anything else is 415", async () => {
        const health = await recordio([message({ type: "GET_HEALTH" })]);
        await expectText(health, 415, /Streaming 'Content-Type' application\/recordio is not supported for GET_HEALTH call/);
        await expectText(await call(input), 415, /Expecting 'Content-Type' to be application\/recordio for ATTACH_CONTAINER_INPUT call/);
      });

      test("Message-Content-Type is required with RecordIO (400) and must be JSON or protobuf (415)", async () => {
        const headers = { "Content-Type": "application/recordio" };
        const missing = await fetch(`${agent.url}/api/v1`, { method: "POST", headers, body: message(input) });
        await expectText(missing, 400, /Expecting 'Message-Content-Type' to be set for streaming requests/);
        await expectText(
          await recordio([message(input)], { "Message-Content-Type": "text/plain" }),
          415,
          /Expecting 'Message-Content-Type' of application\/json or application\/x-protobuf, got 'text\/plain'/,
        );
      });

      test("an empty, malformed or oversized RecordIO body is 400 naming what is wrong", async () => {
        await expectText(await recordio([]), 400, /Received EOF while reading request body/);
        await expectText(await recordio([new TextEncoder().encode("12x\n")]), 400, /Malformed RecordIO stream: .*byte 2 is 'x'/);
        const raw = (s: string) => recordio([new TextEncoder().encode(s)]);
        await expectText(await raw("5\nab"), 400, /the stream ended inside a record: 2 of its 5 bytes arrived/);
        await expectText(await raw("2000000\n"), 400, /a record of 2000000 bytes is over the limit of 1048576 bytes/);
        const bad = encoding === "json" ? encodeRecord("{nope") : encodeRecord(new Uint8Array([0xff]));
        const why = encoding === "json" ? /Failed to parse body into JSON/ : /Failed to parse body into a protobuf object/;
        await expectText(await recordio([bad]), 400, why);
      });

      test("a streaming Accept is for streaming answers only (406); Message-Accept must allow JSON or protobuf", async () => {
        const streaming = { Accept: "application/recordio", "Message-Accept": MEDIA[encoding] };
        await expectText(await call({ type: "GET_HEALTH" }, streaming), 406, /Streaming response is not supported for GET_HEALTH call/);
        await expectText(
          await call({ type: "GET_HEALTH" }, { Accept: "application/recordio", "Message-Accept": "text/html" }),
          406,
          /Expecting 'Message-Accept' to allow application\/json or application\/x-protobuf, got 'text\/html'/,
        );
        const output = { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: { value: "c1" } } };
        // Past the transport checks, the handler answers (an unknown container: 404).
        await expectText(await call(output, streaming), 404, /^Container c1 cannot be found$/);
        await expectText(await call(output, { Accept: "application/recordio" }), 404, /^Container c1 cannot be found$/);
      });
    });
  });
}

describe("transport", () => {
  test("GET /health is 200 with an empty body; GET /version is the version JSON", async () => {
    const health = await fetch(`${agent.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("");
    const version = await fetch(`${agent.url}/version`);
    expect(version.status).toBe(200);
    expect(((await version.json()) as { version: string }).version).toMatch(/^\d+\.\d+\.\d+/);
  });

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

  test("content types other than JSON, protobuf and RecordIO are 415 naming the type", async () => {
    for (const type of ["text/plain", "application/protobuf", "application/xml"]) {
      const res = await agent.call("x", { "Content-Type": type });
      const expected = `Expecting 'Content-Type' of application/json or application/x-protobuf or application/recordio, got '${type}'`;
      await expectText(res, 415, new RegExp(expected));
    }
  });

  test("a streamed (chunked) body over 1 MiB is 413 while reading", async () => {
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
    await agent.call("x", { "Content-Type": "text/plain" });
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
