// valibot schemas for the Mesos protobuf messages that travel as JSON in the v1 Operator
// API (mesos.proto, agent.proto). Field names are the proto names; enums are strings.
import * as v from "valibot";
import { CAPABILITY_NAMES } from "./capabilities.ts";

// --- scalars as protobuf's JSON mapping carries them ------------------------------------

/** int64/uint64 in protobuf JSON may be a number or a decimal string. */
export const Int64 = v.pipe(
  v.union([v.number(), v.pipe(v.string(), v.regex(/^-?\d+$/, "must be an integer"))], "must be an integer"),
  v.transform((x) => Number(x)),
  v.integer("must be an integer"),
);

/** uint64 kept exact (protobuf JSON writes 64-bit integers as decimal strings; rlimits reach 2^64-1). */
const Uint64 = v.pipe(
  v.union(
    [v.pipe(v.number(), v.integer("must be an integer")), v.pipe(v.string(), v.regex(/^\d+$/, "must be an integer"))],
    "must be an integer",
  ),
  v.transform((x) => BigInt(x)),
  v.check((x) => x >= 0n && x < 2n ** 64n, "must be from 0 to 18446744073709551615"),
);

/** double in protobuf JSON: a number, or the strings "Infinity"/"NaN" the mapping allows. */
const Double = v.pipe(
  v.union([v.number(), v.picklist(["Infinity", "-Infinity", "NaN"])], "must be a number"),
  v.transform((x) => (typeof x === "number" ? x : Number(x))),
);

// --- ContainerID ------------------------------------------------------------------------

const MAX_CONTAINER_ID = 242; // Mesos: leaves room for the path components it builds

/** Why a ContainerID value is unacceptable to Mesos (src/slave/validation.cpp), or null. */
function containerIdProblem(value: string): string | null {
  if (value.length === 0) return "must not be empty";
  if (value.length > MAX_CONTAINER_ID) return `is ${value.length} characters long; at most ${MAX_CONTAINER_ID} are allowed`;
  if (value === "." || value === "..") return `'${value}' is not allowed`;
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (ch === "/" || ch === "\\" || ch === "." || ch === " ") return `'${printable(value)}' contains '${ch}', which is not allowed`;
    if (code < 0x20 || code === 0x7f) return `'${printable(value)}' contains a control character (0x${code.toString(16).padStart(2, "0")})`;
  }
  return null;
}

function printable(s: string): string {
  const shown = s.length > 40 ? `${s.slice(0, 40)}…` : s;
  return JSON.stringify(shown).slice(1, -1);
}

export interface ContainerID {
  value: string;
  parent?: ContainerID;
}

export const ContainerIDSchema: v.GenericSchema<unknown, ContainerID> = v.looseObject({
  value: v.pipe(
    v.string("must be a string"),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const problem = containerIdProblem(dataset.value);
      if (problem) addIssue({ message: problem });
    }),
  ),
  parent: v.optional(v.lazy(() => ContainerIDSchema)),
});

// --- Image ------------------------------------------------------------------------------

const LabelsSchema = v.looseObject({
  labels: v.optional(v.array(v.looseObject({ key: v.string(), value: v.optional(v.string()) })), []),
});

const SecretSchema = v.looseObject({
  type: v.optional(v.picklist(["UNKNOWN", "REFERENCE", "VALUE"])),
  reference: v.optional(v.looseObject({ name: v.string(), key: v.optional(v.string()) })),
  value: v.optional(v.looseObject({ data: v.string() })),
});
export type Secret = v.InferOutput<typeof SecretSchema>;

export const ImageSchema = v.pipe(
  v.looseObject({
    type: v.picklist(["APPC", "DOCKER"], "must be APPC or DOCKER"),
    appc: v.optional(
      v.looseObject({
        name: v.pipe(v.string(), v.minLength(1, "must not be empty")),
        id: v.optional(v.string()),
        labels: v.optional(LabelsSchema),
      }),
    ),
    docker: v.optional(
      v.looseObject({
        name: v.pipe(v.string(), v.minLength(1, "must not be empty")),
        credential: v.optional(v.looseObject({ principal: v.optional(v.string()), secret: v.optional(v.string()) })),
        config: v.optional(SecretSchema),
      }),
    ),
    cached: v.optional(v.boolean(), true),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const img = dataset.value;
    if (img.type === "DOCKER" && !img.docker) {
      addIssue({ message: "an image of type DOCKER needs 'docker' set", path: pathTo(dataset.value, "docker") });
    }
    if (img.type === "APPC" && !img.appc) {
      addIssue({ message: "an image of type APPC needs 'appc' set", path: pathTo(dataset.value, "appc") });
    }
  }),
);
export type Image = v.InferOutput<typeof ImageSchema>;

/** A path item for rawCheck issues that point at a missing key of an object. */
function pathTo(input: Record<string, unknown>, key: string): [v.ObjectPathItem] {
  return [{ type: "object", origin: "value", input, key, value: input[key] }];
}

// --- CommandInfo ------------------------------------------------------------------------

const EnvironmentSchema = v.looseObject({
  variables: v.optional(
    v.array(
      v.pipe(
        v.looseObject({
          name: v.string(),
          type: v.optional(v.picklist(["UNKNOWN", "VALUE", "SECRET"]), "VALUE"),
          value: v.optional(v.string()),
          secret: v.optional(SecretSchema),
        }),
        v.rawCheck(({ dataset, addIssue }) => {
          if (!dataset.typed) return;
          const e = dataset.value;
          if (e.type === "VALUE" && e.value === undefined) {
            addIssue({ message: `environment variable '${e.name}' of type VALUE must have a value set` });
          }
          if (e.type === "SECRET" && e.secret === undefined) {
            addIssue({ message: `environment variable '${e.name}' of type SECRET must have a secret set` });
          }
        }),
      ),
    ),
    [],
  ),
});

export const CommandInfoSchema = v.looseObject({
  shell: v.optional(v.boolean(), true),
  value: v.optional(v.string()),
  arguments: v.optional(v.array(v.string()), []),
  environment: v.optional(EnvironmentSchema),
  user: v.optional(v.string()),
  uris: v.optional(
    v.array(
      v.looseObject({
        value: v.string(),
        executable: v.optional(v.boolean()),
        extract: v.optional(v.boolean()),
        cache: v.optional(v.boolean()),
        output_file: v.optional(v.string()),
      }),
    ),
    [],
  ),
});
export type CommandInfo = v.InferOutput<typeof CommandInfoSchema>;

// --- Resources --------------------------------------------------------------------------

/**
 * Upper bounds of the scalars ucr applies: beyond them no machine, and no cgroup file, has a
 * meaning for the value (a huge `mem` used to reach memory.limit_in_bytes as "1e+306").
 */
const SCALAR_BOUNDS: Record<string, { max: number; unit: string; why: string }> = {
  cpus: { max: 8192, unit: "", why: "the most CPUs a Linux kernel supports" },
  mem: { max: 2 ** 32, unit: " MB", why: "4 PiB" },
  disk: { max: 2 ** 32, unit: " MB", why: "4 PiB" },
};

/**
 * Why a scalar resource value is unacceptable, or null. Mesos refuses negative values and
 * values that its fixed-point thousandths would turn into 0 (common/resources.cpp
 * `Resources::validate`); ucr also refuses NaN, infinities (except as a limit, where
 * Infinity means unlimited, as in Mesos) and values over the bounds above.
 */
function scalarProblem(name: string, value: number, { infiniteMeansUnlimited = false } = {}): string | null {
  if (Number.isNaN(value)) return `'${name}' is NaN; it must be a number`;
  if (value < 0) return `'${name}' is ${value}; it must not be negative`;
  if (value === Infinity) return infiniteMeansUnlimited ? null : `'${name}' is Infinity; a resource must be a finite number`;
  if (value > 0 && value < 0.0005) return `'${name}' is ${value}; Mesos keeps scalars in thousandths, where this is 0`;
  const bound = SCALAR_BOUNDS[name];
  if (bound && value > bound.max) return `'${name}' is ${value}${bound.unit}; at most ${bound.max}${bound.unit} (${bound.why}) is accepted`;
  return null;
}

export const ResourceSchema = v.pipe(
  v.looseObject({
    name: v.pipe(v.string(), v.minLength(1, "must not be empty")),
    type: v.picklist(["SCALAR", "RANGES", "SET", "TEXT"], "must be SCALAR, RANGES, SET or TEXT"),
    scalar: v.optional(v.looseObject({ value: Double })),
    ranges: v.optional(v.looseObject({ range: v.optional(v.array(v.looseObject({ begin: Int64, end: Int64 })), []) })),
    set: v.optional(v.looseObject({ item: v.optional(v.array(v.string()), []) })),
    role: v.optional(v.string()),
    reservation: v.optional(v.looseObject({})),
    reservations: v.optional(v.array(v.looseObject({})), []),
    allocation_info: v.optional(v.looseObject({})),
    provider_id: v.optional(v.looseObject({})),
    disk: v.optional(
      v.looseObject({
        persistence: v.optional(v.looseObject({ id: v.string() })),
        volume: v.optional(v.looseObject({})),
        source: v.optional(v.looseObject({})),
      }),
    ),
    revocable: v.optional(v.looseObject({})),
    shared: v.optional(v.looseObject({})),
  }),
  // Checked here, before anything is created for the container.
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const r = dataset.value;
    if (r.type !== "SCALAR") return;
    if (!r.scalar) {
      addIssue({ message: `resource '${r.name}' of type SCALAR needs 'scalar' set`, path: pathTo(r, "scalar") });
      return;
    }
    const problem = scalarProblem(r.name, r.scalar.value);
    if (problem) addIssue({ message: problem, path: [...pathTo(r, "scalar"), ...pathTo(r.scalar, "value")] });
  }),
);
export type Resource = v.InferOutput<typeof ResourceSchema>;

/** LaunchContainer.limits: map<string, Value.Scalar>. */
export const LimitsSchema = v.pipe(
  v.record(v.string(), v.looseObject({ value: Double })),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    for (const [name, scalar] of Object.entries(dataset.value)) {
      const problem = scalarProblem(name, scalar.value, { infiniteMeansUnlimited: true });
      if (problem) addIssue({ message: problem, path: [...pathTo(dataset.value, name), ...pathTo(scalar, "value")] });
    }
  }),
);

// --- ContainerInfo and volumes ----------------------------------------------------------

const VolumeSchema = v.looseObject({
  container_path: v.pipe(v.string(), v.minLength(1, "must not be empty")),
  host_path: v.optional(v.string()),
  mode: v.picklist(["RW", "RO"], "must be RW or RO"),
  image: v.optional(ImageSchema),
  source: v.optional(
    v.looseObject({
      type: v.optional(v.picklist(["UNKNOWN", "DOCKER_VOLUME", "HOST_PATH", "SANDBOX_PATH", "SECRET", "CSI_VOLUME"])),
      host_path: v.optional(
        v.looseObject({
          path: v.string(),
          mount_propagation: v.optional(v.looseObject({ mode: v.optional(v.picklist(["UNKNOWN", "HOST_TO_CONTAINER", "BIDIRECTIONAL"])) })),
        }),
      ),
      sandbox_path: v.optional(v.looseObject({ type: v.optional(v.picklist(["UNKNOWN", "SELF", "PARENT"])), path: v.string() })),
      docker_volume: v.optional(v.looseObject({})),
      secret: v.optional(SecretSchema),
      csi_volume: v.optional(v.looseObject({})),
    }),
  ),
});
export type Volume = v.InferOutput<typeof VolumeSchema>;

/** NetworkInfo (mesos.proto): a CNI network to join by `name`, with port mappings. */
const NetworkInfoSchema = v.looseObject({
  name: v.optional(v.string()),
  ip_addresses: v.optional(
    v.array(
      v.looseObject({ protocol: v.optional(v.picklist(["IPv4", "IPv6"], "must be IPv4 or IPv6")), ip_address: v.optional(v.string()) }),
    ),
    [],
  ),
  groups: v.optional(v.array(v.string())),
  labels: v.optional(LabelsSchema),
  port_mappings: v.optional(
    v.array(
      v.looseObject({
        host_port: v.pipe(Int64, v.minValue(0, "must be a port (0 to 65535)"), v.maxValue(65535, "must be a port (0 to 65535)")),
        container_port: v.pipe(Int64, v.minValue(1, "must be a port (1 to 65535)"), v.maxValue(65535, "must be a port (1 to 65535)")),
        protocol: v.optional(v.string()),
      }),
    ),
    [],
  ),
});

/** CapabilityInfo: Linux capabilities by Mesos' enum names (the kernel's without CAP_). */
export const CapabilityInfoSchema = v.looseObject({
  capabilities: v.optional(
    v.array(
      v.picklist(CAPABILITY_NAMES, (issue) =>
        issue.input === "UNKNOWN"
          ? "UNKNOWN is not a capability"
          : `unknown capability ${JSON.stringify(issue.input)} (names are the kernel's without CAP_, e.g. NET_ADMIN)`,
      ),
    ),
    [],
  ),
});

const LinuxInfoSchema = v.looseObject({
  share_cgroups: v.optional(v.boolean()),
  share_pid_namespace: v.optional(v.boolean()),
  ipc_mode: v.optional(v.picklist(["UNKNOWN", "PRIVATE", "SHARE_PARENT"], "must be PRIVATE or SHARE_PARENT")),
  /** MB (uint32). */
  shm_size: v.optional(v.pipe(Int64, v.minValue(0, "must not be negative"), v.maxValue(2 ** 32 - 1, "must fit in 32 bits (MB)"))),
  capability_info: v.optional(CapabilityInfoSchema),
  effective_capabilities: v.optional(CapabilityInfoSchema),
  bounding_capabilities: v.optional(CapabilityInfoSchema),
  seccomp: v.optional(v.looseObject({ profile_name: v.optional(v.string()), unconfined: v.optional(v.boolean()) })),
});
export type LinuxInfo = v.InferOutput<typeof LinuxInfoSchema>;

/** TTYInfo: a terminal for the workload, with a window size (each at most 65535, as struct winsize holds). */
const WindowDimension = v.pipe(Int64, v.minValue(0, "must not be negative"), v.maxValue(65535, "must be at most 65535"));
export const TTYInfoSchema = v.looseObject({
  window_size: v.optional(v.looseObject({ rows: WindowDimension, columns: WindowDimension })),
});

const RLIMIT_TYPES = [
  "RLMT_AS",
  "RLMT_CORE",
  "RLMT_CPU",
  "RLMT_DATA",
  "RLMT_FSIZE",
  "RLMT_LOCKS",
  "RLMT_MEMLOCK",
  "RLMT_MSGQUEUE",
  "RLMT_NICE",
  "RLMT_NOFILE",
  "RLMT_NPROC",
  "RLMT_RSS",
  "RLMT_RTPRIO",
  "RLMT_RTTIME",
  "RLMT_SIGPENDING",
  "RLMT_STACK",
] as const;
export type RlimitType = (typeof RLIMIT_TYPES)[number];

const RLimitInfoSchema = v.looseObject({
  rlimits: v.optional(
    v.array(
      v.looseObject({
        type: v.optional(v.picklist(["UNKNOWN", ...RLIMIT_TYPES], "must be one of RLMT_AS ... RLMT_STACK")),
        hard: v.optional(Uint64),
        soft: v.optional(Uint64),
      }),
    ),
    [],
  ),
});
export type RLimitInfo = v.InferOutput<typeof RLimitInfoSchema>;

export const ContainerInfoSchema = v.looseObject({
  type: v.picklist(["DOCKER", "MESOS"], "must be DOCKER or MESOS"),
  volumes: v.optional(v.array(VolumeSchema), []),
  hostname: v.optional(v.string()),
  network_infos: v.optional(v.array(NetworkInfoSchema), []),
  mesos: v.optional(v.looseObject({ image: v.optional(ImageSchema) })),
  docker: v.optional(v.looseObject({})),
  linux_info: v.optional(LinuxInfoSchema),
  rlimit_info: v.optional(RLimitInfoSchema),
  tty_info: v.optional(TTYInfoSchema),
});

/** --allowed_devices (Mesos' DeviceWhitelist): devices every container may use. */
export const DeviceWhitelistSchema = v.looseObject({
  allowed_devices: v.optional(
    v.array(
      v.looseObject({
        device: v.looseObject({
          path: v.optional(v.string()),
          number: v.optional(v.looseObject({ major_number: Int64, minor_number: Int64 })),
        }),
        access: v.optional(
          v.looseObject({ read: v.optional(v.boolean()), write: v.optional(v.boolean()), mknod: v.optional(v.boolean()) }),
          {},
        ),
      }),
    ),
    [],
  ),
});

// --- Durations ---------------------------------------------------------------------------

export const DurationInfoSchema = v.looseObject({
  nanoseconds: v.pipe(Int64, v.minValue(0, "must not be negative")),
});
