// ucr's Mesos schema and protobuf codec: the JSON shape a protobuf call decodes to, answers
// encoded from their JSON shape, interop with protoc (Google's C++ protobuf), the schema checked
// against mesos-go's copy of Mesos' .proto files, and the generated code kept up to date.
import { createFileRegistry, fromBinary, type DescField, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode, encode, ProtobufError } from "../../src/mesos/codec.ts";
import { ROOT } from "../helpers/agent.ts";
import { decodeResponse, encodeCall } from "../helpers/protobuf.ts";

const PROTO_DIR = join(ROOT, "src/mesos/proto");
const AGENT_PROTO = "mesos/v1/agent/agent.proto";
const protoc = Bun.which("protoc");
const NO_PROTOC = "protoc is not installed (Debian: protobuf-compiler; scripts/setup.sh installs it)";
const GOCODE = "/usr/share/gocode/src";
const MESOS_GO = "github.com/mesos/mesos-go/api/v1/lib";
const haveMesosGo =
  existsSync(join(GOCODE, MESOS_GO, "agent/agent.proto")) && existsSync(join(GOCODE, "github.com/gogo/protobuf/gogoproto/gogo.proto"));
const NO_MESOS_GO = "Debian's golang-github-mesos-mesos-go-dev (with golang-github-gogo-protobuf-dev) is not installed";

function runProtoc(args: string[], stdin?: Uint8Array | string): Uint8Array {
  const input = stdin === undefined ? "ignore" : Buffer.from(stdin);
  const r = Bun.spawnSync([protoc!, ...args], { stdin: input, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`protoc ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

const call = (object: Record<string, unknown>) => encode("mesos.v1.agent.Call", object);

describe("decode: protobuf to the JSON shape the API validates", () => {
  test("a full LAUNCH_CONTAINER comes back as written, with 64-bit integers as strings", () => {
    const launch = {
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "c1", parent: { value: "p" } },
        command: {
          environment: { variables: [{ name: "K", type: "VALUE", value: "v" }] },
          shell: false,
          value: "/bin/echo",
          arguments: ["echo", "hi"],
          uris: [{ value: "http://h/f.tgz", extract: false }],
        },
        resources: [
          { name: "cpus", type: "SCALAR", scalar: { value: 0.5 } },
          { name: "ports", type: "RANGES", ranges: { range: [{ begin: 1000, end: 2000 }] } },
        ],
        container: {
          type: "MESOS",
          mesos: { image: { type: "DOCKER", docker: { name: "alpine:3.19" }, cached: true } },
          volumes: [{ container_path: "/s", mode: "RO", source: { type: "SECRET", secret: { type: "VALUE", value: { data: "aGk=" } } } }],
          linux_info: { bounding_capabilities: { capabilities: ["CHOWN", "SYS_ADMIN"] }, share_cgroups: false },
          tty_info: { window_size: { rows: 24, columns: 80 } },
        },
        limits: { mem: { value: 64 }, cpus: { value: "Infinity" } },
      },
    };
    const decoded = decode("mesos.v1.agent.Call", call(launch));
    const expected = structuredClone(launch);
    (expected.launch_container.resources[1] as { ranges: unknown }).ranges = { range: [{ begin: "1000", end: "2000" }] };
    expect(decoded as unknown).toEqual(expected);
  });

  test("fields set to their default are kept (proto2 presence), unset ones are absent", () => {
    expect(decode("mesos.v1.agent.Call", call({ type: "GET_CONTAINERS", get_containers: { show_nested: false } }))).toEqual({
      type: "GET_CONTAINERS",
      get_containers: { show_nested: false },
    });
    expect(decode("mesos.v1.agent.Call", call({ type: "UNKNOWN" }))).toEqual({ type: "UNKNOWN" });
    expect(decode("mesos.v1.agent.Call", new Uint8Array())).toEqual({});
  });

  test("required fields are not checked here: the API's schema checks them for both encodings", () => {
    // launch_container {} with no container_id
    expect(decode("mesos.v1.agent.Call", encodeCall({ type: "LAUNCH_CONTAINER", launch_container: {} }))).toEqual({
      type: "LAUNCH_CONTAINER",
      launch_container: {},
    });
  });

  test("unknown fields and enum numbers the schema lacks are skipped, as protobuf does", () => {
    const bytes = new Uint8Array([...encodeCall({ type: "GET_HEALTH" }), 0xb8, 0x3e, 0x05]);
    expect(decode("mesos.v1.agent.Call", bytes)).toEqual({ type: "GET_HEALTH" });
    expect(decode("mesos.v1.agent.Call", encodeCall({ type: 99 }))).toEqual({});
  });

  test("bytes that are not protobuf, or strings that are not UTF-8, are a ProtobufError", () => {
    expect(() => decode("mesos.v1.agent.Call", new Uint8Array([0xff]))).toThrow(ProtobufError);
    const json = new TextEncoder().encode('{"type":"GET_HEALTH"}');
    expect(() => decode("mesos.v1.agent.Call", json)).toThrow(/not a valid mesos\.v1\.agent\.Call/);
    // wait_container { container_id { value: "\xc3" } }
    const bad = new Uint8Array([...encodeCall({ type: "WAIT_CONTAINER" }), 0x72, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xc3]);
    expect(() => decode("mesos.v1.agent.Call", bad)).toThrow(/a string field is not valid UTF-8/);
    // A message nested past protobuf's recursion limit (ContainerID.parent, 200 deep).
    let deep: Record<string, unknown> = { value: "x" };
    for (let i = 0; i < 200; i++) deep = { value: "x", parent: deep };
    expect(() => decode("mesos.v1.agent.Call", encodeCall({ type: "WAIT_CONTAINER", wait_container: { container_id: deep } }))).toThrow(
      ProtobufError,
    );
  });
});

describe("encode: answers from their JSON shape", () => {
  test("what JSON.stringify keeps is what is encoded", () => {
    const answer = { type: "WAIT_CONTAINER", wait_container: { exit_status: 256, message: undefined, state: "TASK_FAILED" } };
    expect(decodeResponse(encode("mesos.v1.agent.Response", answer))).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: { exit_status: 256, state: "TASK_FAILED" },
    });
  });

  test("a field the schema lacks, or a required field missing, is an error naming it", () => {
    const extra = { type: "GET_HEALTH", get_health: { healthy: true, extra: 1 } };
    expect(() => encode("mesos.v1.agent.Response", extra)).toThrow(/key "extra" is unknown/);
    const missing = { type: "GET_HEALTH", get_health: {} };
    expect(() => encode("mesos.v1.agent.Response", missing)).toThrow(/GetHealth\.healthy .*required field not set/);
  });
});

describe.skipIf(!protoc)(`protoc interop (${protoc ? "protoc found" : NO_PROTOC})`, () => {
  test("a call written by protoc decodes to its JSON shape", () => {
    const text = 'type: KILL_CONTAINER\nkill_container { container_id { value: "c1" parent { value: "root" } } signal: 15 }\n';
    const bytes = runProtoc([`-I${PROTO_DIR}`, "--encode=mesos.v1.agent.Call", AGENT_PROTO], text);
    expect(decode("mesos.v1.agent.Call", bytes)).toEqual({
      type: "KILL_CONTAINER",
      kill_container: { container_id: { value: "c1", parent: { value: "root" } }, signal: 15 },
    });
  });

  test("an answer ucr encodes reads in protoc as the same message", () => {
    const answer = {
      type: "GET_CONTAINERS",
      get_containers: {
        containers: [
          {
            container_id: { value: "k" },
            container_status: { container_id: { value: "k", parent: { value: "c1" } }, executor_pid: 1234 },
            resource_statistics: { timestamp: 1.5, mem_total_bytes: 4096, cpus_limit: 0.5 },
          },
        ],
      },
    };
    const text = new TextDecoder().decode(
      runProtoc([`-I${PROTO_DIR}`, "--decode=mesos.v1.agent.Response", AGENT_PROTO], encode("mesos.v1.agent.Response", answer)),
    );
    expect(text.replace(/\s+/g, " ").trim()).toBe(
      'type: GET_CONTAINERS get_containers { containers { container_id { value: "k" } container_status { executor_pid: 1234 ' +
        'container_id { value: "k" parent { value: "c1" } } } ' +
        "resource_statistics { timestamp: 1.5 cpus_limit: 0.5 mem_total_bytes: 4096 } } }",
    );
  });

  test("the committed generated code matches the schema (bun scripts/proto.ts --check)", () => {
    const r = Bun.spawnSync([process.execPath, join(ROOT, "scripts/proto.ts"), "--check"], { stdout: "pipe", stderr: "pipe" });
    expect({ code: r.exitCode, err: r.stderr.toString() }).toEqual({ code: 0, err: "" });
  });
});

/** The messages and enums of a .proto file set, compiled by protoc. */
function compile(includes: string[], file: string): FileRegistry {
  const dir = mkdtempSync(join(tmpdir(), "ucr-proto-test-"));
  try {
    const out = join(dir, "set.pb");
    runProtoc([...includes.map((i) => `-I${i}`), "--include_imports", `--descriptor_set_out=${out}`, file]);
    return createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(out)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function fieldType(f: DescField): string {
  const kind = f.fieldKind === "list" ? `repeated ${f.listKind}` : f.fieldKind;
  const of = f.message?.typeName ?? f.enum?.typeName ?? (f.scalar !== undefined ? `scalar ${f.scalar}` : "");
  return `${kind} ${of.replace(/^mesos\.(v1\.)?/, "")}${f.fieldKind !== "list" && f.presence === 2 ? " required" : ""}`;
}

const WHY_NOT_MESOS_GO = !protoc ? NO_PROTOC : !haveMesosGo ? NO_MESOS_GO : "found";
describe.skipIf(!protoc || !haveMesosGo)(`the schema against mesos-go's copy of Mesos' (${WHY_NOT_MESOS_GO})`, () => {
  test("every message, field and enum value both have carries the same number and type", () => {
    const ours = compile([PROTO_DIR], AGENT_PROTO);
    const theirs = compile([GOCODE], `${MESOS_GO}/agent/agent.proto`);
    const theirName = (name: string) => name.replace(/^mesos\.v1\./, "mesos.");
    const differences: string[] = [];
    let fields = 0;
    let values = 0;
    for (const type of ours) {
      if (!type.typeName.startsWith("mesos.v1.")) continue;
      const other = theirs.get(theirName(type.typeName));
      if (!other) continue; // newer than mesos-go's copy (LAUNCH_CONTAINER and after)
      if (type.kind === "message" && other.kind === "message") {
        for (const f of type.fields) {
          const g = (other as DescMessage).fields.find((x) => x.name === f.name);
          if (!g) continue;
          fields++;
          if (f.number !== g.number || fieldType(f) !== fieldType(g)) {
            differences.push(`${type.typeName}.${f.name}: ours ${f.number} ${fieldType(f)}, theirs ${g.number} ${fieldType(g)}`);
          }
        }
      } else if (type.kind === "enum" && other.kind === "enum") {
        for (const v of type.values) {
          const w = other.values.find((x) => x.name === v.name);
          if (!w) continue;
          values++;
          if (v.number !== w.number) differences.push(`${type.typeName}.${v.name}: ours ${v.number}, theirs ${w.number}`);
        }
      } else {
        differences.push(`${type.typeName}: ours is a ${type.kind}, theirs a ${other.kind}`);
      }
    }
    expect(differences).toEqual([]);
    // Most of the schema is in mesos-go's copy: the comparison covers it, not a corner.
    expect(fields).toBeGreaterThan(250);
    expect(values).toBeGreaterThan(150);
  });

  test("a GET_FLAGS answer from ucr reads with mesos-go's schema in protoc", () => {
    const answer = { type: "GET_FLAGS", get_flags: { flags: [{ name: "port", value: "5051" }] } };
    const bytes = encode("mesos.v1.agent.Response", answer);
    const decoded = runProtoc([`-I${GOCODE}`, "--decode=mesos.agent.Response", `${MESOS_GO}/agent/agent.proto`], bytes);
    const text = new TextDecoder().decode(decoded);
    expect(text.replace(/\s+/g, " ").trim()).toBe('type: GET_FLAGS get_flags { flags { name: "port" value: "5051" } }');
  });
});
