// Seccomp profiles in Docker's JSON format (today's, with optional keys, and the older one
// Mesos' parser requires, with every key spelled out), parsed and expanded for one container:
// entries kept or dropped by architecture, capabilities (the bounding set) and kernel version.
// Used by the agent only: the init stage receives the compiled program, never this.
import * as v from "valibot";
import { CAPABILITY_NAMES, type CapabilityName } from "../../mesos/capabilities.ts";
import { AARCH64, X86_64 } from "./syscalls.ts";
import { errorOfKind } from "../../errors.ts";

export type Arch = "x86_64" | "aarch64";

/** The architecture this process runs on, or undefined where ucr has no filter for it. */
export function nativeArch(): Arch | undefined {
  return process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : undefined;
}

export function syscallTable(arch: Arch): Readonly<Record<string, number>> {
  return arch === "x86_64" ? X86_64 : AARCH64;
}

/** The names Docker profiles use in `includes.arches` (Go's GOARCH). */
const GO_ARCH: Record<Arch, string> = { x86_64: "amd64", aarch64: "arm64" };

// seccomp(2) return values (linux/seccomp.h).
export const RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  USER_NOTIF: 0x7fc00000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

const OPS = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"] as const;
type Op = (typeof OPS)[number];

const ACTIONS = [
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
  "SCMP_ACT_NOTIFY",
] as const;
type ActionName = (typeof ACTIONS)[number];

// seccomp(2) filter flags a profile may ask for (linux/seccomp.h).
const FILTER_FLAG = { TSYNC: 1, LOG: 2, SPEC_ALLOW: 4, WAIT_KILLABLE_RECV: 32 } as const;

// --- schema -----------------------------------------------------------------------------

/** An unsigned integer JSON can carry exactly (beyond 2^53 a JSON number silently rounds). */
const Unsigned = v.pipe(
  v.number("must be a number"),
  v.integer("must be an integer"),
  v.minValue(0, "must not be negative"),
  v.maxValue(Number.MAX_SAFE_INTEGER, "must be at most 2^53-1 (larger JSON numbers lose precision)"),
);

const ErrnoRet = v.pipe(Unsigned, v.maxValue(4095, "must be an errno (0 to 4095)"));

/** An argument value: any 64-bit unsigned integer (past 2^53 parseProfile hands it over as a bigint). */
const ArgValue = v.union(
  [Unsigned, v.pipe(v.bigint(), v.minValue(0n, "must not be negative"), v.maxValue((1n << 64n) - 1n, "must fit in 64 bits"))],
  "must be an unsigned integer",
);

const ActionSchema = v.picklist(ACTIONS, (issue) => `unknown action ${JSON.stringify(issue.input)} (known: ${ACTIONS.join(", ")})`);

const CapsSchema = v.array(
  v.pipe(
    v.string(),
    v.check(
      (c) => c.startsWith("CAP_") && (CAPABILITY_NAMES as readonly string[]).includes(c.slice(4)),
      (issue) => `unknown capability ${JSON.stringify(issue.input)}`,
    ),
  ),
);

const FilterSchema = v.nullish(
  v.looseObject({
    caps: v.nullish(CapsSchema),
    arches: v.nullish(v.array(v.string())),
    minKernel: v.nullish(v.pipe(v.string(), v.regex(/^\d+\.\d+(\.\d+)?$/, 'must be a kernel version such as "5.8"'))),
  }),
);

const ArgSchema = v.looseObject({
  index: v.pipe(Unsigned, v.maxValue(5, "must be an argument index (0 to 5)")),
  value: ArgValue,
  valueTwo: v.optional(ArgValue, 0),
  op: v.picklist(OPS, (issue) => `unknown operator ${JSON.stringify(issue.input)} (known: ${OPS.join(", ")})`),
});

const SyscallSchema = v.pipe(
  v.looseObject({
    names: v.nullish(v.array(v.string())),
    /** Docker's legacy single name. */
    name: v.nullish(v.string()),
    action: ActionSchema,
    errnoRet: v.nullish(ErrnoRet),
    args: v.nullish(v.array(ArgSchema)),
    comment: v.nullish(v.string()),
    includes: FilterSchema,
    excludes: FilterSchema,
  }),
  v.check((s) => (s.names?.length ?? 0) > 0 || !!s.name, "needs 'names' (a non-empty list of system calls)"),
);

const SeccompProfileSchema = v.looseObject({
  defaultAction: ActionSchema,
  defaultErrnoRet: v.nullish(ErrnoRet),
  architectures: v.nullish(v.array(v.string())),
  archMap: v.nullish(v.array(v.looseObject({ architecture: v.string(), subArchitectures: v.nullish(v.array(v.string())) }))),
  flags: v.nullish(v.array(v.string())),
  listenerPath: v.nullish(v.string()),
  listenerMetadata: v.nullish(v.string()),
  syscalls: v.nullish(v.array(SyscallSchema)),
});
type RawProfile = v.InferOutput<typeof SeccompProfileSchema>;

// --- parsed form ------------------------------------------------------------------------

export interface Condition {
  index: number;
  op: Op;
  value: bigint;
  valueTwo: bigint;
}

interface Entry {
  names: string[];
  /** The seccomp return value (action | data). */
  action: number;
  args: Condition[];
  includes: { caps?: number[]; arches?: string[]; minKernel?: [number, number] };
  excludes: { caps?: number[]; arches?: string[]; minKernel?: [number, number] };
}

export interface SeccompProfile {
  defaultAction: number;
  /** seccomp(2) flags to load the filter with (LOG, SPEC_ALLOW). */
  flags: number;
  entries: Entry[];
  /** Names the profile uses that neither architecture has (ignored, as runc does). */
  unknownNames: string[];
}

export class ProfileError extends errorOfKind("invalid") {}

function actionValue(name: ActionName, errnoRet: number | null | undefined, where: string): number {
  switch (name) {
    case "SCMP_ACT_KILL":
    case "SCMP_ACT_KILL_THREAD":
      return RET.KILL_THREAD;
    case "SCMP_ACT_KILL_PROCESS":
      return RET.KILL_PROCESS;
    case "SCMP_ACT_TRAP":
      return RET.TRAP;
    case "SCMP_ACT_ERRNO":
      return RET.ERRNO | (errnoRet ?? 1); // EPERM unless the profile says otherwise
    case "SCMP_ACT_TRACE":
      return RET.TRACE | (errnoRet ?? 1);
    case "SCMP_ACT_ALLOW":
      return RET.ALLOW;
    case "SCMP_ACT_LOG":
      return RET.LOG;
    case "SCMP_ACT_NOTIFY":
      throw new ProfileError(`${where}: SCMP_ACT_NOTIFY needs a seccomp agent listening for notifications, which ucr does not have`);
  }
}

function kernelVersion(s: string | null | undefined): [number, number] | undefined {
  if (!s) return undefined;
  const [major, minor] = s.split(".").map(Number);
  return [major!, minor!];
}

function filter(f: v.InferOutput<typeof FilterSchema>): Entry["includes"] {
  if (!f) return {};
  return {
    ...(f.caps && f.caps.length > 0 ? { caps: f.caps.map((c) => CAPABILITY_NAMES.indexOf(c.slice(4) as CapabilityName)) } : {}),
    ...(f.arches && f.arches.length > 0 ? { arches: f.arches } : {}),
    ...(f.minKernel ? { minKernel: kernelVersion(f.minKernel)! } : {}),
  };
}

/** "syscalls[3].action: unknown action ..." for the first problem. */
function describe(issues: ReadonlyArray<v.BaseIssue<unknown>>): string {
  const first = issues[0]!;
  let path = "";
  for (const p of first.path ?? []) path += typeof p.key === "number" ? `[${p.key}]` : `${path ? "." : ""}${String(p.key)}`;
  const msg =
    first.received === "undefined"
      ? "is required but missing"
      : first.message.startsWith("Invalid ")
        ? `expected ${first.expected}, got ${first.received}`
        : first.message;
  return `${path || "the profile"}: ${msg}`;
}

/** Parses a profile's JSON text; throws ProfileError saying what is wrong and where. */
export function parseProfile(text: string): SeccompProfile {
  let json: unknown;
  // Argument values are 64-bit; a JSON number past 2^53 would silently round, so those are
  // read from their source text (JSON.parse source access) as bigints.
  const exact = (key: string, value: unknown, context?: { source?: string }) =>
    (key === "value" || key === "valueTwo") &&
    typeof value === "number" &&
    !Number.isSafeInteger(value) &&
    /^\d+$/.test(context?.source ?? "")
      ? BigInt(context!.source!)
      : value;
  try {
    json = JSON.parse(text, exact as Parameters<typeof JSON.parse>[1]);
  } catch (err) {
    throw new ProfileError(`not valid JSON: ${(err as Error).message}`);
  }
  const result = v.safeParse(SeccompProfileSchema, json);
  if (!result.success) throw new ProfileError(describe(result.issues));
  return normalize(result.output);
}

function normalize(raw: RawProfile): SeccompProfile {
  if (raw.architectures?.length && raw.archMap?.length) throw new ProfileError("'architectures' and 'archMap' are exclusive: use one");
  if (raw.listenerPath) throw new ProfileError("'listenerPath' needs a seccomp agent (SCMP_ACT_NOTIFY), which ucr does not have");
  let flags = 0;
  for (const f of raw.flags ?? []) {
    if (f === "SECCOMP_FILTER_FLAG_LOG") flags |= FILTER_FLAG.LOG;
    else if (f === "SECCOMP_FILTER_FLAG_SPEC_ALLOW") flags |= FILTER_FLAG.SPEC_ALLOW;
    // The filter goes on the thread that calls execve, which ends every other thread: syncing
    // it to all threads would change nothing.
    else if (f === "SECCOMP_FILTER_FLAG_TSYNC") continue;
    else
      throw new ProfileError(
        `flags: ${JSON.stringify(f)} is not supported (ucr loads filters with SECCOMP_FILTER_FLAG_LOG and SPEC_ALLOW only)`,
      );
  }
  const known = new Set([...Object.keys(X86_64), ...Object.keys(AARCH64)]);
  const unknown = new Set<string>();
  const entries = (raw.syscalls ?? []).map((s, i): Entry => {
    const names = [...(s.names ?? []), ...(s.name ? [s.name] : [])];
    for (const n of names) if (!known.has(n)) unknown.add(n);
    return {
      names,
      action: actionValue(s.action, s.errnoRet, `syscalls[${i}].action`),
      args: (s.args ?? []).map((a) => ({ index: a.index, op: a.op, value: BigInt(a.value), valueTwo: BigInt(a.valueTwo) })),
      includes: filter(s.includes),
      excludes: filter(s.excludes),
    };
  });
  return {
    defaultAction: actionValue(raw.defaultAction, raw.defaultErrnoRet, "defaultAction"),
    flags,
    entries,
    unknownNames: [...unknown].sort(),
  };
}

// --- expansion --------------------------------------------------------------------------

/** One filter rule: on syscall `nr`, if every condition holds, return `action`. */
export interface Rule {
  nr: number;
  name: string;
  action: number;
  conditions: Condition[];
}

export interface Expanded {
  arch: Arch;
  defaultAction: number;
  flags: number;
  rules: Rule[];
  /** The largest syscall number the kept entries name on this architecture (runc's ENOSYS stub starts above it). */
  maxNamed: number;
}

function atLeast(kernel: [number, number], min: [number, number]): boolean {
  return kernel[0] > min[0] || (kernel[0] === min[0] && kernel[1] >= min[1]);
}

/**
 * The profile's rules for one container, as Docker expands them: an entry is dropped if its
 * `excludes` matches (the architecture, any of the caps in the bounding set, or a kernel at
 * least minKernel) and kept only if its `includes` all hold. Names this architecture lacks
 * are skipped; several conditions on the same argument become separate rules (as runc does).
 */
export function expandProfile(profile: SeccompProfile, arch: Arch, bounding: readonly number[], kernel: [number, number]): Expanded {
  const table = syscallTable(arch);
  const caps = new Set(bounding);
  const goArch = GO_ARCH[arch];
  const rules: Rule[] = [];
  let maxNamed = -1;
  for (const e of profile.entries) {
    const ex = e.excludes;
    if (ex.arches?.includes(goArch)) continue;
    if (ex.caps?.some((c) => caps.has(c))) continue;
    if (ex.minKernel && atLeast(kernel, ex.minKernel)) continue;
    const inc = e.includes;
    if (inc.arches && !inc.arches.includes(goArch)) continue;
    if (inc.caps && !inc.caps.every((c) => caps.has(c))) continue;
    if (inc.minKernel && !atLeast(kernel, inc.minKernel)) continue;
    for (const n of e.names) if (table[n] !== undefined) maxNamed = Math.max(maxNamed, table[n]!);
    const perIndex = new Map<number, number>();
    for (const a of e.args) perIndex.set(a.index, (perIndex.get(a.index) ?? 0) + 1);
    const split = [...perIndex.values()].some((c) => c > 1);
    const conditionSets = split ? e.args.map((a) => [a]) : [e.args];
    for (const name of e.names) {
      const nr = table[name];
      if (nr === undefined) continue;
      for (const conditions of conditionSets) rules.push({ nr, name, action: e.action, conditions });
    }
  }
  return { arch, defaultAction: profile.defaultAction, flags: profile.flags, rules, maxNamed };
}
