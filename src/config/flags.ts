// The agent's flags, with Mesos' names and defaults: where they come from (command line,
// UCR_*/MESOS_* environment, file:// values), how each is validated (valibot), and how
// GET_FLAGS prints them. Validation failures name the flag and say why. (Over 400 lines: the
// one table of every flag, each entry with its schema, help, default and rendering.)
import { accessSync, constants, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { dirname, isAbsolute, resolve } from "node:path";
import * as v from "valibot";
import { CapabilityInfoSchema, DeviceWhitelistSchema, DurationInfoSchema, ImageSchema } from "../mesos/messages.ts";
import { LEVELS } from "../log.ts";
import { isolationProblem } from "./isolators.ts";
import { formatRanges, parseResourcesFlag } from "./resources.ts";
import { capabilitySet, formatCapabilities } from "../mesos/capabilities.ts";
import { formatBytes, formatDuration, parseBytes, parseDuration } from "./units.ts";
import { errorOfKind } from "../errors.ts";

// --- value schemas (string in, typed value out) -----------------------------------------

const text = v.string();

/** A transform that reports a thrown Error's message as the issue. */
function convert<T>(fn: (s: string) => T) {
  return v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
    try {
      return fn(dataset.value);
    } catch (err) {
      addIssue({ message: (err as Error).message });
      return NEVER;
    }
  });
}

const Bool = v.pipe(
  text,
  convert((s) => {
    if (s === "true" || s === "1") return true;
    if (s === "false" || s === "0") return false;
    throw new Error(`'${s}' is not a boolean (use true or false)`);
  }),
);

const HostPath = v.pipe(
  text,
  convert((s) => {
    if (s.trim() === "") throw new Error("must not be empty");
    return resolve(s);
  }),
);

const Port = v.pipe(
  text,
  convert((s) => {
    if (!/^\d+$/.test(s) || Number(s) > 65535) throw new Error(`'${s}' is not a port number (0 to 65535; 0 picks a free port)`);
    return Number(s);
  }),
);

const Ip = v.pipe(
  text,
  convert((s) => {
    if (isIP(s) === 0) throw new Error(`'${s}' is not an IPv4 or IPv6 address`);
    return s;
  }),
);

/** A `:`-separated search path of absolute directories (CNI_PATH's form). */
const DirList = v.pipe(
  text,
  convert((s) => {
    const dirs = s.split(":").filter((d) => d !== "");
    if (dirs.length === 0) throw new Error("must name at least one directory");
    for (const d of dirs) if (!isAbsolute(d)) throw new Error(`'${d}' is not an absolute directory`);
    return dirs.map((d) => resolve(d));
  }),
);

const Resources = v.pipe(text, convert(parseResourcesFlag));

const Duration = v.pipe(
  text,
  convert((s) => {
    const ns = parseDuration(s);
    if (ns <= 0) throw new Error(`'${s}' must be longer than zero`);
    return ns;
  }),
);

/** `--docker_registry`: a registry URL (scheme optional) or an absolute directory of archives. */
export type Registry = { kind: "directory"; path: string } | { kind: "url"; url: URL };

const DockerRegistry = v.pipe(
  text,
  convert((s): Registry => {
    if (s.startsWith("/")) return { kind: "directory", path: resolve(s) };
    if (s.startsWith("file://")) return { kind: "directory", path: resolve(decodeURIComponent(s.slice("file://".length))) };
    if (s.startsWith("hdfs://")) throw new Error("hdfs:// archive stores are not supported by ucr; use a local directory");
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `https://${s}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new Error(`'${s}' is neither an absolute directory nor a registry URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(`'${s}' has scheme ${url.protocol.slice(0, -1)}; a registry URL is http:// or https://`);
    }
    if (url.search || url.hash || url.username || url.password) {
      throw new Error(`'${s}' must not carry credentials, a query or a fragment (use --docker_config for credentials)`);
    }
    return { kind: "url", url };
  }),
);

const IMAGE_PROVIDERS = ["docker", "appc"] as const;
const ImageProviders = v.pipe(
  text,
  convert((s) => {
    const items = splitList(s).map((p) => p.toLowerCase());
    for (const p of items) {
      if (!(IMAGE_PROVIDERS as readonly string[]).includes(p)) {
        throw new Error(`unknown image provider '${p}' (known: ${IMAGE_PROVIDERS.join(", ")})`);
      }
    }
    return [...new Set(items)] as Array<(typeof IMAGE_PROVIDERS)[number]>;
  }),
);

const Isolation = v.pipe(
  text,
  convert((s) => {
    const items = splitList(s);
    if (items.length === 0) throw new Error("must name at least one isolator");
    const problem = isolationProblem(items);
    if (problem) throw new Error(problem);
    return [...new Set(items)];
  }),
);

/** --default_container_pids_limit: a positive number of processes, or "max" (no limit). */
const PidsLimit = v.pipe(
  text,
  convert((s): number | "max" => {
    if (s === "max") return "max";
    if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 4194304) {
      throw new Error(`'${s}' is not a number of processes (1 to 4194304), or max for no limit`);
    }
    return Number(s);
  }),
);

const HostList = v.pipe(
  text,
  convert((s) => {
    const hosts = splitList(s);
    for (const h of hosts) {
      if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/.test(h)) throw new Error(`'${h}' is not a host or host:port`);
    }
    return hosts;
  }),
);

const Size = v.pipe(
  text,
  convert((s) => {
    const n = parseBytes(s);
    if (n <= 0) throw new Error(`'${s}' must be larger than zero`);
    return n;
  }),
);

const BACKENDS = ["aufs", "bind", "copy", "overlay"] as const;
export type Backend = (typeof BACKENDS)[number];
const ProvisionerBackend = v.pipe(
  text,
  convert((s) => {
    if (!(BACKENDS as readonly string[]).includes(s)) throw new Error(`'${s}' is not a backend (use one of ${BACKENDS.join(", ")})`);
    return s as Backend;
  }),
);

const LoggingLevel = v.pipe(
  text,
  convert((s) => {
    const up = s.toUpperCase();
    if (!(LEVELS as readonly string[]).includes(up)) throw new Error(`'${s}' is not a logging level (use ${LEVELS.join(", ")})`);
    return up as (typeof LEVELS)[number];
  }),
);

const AbsoluteContainerPath = v.pipe(
  text,
  convert((s) => {
    if (!isAbsolute(s)) throw new Error(`'${s}' must be an absolute path inside the container`);
    if (s.split("/").includes("..")) throw new Error(`'${s}' must not contain '..'`);
    return s.replace(/\/+$/, "") || "/";
  }),
);

const AppcPrefix = v.pipe(
  text,
  convert((s) => {
    if (!/^(https?:\/\/|\/)/.test(s)) {
      throw new Error(`'${s}' must start with http://, https:// or / (hdfs:// and file:// are not supported)`);
    }
    return s;
  }),
);

/** Docker's config.json (`{"auths": {...}}`) or the legacy ~/.dockercfg (`{"host": {...}}`). */
const DockerAuthEntry = v.looseObject({
  auth: v.optional(
    v.pipe(
      v.string(),
      v.check((a) => {
        const decoded = Buffer.from(a, "base64").toString("utf8");
        return a === "" || decoded.includes(":");
      }, "'auth' must be base64 of user:password"),
    ),
  ),
  username: v.optional(v.string()),
  password: v.optional(v.string()),
  identitytoken: v.optional(v.string()),
  registrytoken: v.optional(v.string()),
  email: v.optional(v.string()),
});
const DockerConfigJson = v.looseObject({ auths: v.record(v.string(), DockerAuthEntry) });
const LegacyDockerCfg = v.record(v.string(), DockerAuthEntry);
export const DockerConfigSchema = v.pipe(
  v.custom<Record<string, unknown>>(
    (x) => typeof x === "object" && x !== null && !Array.isArray(x),
    'must be a docker config.json object ({"auths": {...}}) or a legacy .dockercfg object',
  ),
  // config.json has "auths"; the legacy .dockercfg maps registries to entries directly.
  v.lazy((input) => ("auths" in (input as object) ? DockerConfigJson : LegacyDockerCfg)),
);
export type DockerConfig = v.InferOutput<typeof DockerConfigSchema>;

const HttpCredentialsSchema = v.looseObject({
  credentials: v.pipe(
    v.array(v.looseObject({ principal: v.pipe(v.string(), v.minLength(1, "principal must not be empty")), secret: v.string() })),
    v.minLength(1, "must list at least one credential"),
  ),
});
export type HttpCredentials = v.InferOutput<typeof HttpCredentialsSchema>;

/** ImageGcConfig (Mesos flags.proto); defaults follow the DC/OS documentation. */
const ImageGcConfigSchema = v.looseObject({
  image_disk_headroom: v.optional(
    v.pipe(v.number("must be a number"), v.minValue(0, "must be from 0.0 to 1.0"), v.maxValue(1, "must be from 0.0 to 1.0")),
    0.1,
  ),
  image_disk_watch_interval: v.optional(
    v.pipe(
      DurationInfoSchema,
      v.check((d) => d.nanoseconds > 0, "nanoseconds must be greater than zero"),
    ),
    { nanoseconds: 300_000_000_000 },
  ),
  excluded_images: v.optional(v.array(ImageSchema), []),
});

const CgroupsRoot = v.pipe(
  text,
  convert((s) => {
    if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(s) || s.split("/").includes(".."))
      throw new Error(`'${s}' is not a relative cgroup path`);
    return s;
  }),
);

/** --seccomp_profile_name: a file inside --seccomp_config_dir. */
const RelativePath = v.pipe(
  text,
  convert((s) => {
    if (s.trim() === "") throw new Error("must not be empty");
    if (isAbsolute(s) || s.split("/").includes(".."))
      throw new Error(`'${s}' must be a path relative to --seccomp_config_dir, without '..'`);
    return s;
  }),
);

function jsonFlag<const S extends v.GenericSchema>(schema: S) {
  return v.pipe(
    text,
    v.parseJson(undefined, (issue) => `is not valid JSON: ${issue.received}`),
    schema,
  );
}

function splitList(s: string): string[] {
  return s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
}

// --- the flag table ---------------------------------------------------------------------

interface FlagSpec<S extends v.GenericSchema> {
  /** From the flag's text (JSON flags: the JSON text) to its typed value. */
  schema: S;
  help: string;
  aliases?: readonly string[];
  boolean?: boolean;
  /** Raw default text; a function may look at other raw values (derived defaults). */
  default?: string | ((raw: ReadonlyMap<string, string>) => string);
  /** Value may be inline JSON, `file:///path`, or an absolute path to a JSON file. */
  json?: boolean;
  /** Mask credentials before GET_FLAGS shows the JSON. */
  redact?: (json: unknown) => unknown;
  /** Print a typed value for GET_FLAGS (default: the raw text as given); never called for an unset one. */
  show?: (value: NonNullable<v.InferOutput<S>>) => string;
}

/** One flag of the table (a function, so `show` is checked against the schema's output). */
function flag<S extends v.GenericSchema>(spec: FlagSpec<S>): FlagSpec<S> {
  return spec;
}

const DEFAULT_WORK_DIR = "/var/lib/ucr";

function defaultRuntimeDir(): string {
  // Mesos: /var/run/mesos when writable, else /tmp/mesos/runtime.
  try {
    accessSync(existingAncestor("/var/run/mesos"), constants.W_OK);
    return "/var/run/mesos";
  } catch {
    return "/tmp/mesos/runtime";
  }
}

function existingAncestor(path: string): string {
  let p = path;
  for (;;) {
    try {
      accessSync(p, constants.F_OK);
      return p;
    } catch {
      const up = dirname(p);
      if (up === p) return p;
      p = up;
    }
  }
}

const showBool = (b: boolean) => String(b);
const showNumber = (n: number) => String(n);
const showList = (xs: readonly string[]) => xs.join(",");

/**
 * Every flag, each in one place: how its text is validated and typed (valibot), its help, its
 * aliases, its default, whether it is JSON (inline, file:// or a path), and how GET_FLAGS shows it.
 */
const FLAGS = {
  allowed_devices: flag({
    schema: v.optional(jsonFlag(DeviceWhitelistSchema)),
    help:
      'Devices every container may use besides the defaults, {"allowed_devices":[{"device":{"path":"/dev/fuse"},' +
      '"access":{"read":true,"write":true,"mknod":false}}]} (inline JSON, file:///path or /path); with linux/devices ' +
      "they are also made in the /dev of containers with an image.",
    json: true,
  }),
  appc_simple_discovery_uri_prefix: flag({
    schema: AppcPrefix,
    help: "URI prefix for simple discovery of Appc images (http://, https:// or an absolute directory).",
    default: "http://",
  }),
  appc_store_dir: flag({ schema: HostPath, help: "Directory the Appc provisioner stores images in.", default: "/tmp/mesos/store/appc" }),
  authenticate_http_readwrite: flag({
    schema: Bool,
    help: "Require HTTP Basic authentication (--http_credentials) on every /api/v1 call.",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  bounding_capabilities: flag({
    schema: v.optional(jsonFlag(CapabilityInfoSchema)),
    help:
      'linux/capabilities: the most a container may hold, {"capabilities":["NET_BIND_SERVICE",...]} (inline JSON, file:///path or /path); ' +
      "absent: what --effective_capabilities gives, else ucr's default set.",
    json: true,
  }),
  cgroups_enable_cfs: flag({
    schema: Bool,
    help: "Also cap CPU time at `cpus` with a CFS quota (cpu shares/weight apply either way).",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  cgroups_root: flag({
    schema: CgroupsRoot,
    help: "Cgroup under which each container gets its own (per hierarchy on cgroup v1).",
    default: "ucr",
  }),
  default_container_pids_limit: flag({
    schema: PidsLimit,
    help:
      "The most processes and threads a container (its own cgroup) may have at once, so a fork bomb cannot exhaust the host; " +
      "max: no limit (Mesos' cgroups/pids).",
    default: "2048",
    show: (n: number | "max") => String(n),
  }),
  default_container_shm_size: flag({
    schema: v.optional(Size),
    help: "Size of the /dev/shm ucr gives a container (ipc_mode PRIVATE without shm_size, and containers with an image); absent: 64MB.",
    show: formatBytes,
  }),
  disallow_sharing_agent_ipc_namespace: flag({
    schema: Bool,
    help: "Refuse top-level containers that ask for the agent's IPC namespace and /dev/shm (linux_info.ipc_mode SHARE_PARENT).",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  disallow_sharing_agent_pid_namespace: flag({
    schema: Bool,
    help: "Refuse top-level containers that ask for the agent's PID namespace (linux_info.share_pid_namespace).",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  docker_allow_foreign_platform: flag({
    schema: Bool,
    help: "Pull Docker images built for another OS or CPU architecture than this machine's (refused by default).",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  docker_config: flag({
    schema: v.optional(jsonFlag(DockerConfigSchema)),
    help: "Docker config.json or legacy .dockercfg with registry credentials: inline JSON, file:///path or /path.",
    json: true,
    redact: redactDockerConfig,
  }),
  docker_ignore_runtime: flag({
    schema: Bool,
    help: "Ignore the image's Entrypoint, Cmd, Env and WorkingDir.",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  docker_insecure_registries: flag({
    schema: HostList,
    help: "Comma-separated registries (host[:port]) named in images that may be reached over plain http (loopback always may).",
    default: "",
    show: showList,
  }),
  docker_max_layer_size: flag({
    schema: Size,
    help: "Refuse a layer whose unpacked tar grows past this size (e.g. 64GB, 512MB).",
    default: "64GB",
    show: formatBytes,
  }),
  docker_registry: flag({
    schema: DockerRegistry,
    help: "Default registry URL for Docker images, or an absolute directory of `docker save` archives (<name>.tar).",
    default: "https://registry-1.docker.io",
  }),
  docker_store_dir: flag({
    schema: HostPath,
    help: "Directory the Docker provisioner stores layers and images in (default <work_dir>/store/docker).",
    default: (raw) => `${resolve(raw.get("work_dir") ?? DEFAULT_WORK_DIR)}/store/docker`,
    show: (p: string) => p,
  }),
  effective_capabilities: flag({
    schema: v.optional(jsonFlag(CapabilityInfoSchema)),
    help:
      "linux/capabilities: what a container that asks for none gets, same JSON as --bounding_capabilities; " +
      "a container that asks for none and runs as non-root keeps these too (ambient). Absent: ucr's default set.",
    aliases: ["allowed_capabilities"],
    json: true,
  }),
  fetcher_stall_timeout: flag({
    schema: Duration,
    help: "Abort a download (registry token, manifest, blob, ACI, CommandInfo.uris) that stays slower than 1 byte/s for this long, as Mesos' fetcher does.",
    default: "1mins",
    show: formatDuration,
  }),
  http_credentials: flag({
    schema: v.optional(jsonFlag(HttpCredentialsSchema)),
    help: 'Credentials for HTTP authentication, {"credentials":[{"principal":..,"secret":..}]}: inline JSON, file:///path or /path.',
    json: true,
    redact: (json) => redactKeys(json, new Set(["secret"])),
  }),
  http_heartbeat_interval: flag({
    schema: Duration,
    help: "Interval of heartbeats on streaming responses.",
    default: "30secs",
    show: formatDuration,
  }),
  image_fetch_timeout: flag({
    schema: Duration,
    help:
      "Abort one download (an image's token, manifest, config, layer blob or ACI, retries included; a CommandInfo.uris fetch) " +
      "that takes longer than this.",
    default: "1hrs",
    show: formatDuration,
  }),
  image_gc_config: flag({
    schema: v.optional(jsonFlag(ImageGcConfigSchema)),
    help: "Automatic image GC: {image_disk_headroom, image_disk_watch_interval, excluded_images}: inline JSON, file:///path or /path.",
    json: true,
  }),
  image_providers: flag({
    schema: v.optional(ImageProviders),
    help: "Comma-separated image types containers may use: docker, appc.",
    show: showList,
  }),
  image_provisioner_backend: flag({
    schema: v.optional(ProvisionerBackend),
    help: "Rootfs backend: overlay, aufs, copy or bind (default: chosen as Mesos does: overlay, then aufs, then copy).",
    aliases: ["provisioner_image_backend"],
  }),
  ip: flag({
    schema: Ip,
    help: "Address to listen on. Launching containers runs code as root: keep loopback unless authentication is on.",
    default: "127.0.0.1",
  }),
  isolation: flag({
    schema: Isolation,
    help: "Comma-separated isolators (Mesos' names); one ucr does not implement stops the agent, naming it.",
    default: "posix/cpu,posix/mem",
    show: showList,
  }),
  logging_level: flag({
    schema: LoggingLevel,
    help: "Lowest severity to log: INFO, WARNING or ERROR.",
    default: "INFO",
    show: (l: string) => l,
  }),
  network_cni_config_dir: flag({
    schema: v.optional(HostPath),
    help: "Directory of CNI network configs (.conflist, .conf, .json); a container joins one by naming it in network_infos.",
  }),
  network_cni_plugins_dir: flag({
    schema: DirList,
    help: "Where CNI plugins are found (`:`-separated search path).",
    default: "/usr/lib/cni",
    show: (dirs: string[]) => dirs.join(":"),
  }),
  network_cni_root_dir_persist: flag({
    schema: Bool,
    help: "Keep CNI state under <work_dir> instead of <runtime_dir>, so DEL can release IP leases after a reboot.",
    boolean: true,
    default: "false",
    show: showBool,
  }),
  port: flag({ schema: Port, help: "Port to listen on (0 picks a free port and logs it).", default: "5051", show: showNumber }),
  resources: flag({
    schema: v.optional(Resources),
    help: "The agent's host ports for port mappings, as Mesos writes them: ports:[31000-32000] or JSON (default ports:[31000-32000]).",
    show: formatRanges,
  }),
  runtime_dir: flag({
    schema: HostPath,
    help: "Directory for runtime state that does not survive a reboot.",
    default: () => defaultRuntimeDir(),
    show: (p: string) => p,
  }),
  sandbox_directory: flag({
    schema: AbsoluteContainerPath,
    help: "Where a container with an image sees its sandbox.",
    default: "/mnt/mesos/sandbox",
    show: (p: string) => p,
  }),
  seccomp_config_dir: flag({
    schema: v.optional(HostPath),
    help: "linux/seccomp: directory of seccomp profiles (Docker's JSON format) that containers may name.",
    show: (p: string) => p,
  }),
  seccomp_profile_name: flag({
    schema: v.optional(RelativePath),
    help: "linux/seccomp: the default profile, a path relative to --seccomp_config_dir (absent: ucr's built-in default).",
  }),
  switch_user: flag({
    schema: Bool,
    help: "Run the container's command as CommandInfo.user when it is given.",
    boolean: true,
    default: "true",
    show: showBool,
  }),
  work_dir: flag({
    schema: HostPath,
    help: "Directory for sandboxes, checkpoints and (by default) the image store.",
    default: DEFAULT_WORK_DIR,
    show: (p: string) => p,
  }),
};

type FlagName = keyof typeof FLAGS;
export type Flags = { [K in FlagName]: v.InferOutput<(typeof FLAGS)[K]["schema"]> };

const FLAG_NAMES = Object.keys(FLAGS).sort() as FlagName[];

/** The table's flags as one valibot object schema (what loadFlags parses the raw texts with). */
const SCHEMA = v.object(
  Object.fromEntries(FLAG_NAMES.map((name) => [name, FLAGS[name].schema])) as { [K in FlagName]: (typeof FLAGS)[K]["schema"] },
);

/** A flag's table entry, with its schema erased (what loading needs to know besides parsing). */
function spec(name: FlagName): FlagSpec<v.GenericSchema> {
  return FLAGS[name] as unknown as FlagSpec<v.GenericSchema>;
}

/** Canonical name for a name or alias as written after `--` (dashes and underscores alike). */
function lookup(name: string): FlagName | undefined {
  const n = name.replace(/-/g, "_");
  for (const f of FLAG_NAMES) {
    if (f === n || spec(f).aliases?.includes(n)) return f;
  }
  return undefined;
}

// --- loading ----------------------------------------------------------------------------

export class FlagError extends errorOfKind("invalid") {}

export interface LoadedFlags {
  values: Flags;
  /** GET_FLAGS view: sorted, strings, secrets masked, unset optional flags absent. */
  shown: Array<{ name: string; value: string }>;
  /** Where each set flag came from, for the start-up log. */
  sources: Map<FlagName, string>;
  /** `--help` was asked for. */
  help: boolean;
}

/**
 * Reads flags from the environment (MESOS_<NAME>, then UCR_<NAME>, which wins) and argv
 * (which wins over both). Throws FlagError for an unknown flag, a repeated flag or a bad
 * value; the message names the flag.
 */
export function loadFlags(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  options: { positionals?: string[] } = {},
): LoadedFlags {
  const raw = new Map<FlagName, string>();
  const sources = new Map<FlagName, string>();

  for (const prefix of ["MESOS_", "UCR_"]) {
    for (const name of FLAG_NAMES) {
      for (const alias of [name, ...(spec(name).aliases ?? [])]) {
        const key = `${prefix}${alias.toUpperCase()}`;
        const value = env[key];
        if (value !== undefined) {
          raw.set(name, value);
          sources.set(name, key);
        }
      }
    }
  }

  const fromArgv = new Set<FlagName>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--") || arg === "--") {
      if (options.positionals && arg !== "--") {
        options.positionals.push(arg);
        continue;
      }
      throw new FlagError(`unexpected argument '${arg}'`);
    }
    const eq = arg.indexOf("=");
    let key = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    let name = lookup(key);
    if (!name && value === undefined && key.startsWith("no-")) {
      const negated = lookup(key.slice(3));
      if (negated && spec(negated).boolean) {
        name = negated;
        key = key.slice(3);
        value = "false";
      }
    }
    if (!name) throw new FlagError(`unknown flag '--${key}'`);
    if (value === undefined) {
      const next = argv[i + 1];
      if (spec(name).boolean) {
        if (next === "true" || next === "false") {
          value = next;
          i++;
        } else {
          value = "true";
        }
      } else {
        if (next === undefined || next.startsWith("--")) throw new FlagError(`flag '--${key}' needs a value`);
        value = next;
        i++;
      }
    }
    if (fromArgv.has(name)) throw new FlagError(`flag '--${name}' is given more than once`);
    fromArgv.add(name);
    raw.set(name, value);
    sources.set(name, "command line");
  }

  // Defaults, in name order; derived ones see the raw values they depend on.
  for (const name of FLAG_NAMES) {
    const d = spec(name).default;
    if (!raw.has(name) && d !== undefined) raw.set(name, typeof d === "string" ? d : d(raw));
  }

  // JSON flags may point at a file; read it now so the schema sees the JSON text.
  const input: Record<string, string> = {};
  const jsonTexts = new Map<FlagName, string>();
  for (const [name, value] of raw) {
    if (spec(name).json) {
      const textValue = readJsonSource(name, value);
      jsonTexts.set(name, textValue);
      input[name] = textValue;
    } else {
      input[name] = value;
    }
  }

  const result = v.safeParse(SCHEMA, input);
  if (!result.success) {
    const lines = result.issues.map((issue) => {
      const [first, ...rest] = issue.path ?? [];
      const name = String(first?.key ?? "?");
      const where = rest.length ? ` at ${rest.map((p) => String(p.key)).join(".")}` : "";
      const why =
        issue.type === "raw_check" || issue.type === "raw_transform" || !issue.message.startsWith("Invalid ")
          ? issue.message
          : `expected ${issue.expected}, got ${issue.received}`;
      return `flag '--${name}'${where}: ${why}`;
    });
    throw new FlagError(lines.join("; "));
  }
  const values = result.output as Flags;
  checkCombinations(values);

  const shown: Array<{ name: string; value: string }> = [];
  for (const name of FLAG_NAMES) {
    const value = values[name];
    if (value === undefined) continue;
    const meta = spec(name);
    let textValue: string;
    if (meta.json) {
      const parsed: unknown = JSON.parse(jsonTexts.get(name)!);
      textValue = JSON.stringify(meta.redact ? meta.redact(parsed) : parsed);
    } else if (meta.show) {
      textValue = meta.show(value);
    } else {
      textValue = raw.get(name)!;
    }
    shown.push({ name, value: textValue });
  }
  return { values, shown, sources, help };
}

function readJsonSource(name: FlagName, value: string): string {
  let path: string | undefined;
  if (value.startsWith("file://")) path = decodeURIComponent(value.slice("file://".length));
  else if (value.startsWith("/")) path = value;
  if (path === undefined) return value;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new FlagError(`flag '--${name}': cannot read ${path}: ${e.code ?? e.message}`);
  }
}

/** Rules that involve more than one flag, as Mesos enforces them at start-up. */
function checkCombinations(f: Flags): void {
  const providers = f.image_providers ?? [];
  if (providers.length > 0 && !f.isolation.includes("filesystem/linux")) {
    throw new FlagError(`flag '--image_providers=${providers.join(",")}' needs the filesystem/linux isolator: add it to '--isolation'`);
  }
  if (providers.includes("docker") && !f.isolation.includes("docker/runtime")) {
    throw new FlagError(`flag '--image_providers' includes docker, which needs the docker/runtime isolator: add it to '--isolation'`);
  }
  if (f.network_cni_config_dir !== undefined) {
    const other = f.isolation.find((i) => i.startsWith("network/") && i !== "network/cni" && i !== "network/ports");
    if (other)
      throw new FlagError(
        `flag '--isolation' names ${other} and '--network_cni_config_dir' asks for network/cni: only one network isolator can be used`,
      );
  }
  for (const flag of ["effective_capabilities", "bounding_capabilities"] as const) {
    if (f[flag] && !f.isolation.includes("linux/capabilities")) {
      throw new FlagError(`flag '--${flag}' needs the linux/capabilities isolator: add it to '--isolation'`);
    }
  }
  if (f.effective_capabilities && f.bounding_capabilities) {
    const effective = capabilitySet(f.effective_capabilities.capabilities);
    const bounding = new Set(capabilitySet(f.bounding_capabilities.capabilities));
    if (!effective.every((c) => bounding.has(c))) {
      // Mesos' words (its spelling too), then which flags.
      throw new FlagError(
        `Allowed capabilities are not a subset of the bounding capabilites: --effective_capabilities ${formatCapabilities(effective)}, ` +
          `--bounding_capabilities ${formatCapabilities([...bounding].sort((a, b) => a - b))}`,
      );
    }
  }
  for (const flag of ["seccomp_config_dir", "seccomp_profile_name"] as const) {
    if (f[flag] !== undefined && !f.isolation.includes("linux/seccomp")) {
      throw new FlagError(`flag '--${flag}' needs the linux/seccomp isolator: add it to '--isolation'`);
    }
  }
  if (f.isolation.includes("linux/seccomp") && f.seccomp_config_dir === undefined) {
    throw new FlagError("Missing required `--seccomp_config_dir` flag (the linux/seccomp isolator needs it)");
  }
  if (f.authenticate_http_readwrite && !f.http_credentials) {
    throw new FlagError(`flag '--authenticate_http_readwrite' is set but '--http_credentials' is not: there is nobody to let in`);
  }
}

function redactKeys(json: unknown, keys: ReadonlySet<string>): unknown {
  if (Array.isArray(json)) return json.map((x) => redactKeys(x, keys));
  if (json && typeof json === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(json)) out[k] = keys.has(k) && typeof x === "string" ? "********" : redactKeys(x, keys);
    return out;
  }
  return json;
}

function redactDockerConfig(json: unknown): unknown {
  return redactKeys(json, new Set(["auth", "password", "identitytoken", "registrytoken"]));
}

/** `ucr help agent`: every flag with its default and help. */
export function flagsHelp(): string {
  const lines: string[] = [];
  for (const name of FLAG_NAMES) {
    const meta = spec(name);
    const d = meta.default;
    const shownDefault = d === undefined ? "" : typeof d === "string" ? ` (default: ${d})` : "";
    const aliases = meta.aliases?.length ? ` (also --${meta.aliases.join(", --")})` : "";
    lines.push(`  --${name}${meta.boolean ? "" : "=VALUE"}${aliases}${shownDefault}`);
    lines.push(`      ${meta.help}`);
  }
  lines.push("");
  lines.push("Every flag can also be set as MESOS_<NAME> or UCR_<NAME> in the environment (UCR_ wins;");
  lines.push("the command line wins over both). Boolean flags take --name, --no-name or --name=true|false.");
  return lines.join("\n");
}
