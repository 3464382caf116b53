// Mesos' rules for a LAUNCH_CONTAINER call that need no I/O: every field applied or refused,
// what may be nested how, which resources a container may use, which image types are enabled,
// the limits the resources ask for, rlimits and secrets. Pure functions of the call, its
// parent and the flags. (Over 400 lines: every field Mesos defines for a launch is applied or
// refused here, each with its message; launch-fields.ts says what each field does.)
import * as v from "valibot";
import type { CommandInfo, Image, RLimitInfo, RlimitType, Resource, Secret, Volume } from "../mesos/messages.ts";
import type { LaunchContainer } from "../mesos/calls.ts";
import { DockerConfigSchema, type DockerConfig, type Flags } from "../config/flags.ts";
import { UcrError, invalid, type ErrorKind } from "../errors.ts";
import { idKey, type Container } from "./container.ts";

/** Throws the 400 Mesos answers for a launch it refuses before doing anything. */
export function checkLaunch(call: LaunchContainer, parent: Container | undefined, flags: FieldFlags): void {
  const id = call.container_id;
  if (call.container && call.container.type !== "MESOS") throw invalid("The provided ContainerInfo is not supported");
  checkLaunchFields(call, flags);
  const shareCgroups = call.container?.linux_info?.share_cgroups;
  if (id.parent) {
    if (!parent) throw invalid(`Parent container ${idKey(id.parent)} does not exist`);
    if (parent.state !== "RUNNING") throw invalid(`Parent container ${parent.key} is not running`);
    const depth = idKey(id).split(".").length - 1;
    const hasResources = (call.resources ?? []).length > 0 || Object.keys(call.limits ?? {}).length > 0;
    if (depth >= 2 && hasResources) {
      throw invalid("Resources and limits can only be set on top-level containers and their direct children");
    }
    if (depth >= 2 && shareCgroups === false) {
      throw invalid("Only a direct child of a top-level container may have its own cgroups (share_cgroups: false)");
    }
    if (hasResources && shareCgroups !== false) {
      throw invalid(
        "A nested container that shares its parent's cgroups cannot have its own resources or limits; set share_cgroups: false",
      );
    }
  } else {
    if (shareCgroups === true) throw invalid("A top-level container cannot share cgroups: it has no parent");
  }

  const image = call.container?.mesos?.image;
  if (image?.type === "DOCKER" && !(flags.image_providers ?? []).includes("docker")) {
    throw invalid(
      "Docker images are not enabled: start the agent with --image_providers=docker --isolation=filesystem/linux,docker/runtime",
    );
  }
  if (image?.type === "APPC" && !(flags.image_providers ?? []).includes("appc")) {
    throw invalid("Appc images are not enabled: start the agent with --image_providers=appc (and --isolation=filesystem/linux)");
  }
}

/** Does this launch get cgroups of its own (a nested one shares its parent's unless told not to)? */
export function ownsCgroups(call: LaunchContainer): boolean {
  return !call.container_id.parent || call.container?.linux_info?.share_cgroups === false;
}

/** cpus and mem from the launch's resources, `limits` winning (Mesos 1.9+ limits). */
export function limitsOf(call: LaunchContainer): { cpus?: number; memBytes?: number; diskBytes?: number } {
  const scalar = (name: string) => call.resources?.find((r) => r.name === name && r.type === "SCALAR")?.scalar?.value;
  const limit = (name: string) => call.limits?.[name]?.value;
  const cpus = limit("cpus") ?? scalar("cpus");
  const mem = limit("mem") ?? scalar("mem");
  const disk = scalar("disk");
  return {
    ...(disk !== undefined && Number.isFinite(disk) ? { diskBytes: Math.round(disk * 1048576) } : {}),
    ...(cpus !== undefined && Number.isFinite(cpus) ? { cpus } : {}),
    ...(mem !== undefined && Number.isFinite(mem) ? { memBytes: Math.round(mem * 1048576) } : {}),
  };
}

/** A top-level container's hostname: ContainerInfo.hostname, else its ID (as Mesos names it). */
export function hostnameOf(call: LaunchContainer, nested: boolean): string {
  const given = call.container?.hostname;
  if (given === undefined) return call.container_id.value.slice(0, 63);
  if (nested) throw invalid("container.hostname: a nested container shares its parent's UTS namespace and hostname");
  if (given.length > 64 || !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(given)) {
    throw invalid(`container.hostname: '${given}' is not a hostname (letters, digits, '-' and '.', at most 64 characters)`);
  }
  return given;
}

/** The agent's flags the field rules look at. */
export type FieldFlags = Pick<
  Flags,
  "image_providers" | "isolation" | "disallow_sharing_agent_pid_namespace" | "disallow_sharing_agent_ipc_namespace" | "switch_user"
>;

/** The refusal of a field: `where` names it, `why` says why. */
function refusal(where: string, why: string, kind: ErrorKind = "invalid"): UcrError {
  return new UcrError(kind, `${where}: ${why}`);
}

function refuse(where: string, why: string, kind: ErrorKind = "invalid"): never {
  throw refusal(where, why, kind);
}

const needs = (flags: FieldFlags, isolator: string, where: string, without: string): void => {
  if (!flags.isolation.includes(isolator)) {
    refuse(where, `needs the ${isolator} isolator, which this agent does not run (--isolation); without it ${without}`);
  }
};

/** Resources ucr applies: cpus and mem as cgroup limits; disk measured and reported. */
const APPLIED_RESOURCES = ["cpus", "mem", "disk"];

/**
 * Every field of a LAUNCH_CONTAINER that Mesos defines is applied or refused here (the rest of
 * the launch applies what passes). The table of what each field does is launch-fields.ts;
 * test/agent/launch-rules.test.ts checks the two agree and that every field of Mesos' messages
 * is in the table. Throws UcrError: invalid (400) naming the field and why, unimplemented (501)
 * for what a later ucr brings.
 */
function checkLaunchFields(call: LaunchContainer, flags: FieldFlags): void {
  const nested = call.container_id.parent !== undefined;
  checkCommand(call, flags);
  for (const [i, r] of (call.resources ?? []).entries()) checkResource(r, `resources[${i}]`);
  for (const name of Object.keys(call.limits ?? {})) {
    if (name !== "cpus" && name !== "mem") refuse(`limits.${name}`, "Only cpus and mem may be included in a task's resource limits");
  }
  const c = call.container;
  if (!c) return;
  if (c.docker !== undefined) {
    refuse(
      "container.docker",
      "DockerInfo is for Mesos' Docker containerizer, which a MESOS container ignores; give the image as container.mesos.image",
    );
  }
  if (c.mesos?.image) checkImage(c.mesos.image, "container.mesos.image");
  for (const [i, v] of (c.volumes ?? []).entries()) checkVolume(v, `container.volumes[${i}]`, nested);
  const linux = c.linux_info;
  if (linux?.share_pid_namespace !== undefined) {
    const where = "container.linux_info.share_pid_namespace";
    needs(flags, "namespaces/pid", where, "every container has its own PID namespace");
    if (linux.share_pid_namespace && !nested && flags.disallow_sharing_agent_pid_namespace) {
      refuse(where, "Sharing agent pid namespace with top-level container is not allowed");
    }
  }
  if (linux?.ipc_mode !== undefined || linux?.shm_size !== undefined) {
    const where = `container.linux_info.${linux.ipc_mode !== undefined ? "ipc_mode" : "shm_size"}`;
    needs(flags, "namespaces/ipc", where, "a top-level container has its own IPC namespace and a nested one its parent's");
    if (linux.ipc_mode === "UNKNOWN") refuse("container.linux_info.ipc_mode", "Unknown IPC mode");
    if (linux.shm_size !== undefined && linux.ipc_mode !== "PRIVATE") {
      refuse("container.linux_info.shm_size", "Only support specifying the size of /dev/shm when the IPC mode is `PRIVATE`");
    }
    if (linux.shm_size === 0) refuse("container.linux_info.shm_size", "a /dev/shm of 0 MB holds nothing; give a size in MB");
    if (linux.ipc_mode === "SHARE_PARENT" && !nested && flags.disallow_sharing_agent_ipc_namespace) {
      refuse("container.linux_info.ipc_mode", "Sharing agent IPC namespace with top-level container is not allowed");
    }
    if (linux.ipc_mode === "PRIVATE" && nested && !c.mesos?.image) {
      refuse(
        "container.linux_info.ipc_mode",
        "PRIVATE needs a /dev/shm of the container's own, and a nested container without its own image sees its parent's " +
          "filesystem, where ucr cannot mount one; give it an image (container.mesos.image)",
      );
    }
  }
  if (c.rlimit_info) {
    needs(flags, "posix/rlimits", "container.rlimit_info", "a container gets the agent's rlimits");
    rlimitsOf(c.rlimit_info);
  }
}

function checkCommand(call: LaunchContainer, flags: FieldFlags): void {
  for (const [i, e] of (call.command?.environment?.variables ?? []).entries()) {
    const where = `command.environment.variables[${i}]`;
    if (e.type === "UNKNOWN") refuse(where, "Environment variable of type 'UNKNOWN' is not allowed");
    if (e.type === "VALUE" && e.secret !== undefined)
      refuse(where, `Environment variable '${e.name}' of type 'VALUE' must not have a secret set`);
    if (e.type !== "SECRET") continue;
    if (e.value !== undefined) refuse(where, `Environment variable '${e.name}' of type 'SECRET' must not have a value set`);
    needs(flags, "environment_secret", where, "a secret is never put in a container's environment");
    secretValue(e.secret!, `${where}.secret`);
  }
}

/**
 * The bytes of a secret given by value; a reference needs a secret resolver, which ucr does not
 * have. Mesos' validateSecret rules and messages.
 */
function secretValue(secret: Secret, where: string): Buffer {
  const type = secret.type ?? "UNKNOWN";
  if (type === "REFERENCE" || (type === "UNKNOWN" && secret.reference && !secret.value)) {
    if (!secret.reference) refuse(where, "Secret of type REFERENCE must have the 'reference' field set");
    if (secret.value) refuse(where, `Secret '${secret.reference!.name}' of type REFERENCE must not have the 'value' field set`);
    refuse(
      where,
      `secret '${secret.reference!.name}' is a reference, which needs a secret resolver (Mesos' --secret_resolver module); ` +
        "ucr has none, give the secret by value",
    );
  }
  if (!secret.value) refuse(where, "Secret of type VALUE must have the 'value' field set");
  if (secret.reference) refuse(where, "Secret of type VALUE must not have the 'reference' field set");
  const data = secret.value!.data;
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(data)) refuse(`${where}.value.data`, "is not base64 (protobuf's JSON form of bytes)");
  return Buffer.from(data, "base64");
}

/**
 * A launch's environment with its SECRET variables (VALUE secrets, checked by
 * checkLaunchFields) as plain values: what environment_secret does in Mesos.
 */
export function resolveSecretEnvironment(command: CommandInfo | undefined): CommandInfo | undefined {
  const vars = command?.environment?.variables;
  if (!command || !vars?.some((e) => e.type === "SECRET")) return command;
  const resolved = vars.map((e, i) => {
    if (e.type !== "SECRET") return e;
    const bytes = secretValue(e.secret!, `command.environment.variables[${i}].secret`);
    if (bytes.includes(0)) {
      refuse(
        `command.environment.variables[${i}]`,
        `Environment variable '${e.name}' specifies a secret containing null bytes, which is not allowed in the environment`,
      );
    }
    return { name: e.name, type: "VALUE" as const, value: bytes.toString("utf8") };
  });
  return { ...command, environment: { ...command.environment, variables: resolved } };
}

function checkResource(r: Resource, where: string): void {
  if (r.name === "gpus") refuse(where, "'gpus': GPUs are not supported by ucr (Mesos' gpu/nvidia isolator)");
  if (r.name === "ports") {
    refuse(
      where,
      "'ports': a standalone container's port resources do nothing in Mesos (network/ports does not run for it); " +
        "ucr gives host ports through container.network_infos port_mappings",
    );
  }
  if (!APPLIED_RESOURCES.includes(r.name))
    refuse(where, `'${r.name}' is not a resource ucr knows (it applies cpus and mem, and measures disk)`);
  if (r.type !== "SCALAR") refuse(`${where}.type`, `'${r.name}' is a scalar resource, not ${r.type}`);
  if (r.ranges !== undefined || r.set !== undefined) refuse(where, `'${r.name}' is a scalar resource; 'ranges' and 'set' do not apply`);
  if ((r.role !== undefined && r.role !== "*") || (r.reservations ?? []).length > 0 || r.reservation) {
    refuse(where, `resource '${r.name}' is reserved; standalone containers cannot use reserved resources`);
  }
  if (r.allocation_info)
    refuse(`${where}.allocation_info`, "only Mesos' master allocates resources to roles; a standalone container's have no allocation");
  if (r.provider_id) refuse(`${where}.provider_id`, "resources of resource providers (CSI storage) are not supported");
  if (r.revocable) refuse(where, `resource '${r.name}' is revocable, which standalone containers cannot use`);
  if (r.shared) refuse(where, `resource '${r.name}' is shared, which only persistent volumes can be`);
  if (r.disk?.persistence) refuse(where, `resource '${r.name}' is a persistent volume, which standalone containers cannot use`);
  if (r.disk?.volume || r.disk?.source) {
    refuse(`${where}.disk`, "disk resources with a volume or a source (PATH or MOUNT disks) are not supported; use container.volumes");
  }
}

function checkImage(image: Image, where: string): void {
  const docker = image.docker;
  if (docker?.credential) {
    refuse(`${where}.docker.credential`, "deprecated since Mesos 1.3 and never used by Mesos; give registry credentials in docker.config");
  }
  if (docker?.config) dockerConfigOf(docker.config, `${where}.docker.config`);
  if (image.type === "APPC" && image.cached === false) {
    refuse(`${where}.cached`, "false is not implemented for Appc images: ucr fetches an Appc image once per agent run");
  }
}

/** Image.docker.config: a secret holding a Docker config.json (or legacy .dockercfg), checked and parsed. */
export function dockerConfigOf(secret: Secret, where: string): DockerConfig {
  const text = secretValue(secret, where).toString("utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return refuse(where, `the secret is not a Docker config file in JSON (${(err as Error).message})`);
  }
  const parsed = v.safeParse(DockerConfigSchema, json);
  if (!parsed.success) refuse(where, `the secret is not a Docker config file: ${parsed.issues[0]!.message}`);
  return parsed.output as DockerConfig;
}

function checkVolume(vol: Volume, where: string, nested: boolean): void {
  const given = [vol.host_path !== undefined, vol.image !== undefined, vol.source !== undefined].filter(Boolean).length;
  if (given !== 1) refuse(where, "Only one of them should be set: 'host_path', 'image' and 'source'");
  if (vol.image) checkImage(vol.image, `${where}.image`);
  const source = vol.source;
  if (!source) return;
  switch (source.type ?? "UNKNOWN") {
    case "HOST_PATH":
      if (!source.host_path) refuse(where, "'source.host_path' is not set for HOST_PATH volume");
      if (source.host_path!.mount_propagation?.mode === "UNKNOWN") {
        refuse(`${where}.source.host_path.mount_propagation.mode`, "must be HOST_TO_CONTAINER or BIDIRECTIONAL");
      }
      return;
    case "SANDBOX_PATH":
      if (!source.sandbox_path) refuse(where, "'source.sandbox_path' is not set for SANDBOX_PATH volume");
      if ((source.sandbox_path!.type ?? "UNKNOWN") === "UNKNOWN")
        refuse(`${where}.source.sandbox_path.type`, "Unknown SANDBOX_PATH volume type (SELF or PARENT)");
      if (source.sandbox_path!.type === "PARENT" && !nested) {
        refuse(`${where}.source.sandbox_path`, "a PARENT sandbox path needs a nested container (a top-level one has no parent)");
      }
      return;
    case "DOCKER_VOLUME":
      throw refusal(
        `${where}.source`,
        "DOCKER_VOLUME volumes need Docker volume drivers (Mesos' docker/volume isolator), which ucr does not support",
      );
    case "SECRET":
      throw refusal(
        `${where}.source`,
        "SECRET volumes need Mesos' volume/secret isolator, which ucr does not have (nor does Mesos run it for standalone containers)",
      );
    case "CSI_VOLUME":
      throw refusal(
        `${where}.source`,
        "CSI_VOLUME volumes need Mesos' volume/csi isolator, which ucr does not have (nor does Mesos run it for standalone containers)",
      );
    default:
      throw refusal(`${where}.source`, "'source.type' is unknown");
  }
}

/** rlimit types as the kernel numbers them (asm-generic/resource.h; x86_64 and aarch64 alike). */
const RLIMIT_RESOURCE: Record<RlimitType, number> = {
  RLMT_CPU: 0,
  RLMT_FSIZE: 1,
  RLMT_DATA: 2,
  RLMT_STACK: 3,
  RLMT_CORE: 4,
  RLMT_RSS: 5,
  RLMT_NPROC: 6,
  RLMT_NOFILE: 7,
  RLMT_MEMLOCK: 8,
  RLMT_AS: 9,
  RLMT_LOCKS: 10,
  RLMT_SIGPENDING: 11,
  RLMT_MSGQUEUE: 12,
  RLMT_NICE: 13,
  RLMT_RTPRIO: 14,
  RLMT_RTTIME: 15,
};

export const RLIM_INFINITY = 2n ** 64n - 1n;

export interface Rlimit {
  type: RlimitType;
  resource: number;
  soft: bigint;
  hard: bigint;
}

/**
 * posix/rlimits as Mesos reads RLimitInfo (src/posix/rlimits.cpp): both values unset means
 * unlimited, one alone is an error, soft above hard is refused here rather than failing in
 * setrlimit; a type given twice, the last wins (as setrlimit calls in order would).
 */
export function rlimitsOf(info: RLimitInfo): Rlimit[] {
  const out = new Map<RlimitType, Rlimit>();
  for (const [i, r] of info.rlimits.entries()) {
    const where = `container.rlimit_info.rlimits[${i}]`;
    if (r.type === undefined || r.type === "UNKNOWN") refuse(where, "Unknown rlimit type");
    const type = r.type as RlimitType;
    if ((r.soft === undefined) !== (r.hard === undefined))
      refuse(where, `Invalid rlimit values: ${type} needs both soft and hard, or neither (unlimited)`);
    const soft = r.soft ?? RLIM_INFINITY;
    const hard = r.hard ?? RLIM_INFINITY;
    if (soft > hard) refuse(where, `${type}: the soft limit ${soft} is above the hard limit ${hard}`);
    out.set(type, { type, resource: RLIMIT_RESOURCE[type], soft, hard });
  }
  return [...out.values()];
}

/** Where a container's IPC namespace and /dev/shm come from (namespaces/ipc; see ipcPlan). */
export interface IpcPlan {
  namespace: "own" | "parent" | "agent";
  /** Its /dev/shm: a tmpfs of ucr's of this size, a bind of this host directory, or (absent) what its filesystem has. */
  shm?: { sizeBytes: number } | { bind: string };
  /** PRIVATE: a tmpfs of this size the agent mounts at `privateShmPath` first (the bind's source). */
  privateShm?: { sizeBytes: number };
  /** What a nested container asking for SHARE_PARENT binds at its /dev/shm; absent: this one's is in its own mount namespace only. */
  shareable?: string;
}

/** The /dev/shm of a container ucr gives one, when neither the request nor --default_container_shm_size says (runc's). */
const DEFAULT_SHM_BYTES = 64 * 1048576;

/**
 * Mesos' namespaces/ipc (isolators/namespaces/ipc.cpp, paths.cpp getParentShmPath), over ucr's
 * /dev/shm default size. `parent`: a nested container's parent's shareable /dev/shm and key;
 * `privateShmPath`: where a PRIVATE /dev/shm is mounted (<runtime_dir>/containers/<id>/shm).
 */
export function ipcPlan(
  call: LaunchContainer,
  opts: { hasRootfs: boolean; parent?: { key: string; shareable?: string }; privateShmPath: string; defaultShmBytes?: number },
): IpcPlan {
  const linux = call.container?.linux_info;
  const mode = linux?.ipc_mode;
  const size = opts.defaultShmBytes ?? DEFAULT_SHM_BYTES;
  const nested = opts.parent !== undefined;
  if (mode === "PRIVATE") {
    const sizeBytes = linux?.shm_size !== undefined ? linux.shm_size * 1048576 : size;
    return { namespace: "own", privateShm: { sizeBytes }, shm: { bind: opts.privateShmPath }, shareable: opts.privateShmPath };
  }
  if (mode === "SHARE_PARENT") {
    if (!nested) return { namespace: "agent", ...(opts.hasRootfs ? { shm: { bind: "/dev/shm" } } : {}), shareable: "/dev/shm" };
    const from = opts.parent!.shareable;
    // Without an image it sees its parent's filesystem, /dev/shm included: nothing to bind.
    if (!opts.hasRootfs) return { namespace: "parent", ...(from ? { shareable: from } : {}) };
    if (from === undefined) {
      throw invalid(
        `container.linux_info.ipc_mode: The shared memory of container ${opts.parent!.key} cannot be shared with any other ` +
          "containers because it is only in the container's own mount namespace",
      );
    }
    return { namespace: "parent", shm: { bind: from }, shareable: from };
  }
  // Unset: Mesos' older behaviour (a top-level container has its own namespace, a nested one its
  // parent's; with an image, a /dev/shm of its own, else the one its filesystem has).
  if (opts.hasRootfs) return { namespace: nested ? "parent" : "own", shm: { sizeBytes: size } };
  if (!nested) return { namespace: "own", shareable: "/dev/shm" };
  const from = opts.parent!.shareable;
  return { namespace: "parent", ...(from ? { shareable: from } : {}) };
}

/**
 * The PID namespace of a launch (namespaces/pid, Mesos' defaults): a top-level container its
 * own, or the agent's if it asks to share; a nested one its own (made beside its parent's, as
 * Mesos makes it; the agent ends it when its parent ends), or its parent's if it asks. A
 * nested container without an image sees its parent's filesystem, /proc included, so it
 * shares its parent's namespace: asking for one of its own is refused. undefined: a new one
 * (the launcher's default for a top-level container).
 */
export function pidNamespaceOf(call: LaunchContainer, hasRootfs: boolean): "agent" | "parent" | "own" | undefined {
  const share = call.container?.linux_info?.share_pid_namespace;
  if (!call.container_id.parent) return share === true ? "agent" : undefined;
  if (share === true) return "parent";
  if (hasRootfs) return "own";
  if (share === false) {
    refuse(
      "container.linux_info.share_pid_namespace",
      "false needs a PID namespace of the container's own with its own /proc, and a nested container without its own image " +
        "sees its parent's filesystem and /proc; give it an image (container.mesos.image)",
    );
  }
  return "parent";
}

/**
 * A session (LAUNCH_NESTED_CONTAINER_SESSION) is Mesos' DEBUG class: it enters its parent as it
 * is, so nothing of its own may be mounted or attached (Mesos' filesystem/linux isolator fails
 * these launches with the same words).
 */
export function checkSession(call: LaunchContainer): void {
  if (call.container?.mesos?.image) {
    throw invalid("A 'rootfs' cannot be set for DEBUG containers: a session runs in its parent's filesystem");
  }
  if ((call.container?.volumes ?? []).length > 0) throw invalid("Volumes not supported for DEBUG containers");
  if ((call.container?.network_infos ?? []).length > 0) {
    throw invalid("container.network_infos: a session joins its parent's network namespace and cannot have networks of its own");
  }
}

/** The window size a launch's tty_info asks for (none: the kernel's 0x0, as Mesos leaves it). */
export function ttyOf(call: LaunchContainer): { window?: { rows: number; columns: number } } | undefined {
  const tty = call.container?.tty_info;
  if (!tty) return undefined;
  return tty.window_size ? { window: { rows: tty.window_size.rows, columns: tty.window_size.columns } } : {};
}
