// Protobuf for the agent Operator API: agent Call, Response and ProcessIO between their binary
// form and the JSON-shaped objects (proto field names, enum names) that the API validates and builds.
import { fromBinary, fromJson, toBinary, type DescEnum, type JsonValue } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage, type ScalarValue } from "@bufbuild/protobuf/reflect";
import { base64Encode, configureTextEncoding, getTextEncoding } from "@bufbuild/protobuf/wire";
import { CallSchema, ProcessIOSchema, ResponseSchema } from "./gen/mesos/v1/agent/agent_pb.ts";
import { errorOfKind } from "../errors.ts";

/** The top-level messages of the agent API, by the name Mesos gives them. */
export const MESSAGES = {
  "mesos.v1.agent.Call": CallSchema,
  "mesos.v1.agent.Response": ResponseSchema,
  "mesos.v1.agent.ProcessIO": ProcessIOSchema,
} as const;
export type MessageName = keyof typeof MESSAGES;

export type JsonObject = { [key: string]: JsonValue };

export class ProtobufError extends errorOfKind("invalid") {}

// proto2 strings are not checked for UTF-8 by default: bytes that are not UTF-8 would become
// U+FFFD, and two different container IDs the same one. Refuse them instead, as JSON bodies are.
{
  const te = getTextEncoding();
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  configureTextEncoding({ ...te, decodeUtf8: (bytes: Uint8Array) => strict.decode(bytes) });
}

/**
 * Decodes `bytes` as message `name` into its JSON shape: set fields only (proto2 presence),
 * proto field names, enum names, 64-bit integers as decimal strings, bytes as base64, and
 * NaN/Infinity as strings, as protobuf's JSON mapping writes them. Unknown fields are skipped.
 * Required fields are not checked here: the API's schemas check them, for both encodings.
 */
export function decode(name: MessageName, bytes: Uint8Array): JsonObject {
  let message;
  try {
    message = fromBinary(MESSAGES[name], bytes, { readUnknownFields: false });
  } catch (err) {
    throw new ProtobufError(`not a valid ${name}: ${describe(err)}`);
  }
  return shape(reflect(MESSAGES[name], message));
}

/**
 * Encodes a JSON-shaped object (what the JSON answer says, after JSON.stringify) as message
 * `name`. A field the schema lacks, or a required field missing, is an error: the object is ours.
 */
export function encode(name: MessageName, object: unknown): Uint8Array {
  const json = JSON.parse(JSON.stringify(object)) as JsonValue;
  try {
    return toBinary(MESSAGES[name], fromJson(MESSAGES[name], json));
  } catch (err) {
    throw new ProtobufError(`cannot encode ${name}: ${describe(err)}`);
  }
}

function describe(err: unknown): string {
  if (err instanceof TypeError && /encoded data|utf-?8/i.test(err.message)) return "a string field is not valid UTF-8";
  return (err as Error).message ?? String(err);
}

function shape(r: ReflectMessage): JsonObject {
  const out: JsonObject = {};
  for (const field of r.fields) {
    if (!r.isSet(field)) continue;
    switch (field.fieldKind) {
      case "scalar":
        out[field.name] = scalar(r.get(field) as ScalarValue);
        break;
      case "enum":
        out[field.name] = enumName(field.enum, r.get(field) as number);
        break;
      case "message":
        out[field.name] = shape(r.get(field) as ReflectMessage);
        break;
      case "list": {
        const list = [...r.get(field)] as unknown[];
        if (field.listKind === "message") out[field.name] = list.map((m) => shape(m as ReflectMessage));
        else if (field.listKind === "enum") out[field.name] = list.map((n) => enumName(field.enum, n as number));
        else out[field.name] = list.map((v) => scalar(v as ScalarValue));
        break;
      }
      case "map": {
        const map: JsonObject = {};
        for (const [key, value] of r.get(field)) {
          const k = String(key);
          if (field.mapKind === "message") map[k] = shape(value as ReflectMessage);
          else if (field.mapKind === "enum") map[k] = enumName(field.enum, value as number);
          else map[k] = scalar(value as ScalarValue);
        }
        out[field.name] = map;
        break;
      }
    }
  }
  return out;
}

function scalar(value: ScalarValue): JsonValue {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (value instanceof Uint8Array) return base64Encode(value);
  return value;
}

/** proto2 enums are closed: a number the schema lacks went to unknown fields, so a name exists. */
function enumName(desc: DescEnum, value: number): JsonValue {
  return desc.value[value]?.name ?? value;
}
