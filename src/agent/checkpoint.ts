// A container's checkpoint (`<runtime_dir>/containers/<id>/container.json`): what a
// restarted agent needs to find it again, adopt it or destroy it, and keep its image's
// layers. The one place that maps the in-memory record to the file and back.
//
// Written before any side effect of a launch (state PROVISIONING, with every path the
// launch will create), before the launcher is asked to start the workload (LAUNCHING, with
// the image's layers), once it runs (RUNNING, pid and start time), and when it ends
// (EXITED, with how). Replaced atomically (runtime/state.ts). A container found in
// PROVISIONING after a restart is destroyed, so that state's record needs no layers.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import type { ContainerID, Resource } from "../mesos/messages.ts";
import { ContainerCgroup, type CgroupLayout } from "../runtime/cgroups.ts";
import { isBlankPage, rewriteStateFile } from "../runtime/state.ts";
import { bootId } from "../util/process.ts";
import { idKey, type Container } from "./container.ts";
import { UcrError } from "../errors.ts";

export const CHECKPOINT_VERSION = 1;
export const CHECKPOINT_FILE = "container.json";

const IdSchema: v.GenericSchema<unknown, ContainerID> = v.object({
  value: v.pipe(v.string(), v.minLength(1)),
  parent: v.optional(v.lazy(() => IdSchema)),
});

const LimitsSchema = v.object({
  cpus: v.optional(v.number()),
  memBytes: v.optional(v.number()),
  diskBytes: v.optional(v.number()),
});

const Strings = v.array(v.string());

/** Fields every version has, in their current form. */
const common = {
  id: IdSchema,
  sandbox: v.string(),
  provisionerDir: v.optional(v.string()),
  pid: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  pidStart: v.optional(v.number()),
  /** The kernel boot it was launched in (absent in checkpoints of ucr < 0.2). */
  bootId: v.optional(v.string()),
  image: v.optional(v.string()),
  /** Its own cgroup directories (none when it shares its parent's). */
  cgroups: v.optional(Strings),
  limits: v.optional(LimitsSchema),
  volumeImages: v.optional(Strings),
  user: v.optional(v.string()),
  /** Its shareable /dev/shm (namespaces/ipc), for nested containers launched after a restart. */
  shm: v.optional(v.string()),
  sandboxInContainer: v.optional(v.string()),
  imageRef: v.optional(v.string()),
  launchedAt: v.number(),
  /** Its stdio is served by the launcher's switchboard (absent in checkpoints of ucr < 0.2: none). */
  io: v.optional(v.picklist(["tty", "pipes"])),
  /** A session: a restarted agent ends it, as Mesos destroys DEBUG containers on recovery. */
  session: v.optional(v.boolean()),
};

const CheckpointSchema = v.object({
  version: v.literal(CHECKPOINT_VERSION),
  ...common,
  /** LAUNCHING: the launcher may have started the workload (look for its pid file). */
  state: v.picklist(["PROVISIONING", "LAUNCHING", "RUNNING", "EXITED"]),
  /** diff_ids of the image's layers and of its image volumes' layers. */
  layers: v.optional(Strings),
  oomBaseline: v.optional(v.number()),
  exitStatus: v.optional(v.number()),
  message: v.optional(v.string()),
  limitation: v.optional(v.object({ reason: v.string(), resources: v.array(v.looseObject({ name: v.string() })) })),
  termination: v.optional(v.object({ state: v.string(), reason: v.optional(v.string()), message: v.string() })),
  /** Destroyed by the agent: its sandbox, rootfs and cgroups are gone (or going). */
  destroyed: v.optional(v.boolean()),
});
export type Checkpoint = v.InferOutput<typeof CheckpointSchema>;
export type CheckpointState = Checkpoint["state"];

/** ucr 0.1 wrote no version and only once the workload ran; `runtime` was its own dir. */
const CheckpointV0Schema = v.object({ ...common, runtime: v.optional(v.string()) });

export class CheckpointError extends UcrError {
  constructor(path: string, why: string) {
    super("internal", `checkpoint ${path}: ${why}`);
  }
}

/** The record of `c` as it stands, in state `state`. */
export function checkpointOf(c: Container, state: CheckpointState): Checkpoint {
  return {
    version: CHECKPOINT_VERSION,
    id: c.id,
    state,
    sandbox: c.sandbox,
    ...(c.provisionerDir ? { provisionerDir: c.provisionerDir } : {}),
    ...(c.pid !== undefined ? { pid: c.pid } : {}),
    ...(c.pidStart !== undefined ? { pidStart: c.pidStart } : {}),
    bootId: bootId(),
    ...(c.image ? { image: c.image } : {}),
    ...(c.cgroupDirs ? { cgroups: c.cgroupDirs } : {}),
    ...(c.limits ? { limits: c.limits } : {}),
    ...(c.volumeImages ? { volumeImages: c.volumeImages } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(c.shm ? { shm: c.shm } : {}),
    ...(c.sandboxInContainer ? { sandboxInContainer: c.sandboxInContainer } : {}),
    ...(c.imageRef ? { imageRef: c.imageRef } : {}),
    ...(c.io ? { io: c.io } : {}),
    ...(c.session ? { session: true } : {}),
    ...(c.layers ? { layers: c.layers } : {}),
    ...(c.oomBaseline !== undefined ? { oomBaseline: c.oomBaseline } : {}),
    launchedAt: c.launchedAt,
    ...(c.state === "EXITED" && c.exitStatus !== undefined ? { exitStatus: c.exitStatus } : {}),
    ...(c.message ? { message: c.message } : {}),
    ...(c.limitation ? { limitation: c.limitation } : {}),
    ...(c.termination ? { termination: c.termination } : {}),
    ...(c.destroyed ? { destroyed: true } : {}),
  };
}

/** Writes `c`'s checkpoint (in its runtime dir, which must exist). */
export function writeCheckpoint(c: Container, state: CheckpointState): void {
  rewriteStateFile(join(c.runtime, CHECKPOINT_FILE), JSON.stringify(checkpointOf(c, state)));
}

/**
 * Reads the checkpoint in runtime dir `dir`: undefined if there is none; CheckpointError if
 * it cannot be used (torn, wrong shape, a newer version). A version 0 record is migrated:
 * it was written once the workload ran, and its layers are read from the launch spec.
 */
export function readCheckpoint(dir: string): Checkpoint | undefined {
  const path = join(dir, CHECKPOINT_FILE);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CheckpointError(path, (err as Error).message);
  }
  // A spare runtime dir's page, not written yet: the agent stopped as the launch began.
  if (isBlankPage(text)) return undefined;
  return parseCheckpoint(text, path, () => layersFromSpec(dir));
}

/** The checkpoint in `text` (from `path`), migrated to the current version. */
export function parseCheckpoint(text: string, path: string, v0Layers: () => string[] | undefined = () => undefined): Checkpoint {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(path, `not JSON (${(err as Error).message})`);
  }
  const version = typeof json === "object" && json !== null && "version" in json ? (json as { version: unknown }).version : 0;
  if (version === CHECKPOINT_VERSION) {
    const parsed = v.safeParse(CheckpointSchema, json);
    if (!parsed.success) throw new CheckpointError(path, issues(parsed.issues));
    return parsed.output;
  }
  if (version !== 0) {
    throw new CheckpointError(path, `version ${String(version)} is not one this ucr reads (it reads 0 to ${CHECKPOINT_VERSION})`);
  }
  const parsed = v.safeParse(CheckpointV0Schema, json);
  if (!parsed.success) throw new CheckpointError(path, issues(parsed.issues));
  const { runtime: _runtime, ...rest } = parsed.output;
  const layers = v0Layers();
  return { version: CHECKPOINT_VERSION, ...rest, state: "RUNNING", ...(layers ? { layers } : {}) };
}

function issues(list: readonly v.BaseIssue<unknown>[]): string {
  return list
    .slice(0, 3)
    .map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`)
    .join("; ");
}

/**
 * Layer ids a version 0 container's launch spec mounts: the store's layer trees
 * (`.../layers/<hex>/rootfs`) it names as overlay lowers, bind source or volume lowers.
 */
function layersFromSpec(dir: string): string[] | undefined {
  const spec = join(dir, "launch.json");
  if (!existsSync(spec)) return undefined;
  try {
    const text = readFileSync(spec, "utf8");
    const ids = [...text.matchAll(/\/layers\/([a-f0-9]{64})\/rootfs/g)].map((m) => `sha256:${m[1]}`);
    return [...new Set(ids)];
  } catch {
    return undefined;
  }
}

/** The in-memory container a checkpoint describes (its runtime dir is `runtime`). */
export function containerFrom(
  record: Checkpoint,
  runtime: string,
  parent: Container | undefined,
  layout: CgroupLayout,
): { container: Container; settle: () => void } {
  let settle!: () => void;
  const common = {
    id: record.id,
    key: idKey(record.id),
    sandbox: record.sandbox,
    runtime,
    ...(record.provisionerDir ? { provisionerDir: record.provisionerDir } : {}),
    ...(record.pidStart !== undefined ? { pidStart: record.pidStart } : {}),
    ...(record.image ? { image: record.image } : {}),
    ...(record.cgroups ? { cgroupDirs: record.cgroups, cgroup: ContainerCgroup.existing(layout, record.cgroups) } : {}),
    ...(record.limits ? { limits: record.limits } : {}),
    ...(record.volumeImages ? { volumeImages: record.volumeImages } : {}),
    ...(record.user ? { user: record.user } : {}),
    ...(record.shm ? { shm: record.shm } : {}),
    ...(record.sandboxInContainer ? { sandboxInContainer: record.sandboxInContainer } : {}),
    ...(parent ? { parent } : {}),
    launchedAt: record.launchedAt,
    ...(record.imageRef ? { imageRef: record.imageRef } : {}),
    ...(record.io ? { io: record.io } : {}),
    ...(record.session ? { session: true } : {}),
    ...(record.layers ? { layers: record.layers } : {}),
    ...(record.oomBaseline !== undefined ? { oomBaseline: record.oomBaseline } : {}),
    ...(record.message ? { message: record.message } : {}),
    ...(record.limitation ? { limitation: record.limitation as { reason: string; resources: Resource[] } } : {}),
    ...(record.termination ? { termination: record.termination } : {}),
    ...(record.destroyed ? { destroyed: true } : {}),
    recovered: true,
    leases: [],
    exited: new Promise<void>((r) => (settle = r)),
  };
  const pid = record.pid !== undefined ? { pid: record.pid } : {};
  let container: Container;
  if (record.state === "EXITED") {
    container = { ...common, state: "EXITED", ...pid, ...(record.exitStatus !== undefined ? { exitStatus: record.exitStatus } : {}) };
  } else if (record.state === "RUNNING" && record.pid !== undefined) {
    container = { ...common, state: "RUNNING", pid: record.pid };
  } else {
    // Not started, or being started (LAUNCHING: the launcher may have a pid for it). A RUNNING
    // record without a pid (ucr 0.1's, torn) is one whose workload cannot be found: recovery
    // sees it exited.
    container = { ...common, state: "PROVISIONING", ...pid, ...(record.state === "LAUNCHING" ? { launching: true } : {}) };
  }
  if (parent && container.cgroup === undefined) container.cgroup = parent.cgroup;
  return { container, settle };
}
