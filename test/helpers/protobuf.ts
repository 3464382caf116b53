// Our own protobuf client of the Operator API, for tests: a call written as its JSON shape is
// encoded field by field from the schema's descriptors (with no required-field check, so tests
// can send incomplete calls), and a protobuf answer is decoded with @bufbuild/protobuf's
// toJson, which fails on a missing required field. Also a per-encoding `call` for agent tests.
import { fromBinary, ScalarType, toJson, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { base64Decode, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { CallSchema, ProcessIOSchema, ResponseSchema } from "../../src/mesos/gen/mesos/v1/agent/agent_pb.ts";
import type { RunningAgent } from "./agent.ts";

export type Encoding = "json" | "protobuf";
export const ENCODINGS: readonly Encoding[] = ["json", "protobuf"];
export const MEDIA: Record<Encoding, string> = { json: "application/json", protobuf: "application/x-protobuf" };

/** A value the JSON shape has but protobuf cannot carry (a number for a string, an unknown name...). */
export class NotEncodable extends Error {}

/** An agent::Call in its JSON shape, as protobuf bytes. */
export function encodeCall(call: Record<string, unknown>): Uint8Array {
  return encodeAs(CallSchema, call);
}

function encodeAs(desc: DescMessage, object: Record<string, unknown>): Uint8Array {
  const w = new BinaryWriter();
  writeMessage(w, desc, object, desc.typeName);
  return w.finish();
}

/** An agent::Response from protobuf bytes, in protobuf's JSON mapping with proto field names. */
export function decodeResponse(bytes: Uint8Array): Record<string, unknown> {
  return toJson(ResponseSchema, fromBinary(ResponseSchema, bytes), { useProtoFieldName: true }) as Record<string, unknown>;
}

export function decodeProcessIO(bytes: Uint8Array): Record<string, unknown> {
  return toJson(ProcessIOSchema, fromBinary(ProcessIOSchema, bytes), { useProtoFieldName: true }) as Record<string, unknown>;
}

function writeMessage(w: BinaryWriter, desc: DescMessage, object: Record<string, unknown>, path: string): void {
  if (typeof object !== "object" || object === null || Array.isArray(object)) {
    throw new NotEncodable(`${path}: ${JSON.stringify(object)} is not a message`);
  }
  for (const [key, value] of Object.entries(object)) {
    if (value === undefined || value === null) continue;
    const field = desc.fields.find((f) => f.name === key);
    if (!field) throw new NotEncodable(`${path}: ${desc.typeName} has no field '${key}'`);
    const at = `${path}.${key}`;
    switch (field.fieldKind) {
      case "list":
        if (!Array.isArray(value)) throw new NotEncodable(`${at}: ${JSON.stringify(value)} is not a list`);
        for (const item of value) writeSingle(w, field, item, at);
        break;
      case "map":
        if (typeof value !== "object" || Array.isArray(value)) throw new NotEncodable(`${at}: not a map`);
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          w.tag(field.number, WireType.LengthDelimited).fork();
          writeScalar(w, 1, field.mapKey, k, `${at}.key`);
          if (field.mapKind === "message") {
            w.tag(2, WireType.LengthDelimited).fork();
            writeMessage(w, field.message, v as Record<string, unknown>, `${at}.${k}`);
            w.join();
          } else if (field.mapKind === "enum") {
            w.tag(2, WireType.Varint).int32(enumNumber(field, v, at));
          } else {
            writeScalar(w, 2, field.scalar, v, `${at}.${k}`);
          }
          w.join();
        }
        break;
      default:
        writeSingle(w, field, value, at);
    }
  }
}

function writeSingle(w: BinaryWriter, field: DescField, value: unknown, at: string): void {
  const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind;
  if (kind === "message") {
    w.tag(field.number, WireType.LengthDelimited).fork();
    writeMessage(w, field.message!, value as Record<string, unknown>, at);
    w.join();
  } else if (kind === "enum") {
    w.tag(field.number, WireType.Varint).int32(enumNumber(field, value, at));
  } else {
    writeScalar(w, field.number, field.scalar!, value, at);
  }
}

function enumNumber(field: DescField, value: unknown, at: string): number {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  const found = field.enum?.values.find((v) => v.name === value);
  if (!found) throw new NotEncodable(`${at}: ${JSON.stringify(value)} is not a value of ${field.enum?.typeName}`);
  return found.number;
}

function writeScalar(w: BinaryWriter, no: number, type: ScalarType, value: unknown, at: string): void {
  const bad = () => new NotEncodable(`${at}: ${JSON.stringify(value)} is not a ${ScalarType[type]}`);
  const integer = (v: unknown) => (typeof v === "number" && Number.isInteger(v)) || (typeof v === "string" && /^-?\d+$/.test(v));
  switch (type) {
    case ScalarType.STRING:
      if (typeof value !== "string") throw bad();
      w.tag(no, WireType.LengthDelimited).string(value);
      return;
    case ScalarType.BYTES:
      if (typeof value !== "string") throw bad();
      w.tag(no, WireType.LengthDelimited).bytes(base64Decode(value));
      return;
    case ScalarType.BOOL:
      if (typeof value !== "boolean") throw bad();
      w.tag(no, WireType.Varint).bool(value);
      return;
    case ScalarType.DOUBLE:
      if (typeof value !== "number" && !["NaN", "Infinity", "-Infinity"].includes(value as string)) throw bad();
      w.tag(no, WireType.Bit64).double(Number(value));
      return;
    case ScalarType.INT32:
      if (!integer(value)) throw bad();
      w.tag(no, WireType.Varint).int32(Number(value));
      return;
    case ScalarType.UINT32:
      if (!integer(value)) throw bad();
      w.tag(no, WireType.Varint).uint32(Number(value));
      return;
    case ScalarType.INT64:
      if (!integer(value)) throw bad();
      w.tag(no, WireType.Varint).int64(value as number | string);
      return;
    case ScalarType.UINT64:
      if (!integer(value)) throw bad();
      w.tag(no, WireType.Varint).uint64(value as number | string);
      return;
    default:
      throw new NotEncodable(`${at}: ${ScalarType[type]} is not used by the agent API`);
  }
}

/**
 * A POST /api/v1 in `encoding` that reads like agent.call: a call given as an object is sent as
 * JSON text or as protobuf bytes (Accept the same type, unless `headers` say otherwise); a string
 * or bytes go as they are. A protobuf answer comes back as a Response whose body is the decoded
 * message as JSON text, with the headers as sent (Content-Type: application/x-protobuf).
 */
export function caller(agent: RunningAgent, encoding: Encoding) {
  return async (body: unknown, headers: Record<string, string> = {}): Promise<Response> => {
    if (encoding === "json" && !(body instanceof Uint8Array)) return agent.call(body, headers);
    const bytes =
      body instanceof Uint8Array
        ? body
        : typeof body === "string"
          ? new TextEncoder().encode(body)
          : encodeCall(body as Record<string, unknown>);
    const res = await fetch(`${agent.url}/api/v1`, {
      method: "POST",
      headers: { "Content-Type": MEDIA[encoding], Accept: MEDIA[encoding], ...headers },
      body: bytes,
    });
    return decodedResponse(res);
  };
}

/** `res` with a protobuf body replaced by its decoded agent::Response as JSON text. */
async function decodedResponse(res: Response): Promise<Response> {
  if (res.headers.get("content-type") !== MEDIA.protobuf) return res;
  const message = decodeResponse(new Uint8Array(await res.arrayBuffer()));
  return new Response(JSON.stringify(message), { status: res.status, headers: res.headers });
}

/** Protobuf's JSON mapping writes 64-bit integers as strings; tests compare numbers. */
export function int64(value: unknown): number {
  return typeof value === "string" ? Number(value) : (value as number);
}
