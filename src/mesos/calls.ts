// The agent::Call union of the v1 Operator API: every call type Mesos defines, and for
// each the valibot schema of its payload field. Parsing here is all the API layer checks
// about shape; meaning (does the container exist, is the image valid) is the handlers'.
import * as v from "valibot";
import {
  CommandInfoSchema,
  ContainerIDSchema,
  ContainerInfoSchema,
  DurationInfoSchema,
  ImageSchema,
  Int64,
  LimitsSchema,
  ResourceSchema,
  TTYInfoSchema,
} from "./messages.ts";
import { errorOfKind } from "../errors.ts";

const Signal = v.pipe(Int64, v.minValue(1, "must be a signal number from 1 to 64"), v.maxValue(64, "must be a signal number from 1 to 64"));

export const LaunchContainerSchema = v.looseObject({
  container_id: ContainerIDSchema,
  command: v.optional(CommandInfoSchema),
  resources: v.optional(v.array(ResourceSchema), []),
  limits: v.optional(LimitsSchema),
  container: v.optional(ContainerInfoSchema),
});
export type LaunchContainer = v.InferOutput<typeof LaunchContainerSchema>;

const ContainerRefSchema = v.looseObject({ container_id: ContainerIDSchema });

const KillContainerSchema = v.looseObject({
  container_id: ContainerIDSchema,
  signal: v.optional(Signal),
});

const LaunchNestedContainerSchema = v.looseObject({
  container_id: ContainerIDSchema,
  command: v.optional(CommandInfoSchema),
  container: v.optional(ContainerInfoSchema),
});

const GetContainersSchema = v.looseObject({
  show_nested: v.optional(v.boolean(), false),
  show_standalone: v.optional(v.boolean(), false),
});

const PruneImagesSchema = v.looseObject({
  excluded_images: v.optional(v.array(ImageSchema), []),
});

const PathSchema = v.looseObject({ path: v.string() });

/** protobuf's JSON form of bytes: standard or URL-safe base64, padded or not. */
const Base64 = v.pipe(v.string(), v.regex(/^[A-Za-z0-9+/_-]*={0,2}$/, "must be base64"));

/** agent::ProcessIO, the records of the streaming calls. Mesos' own checks are the handler's (streams.ts). */
const ProcessIOSchema = v.looseObject({
  type: v.optional(v.picklist(["UNKNOWN", "DATA", "CONTROL"])),
  data: v.optional(v.looseObject({ type: v.optional(v.picklist(["UNKNOWN", "STDIN", "STDOUT", "STDERR"])), data: v.optional(Base64) })),
  control: v.optional(
    v.looseObject({
      type: v.optional(v.picklist(["UNKNOWN", "TTY_INFO", "HEARTBEAT"])),
      tty_info: v.optional(TTYInfoSchema),
      heartbeat: v.optional(v.looseObject({ interval: v.optional(DurationInfoSchema) })),
    }),
  ),
});
export type ProcessIO = v.InferOutput<typeof ProcessIOSchema>;

const AttachContainerInputSchema = v.looseObject({
  type: v.optional(v.picklist(["UNKNOWN", "CONTAINER_ID", "PROCESS_IO"])),
  container_id: v.optional(ContainerIDSchema),
  process_io: v.optional(ProcessIOSchema),
});
export type AttachContainerInput = v.InferOutput<typeof AttachContainerInputSchema>;

/**
 * Every Call.Type of agent.proto (Mesos 1.12), with the field that carries its payload and
 * whether Mesos requires that field. `schema: null` means the call has no payload.
 */
const CALL_TYPES = {
  UNKNOWN: { field: null, schema: null, required: false },
  GET_HEALTH: { field: null, schema: null, required: false },
  GET_FLAGS: { field: null, schema: null, required: false },
  GET_VERSION: { field: null, schema: null, required: false },
  GET_METRICS: { field: "get_metrics", schema: v.looseObject({ timeout: v.optional(DurationInfoSchema) }), required: false },
  GET_LOGGING_LEVEL: { field: null, schema: null, required: false },
  SET_LOGGING_LEVEL: {
    field: "set_logging_level",
    schema: v.looseObject({ level: v.pipe(Int64, v.minValue(0)), duration: DurationInfoSchema }),
    required: true,
  },
  LIST_FILES: { field: "list_files", schema: PathSchema, required: true },
  READ_FILE: {
    field: "read_file",
    schema: v.looseObject({ path: v.string(), offset: Int64, length: v.optional(Int64) }),
    required: true,
  },
  GET_STATE: { field: null, schema: null, required: false },
  GET_CONTAINERS: { field: "get_containers", schema: GetContainersSchema, required: false },
  GET_FRAMEWORKS: { field: null, schema: null, required: false },
  GET_EXECUTORS: { field: null, schema: null, required: false },
  GET_OPERATIONS: { field: null, schema: null, required: false },
  GET_TASKS: { field: null, schema: null, required: false },
  GET_AGENT: { field: null, schema: null, required: false },
  GET_RESOURCE_PROVIDERS: { field: null, schema: null, required: false },
  LAUNCH_NESTED_CONTAINER: { field: "launch_nested_container", schema: LaunchNestedContainerSchema, required: true },
  WAIT_NESTED_CONTAINER: { field: "wait_nested_container", schema: ContainerRefSchema, required: true },
  KILL_NESTED_CONTAINER: { field: "kill_nested_container", schema: KillContainerSchema, required: true },
  REMOVE_NESTED_CONTAINER: { field: "remove_nested_container", schema: ContainerRefSchema, required: true },
  LAUNCH_NESTED_CONTAINER_SESSION: {
    field: "launch_nested_container_session",
    schema: LaunchNestedContainerSchema,
    required: true,
  },
  ATTACH_CONTAINER_INPUT: { field: "attach_container_input", schema: AttachContainerInputSchema, required: true },
  ATTACH_CONTAINER_OUTPUT: { field: "attach_container_output", schema: ContainerRefSchema, required: true },
  LAUNCH_CONTAINER: { field: "launch_container", schema: LaunchContainerSchema, required: true },
  WAIT_CONTAINER: { field: "wait_container", schema: ContainerRefSchema, required: true },
  KILL_CONTAINER: { field: "kill_container", schema: KillContainerSchema, required: true },
  REMOVE_CONTAINER: { field: "remove_container", schema: ContainerRefSchema, required: true },
  ADD_RESOURCE_PROVIDER_CONFIG: { field: "add_resource_provider_config", schema: v.looseObject({}), required: true },
  UPDATE_RESOURCE_PROVIDER_CONFIG: { field: "update_resource_provider_config", schema: v.looseObject({}), required: true },
  REMOVE_RESOURCE_PROVIDER_CONFIG: { field: "remove_resource_provider_config", schema: v.looseObject({}), required: true },
  MARK_RESOURCE_PROVIDER_GONE: { field: "mark_resource_provider_gone", schema: v.looseObject({}), required: true },
  PRUNE_IMAGES: { field: "prune_images", schema: PruneImagesSchema, required: false },
} as const;

export type CallType = keyof typeof CALL_TYPES;

function isCallType(x: string): x is CallType {
  return Object.hasOwn(CALL_TYPES, x);
}

/** The payload type of a call, as its schema produces it (undefined for payload-less calls). */
export type Payload<T extends CallType> = (typeof CALL_TYPES)[T]["schema"] extends v.GenericSchema<unknown, infer O> ? O : undefined;

/** A validated call: its type and its payload (defaults applied). */
export interface Call<T extends CallType = CallType> {
  type: T;
  payload: Payload<T>;
}

export class CallError extends errorOfKind("invalid") {}

/**
 * Mesos' JSON-to-protobuf parser takes `null` as an unset field, and a null element of an
 * array as nothing (stout/protobuf.hpp); mesos-go writes null for every empty repeated field
 * (`"uris":null`, `"volumes":null`). Removes them in place, so the schemas see what Mesos
 * would. Iterative: the depth of `value` never matters here.
 */
function dropNulls(value: unknown): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) {
      let kept = 0;
      for (const e of v) {
        if (e === null) continue;
        v[kept++] = e;
        if (typeof e === "object") stack.push(e);
      }
      v.length = kept;
    } else if (typeof v === "object" && v !== null) {
      const record = v as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        const e = record[key];
        if (e === null) delete record[key];
        else if (typeof e === "object") stack.push(e);
      }
    }
  }
}

/** Turns a parsed JSON body into a Call, or throws CallError naming what is wrong. */
export function parseCall(body: unknown): Call {
  dropNulls(body);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new CallError(`expected a JSON object with a 'type' field, got ${describe(body)}`);
  }
  const record = body as Record<string, unknown>;
  const type = record.type;
  if (type === undefined) throw new CallError("Expecting 'type' to be present");
  if (typeof type !== "string") throw new CallError(`'type' must be a string naming the call, got ${describe(type)}`);
  if (!isCallType(type)) throw new CallError(`Unknown call type '${type}'`);
  const spec = CALL_TYPES[type];
  if (spec.field === null || spec.schema === null) return { type, payload: undefined } as Call;
  const raw = record[spec.field];
  if (raw === undefined) {
    if (spec.required) throw new CallError(`Expecting '${spec.field}' to be present`);
    return { type, payload: v.parse(spec.schema as v.GenericSchema, {}) } as Call;
  }
  const result = v.safeParse(spec.schema as v.GenericSchema, raw);
  if (!result.success) throw new CallError(describeIssues(spec.field, result.issues));
  return { type, payload: result.output } as Call;
}

/** "launch_container.container_id.value: must not be empty" for the first issue (and a count). */
function describeIssues(root: string, issues: ReadonlyArray<v.BaseIssue<unknown>>): string {
  const first = issues[0]!;
  const path = [root, ...(first.path ?? []).map((p) => String(p.key))].filter((s) => s !== "").join(".");
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : "";
  return `${path}: ${issueMessage(first)}${more}`;
}

function issueMessage(issue: v.BaseIssue<unknown>): string {
  if (issue.received === "undefined") return "is required but missing";
  // Our own checks already say what they saw; valibot's defaults read "Invalid type: ...".
  if (issue.type === "raw_check" || issue.type === "raw_transform") return issue.message;
  const what = issue.message.startsWith("Invalid ") ? `expected ${issue.expected ?? "another value"}` : issue.message;
  return `${what}, got ${issue.received}`;
}

function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  if (typeof x === "string") return `the string ${JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x)}`;
  return `${typeof x} ${JSON.stringify(x)}`;
}
