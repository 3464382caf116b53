// What each container may do, decided by the agent before launch: its capability sets (Mesos'
// linux/capabilities rules over ucr's defaults), no_new_privs, and its seccomp filter, compiled
// here once per (profile, bounding set) and handed to the init stage as program bytes.
import { readFileSync, realpathSync, statSync } from "node:fs";
import { release } from "node:os";
import { join, sep } from "node:path";
import type { LinuxInfo } from "../mesos/messages.ts";
import type { Flags } from "../config/flags.ts";
import { seccompFiltersSupported } from "../ffi/security.ts";
import { log } from "../log.ts";
import { DEFAULT_CAPABILITIES, capabilitiesOfMask, capabilitySet, formatCapabilities } from "../mesos/capabilities.ts";
import { CompileError, compileFilter } from "../runtime/seccomp/bpf.ts";
import builtinProfile from "../runtime/seccomp/default.json" with { type: "json" };
import { ProfileError, expandProfile, nativeArch, parseProfile, type Arch, type SeccompProfile } from "../runtime/seccomp/profile.ts";
import type { ConfineSpec } from "../runtime/spec.ts";
import { errorOfKind } from "../errors.ts";

/** The agent cannot confine containers as configured: it does not start. */
export class ConfinementSetupError extends errorOfKind("invalid") {}

/** A launch whose confinement request is refused (400, with Mesos' message where Mesos has one). */
export class ConfinementRefused extends errorOfKind("invalid") {}

const COMPILED_CACHE_MAX = 64;

interface LoadedProfile {
  /** What logs call it. */
  name: string;
  /** Identifies its content for the compiled-filter cache. */
  key: string;
  profile: SeccompProfile;
}

const subset = (a: readonly number[], b: readonly number[]) => a.every((x) => b.includes(x));
const minus = (a: readonly number[], b: readonly number[]) => a.filter((x) => !b.includes(x));

/** This process's permitted capabilities (/proc/self/status): all it can pass on. */
function ownCapabilities(): { permitted: number[] } {
  const status = readFileSync("/proc/self/status", "utf8");
  return { permitted: capabilitiesOfMask(BigInt(`0x${/^CapPrm:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0"}`)) };
}

function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export class Confinement {
  readonly arch: Arch;
  readonly kernel = kernelVersion();
  readonly lastCap: number;
  /** ucr's default set, less what the agent itself lacks. */
  readonly defaults: number[];
  /** The most the agent may give any container (--bounding_capabilities, else --effective_capabilities, else the defaults). */
  readonly allowed: number[];
  private readonly flagEffective: number[] | undefined;
  private readonly flagBounding: number[] | undefined;
  /** What this agent holds, and so can pass on. */
  private readonly available: { permitted: number[] };
  private readonly capabilitiesIsolator: boolean;
  private readonly seccompIsolator: boolean;
  private readonly defaultProfile: LoadedProfile;
  private readonly parsed = new Map<string, { mtimeMs: number; size: number; loaded: LoadedProfile }>();
  private readonly compiled = new Map<string, { program: string; flags: number }>();

  constructor(private readonly flags: Flags) {
    const arch = nativeArch();
    if (!arch) throw new ConfinementSetupError(`seccomp filters are built for x86_64 and aarch64 only; this machine is ${process.arch}`);
    this.arch = arch;
    if (!seccompFiltersSupported()) {
      throw new ConfinementSetupError(
        "this kernel does not take seccomp filters (CONFIG_SECCOMP_FILTER): ucr confines every container with one",
      );
    }
    this.lastCap = Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8").trim());
    this.available = ownCapabilities();
    const holdable = (set: number[], what: string) => {
      const missing = minus(set, this.available.permitted);
      if (missing.length > 0) log.warn(`${what}: this agent does not hold ${formatCapabilities(missing)}, so no container can get them`);
      return minus(set, missing);
    };
    this.capabilitiesIsolator = flags.isolation.includes("linux/capabilities");
    this.seccompIsolator = flags.isolation.includes("linux/seccomp");
    this.defaults = holdable(capabilitySet(DEFAULT_CAPABILITIES), "default capabilities");
    this.flagEffective =
      flags.effective_capabilities && holdable(capabilitySet(flags.effective_capabilities.capabilities), "--effective_capabilities");
    this.flagBounding =
      flags.bounding_capabilities && holdable(capabilitySet(flags.bounding_capabilities.capabilities), "--bounding_capabilities");
    this.allowed = this.flagBounding ?? this.flagEffective ?? this.defaults;
    for (const [flag, set] of [
      ["--effective_capabilities", this.flagEffective],
      ["--bounding_capabilities", this.flagBounding],
    ] as const) {
      const extra = set ? minus(set, this.defaults) : [];
      if (extra.length > 0) log.warn(`privilege: ${flag} lets containers hold ${formatCapabilities(extra)} beyond ucr's defaults`);
    }

    if (flags.seccomp_profile_name !== undefined) {
      try {
        this.defaultProfile = this.load(flags.seccomp_profile_name);
      } catch (err) {
        throw new ConfinementSetupError(`flag '--seccomp_profile_name': ${(err as Error).message}`);
      }
    } else {
      this.defaultProfile = { name: "ucr's default", key: "builtin", profile: parseProfile(JSON.stringify(builtinProfile)) };
    }
    // Compiled now for the default set, so a profile that cannot be compiled stops the agent.
    try {
      this.filter(
        this.defaultProfile,
        (this.flagEffective ?? this.defaults).filter((c) => this.allowed.includes(c)),
      );
    } catch (err) {
      throw new ConfinementSetupError(`seccomp profile ${this.defaultProfile.name}: ${(err as Error).message}`);
    }
  }

  /** One line for the start-up log. */
  describe(): string {
    const effective = (this.flagEffective ?? this.defaults).filter((c) => this.allowed.includes(c));
    return (
      `containers get capabilities ${formatCapabilities(effective)}, ` +
      `no_new_privs, and the seccomp profile ${this.defaultProfile.name}${this.capabilitiesIsolator ? `; linux/capabilities requests up to ${formatCapabilities(this.allowed)}` : ""}` +
      `${this.seccompIsolator ? `; linux/seccomp profiles from ${this.flags.seccomp_config_dir}` : ""}`
    );
  }

  /** The confinement of container `key` as its LinuxInfo asks; throws ConfinementRefused. */
  forLaunch(linux: LinuxInfo | undefined, key: string): ConfineSpec {
    const { bounding, effective, ambient } = this.capabilities(linux, key);
    const seccomp = this.seccomp(linux, key, bounding);
    return { bounding, effective, ambient, lastCap: this.lastCap, noNewPrivs: true, ...(seccomp ? { seccomp } : {}) };
  }

  /**
   * Checks a launched workload (host pid) against what was decided, from /proc: no_new_privs
   * set, a filter if one was meant, no bounding capability beyond the decided set. These only
   * ever get stricter, so a workload that has already dropped more still passes. A mismatch
   * means an init stage that did not confine it (one from an older ucr, still running after
   * an upgrade): a string saying how, else undefined (also when the workload already ended,
   * or the init stage never exec'd it).
   */
  verify(pid: number, c: ConfineSpec): string | undefined {
    let status: string;
    try {
      // Still this binary: the init stage did not exec (it is failing the way a shell that
      // cannot exec does, 125-127), so nothing runs that needed confining.
      const exe = statSync(`/proc/${pid}/exe`);
      const self = statSync("/proc/self/exe");
      if (exe.ino === self.ino && exe.dev === self.dev) return undefined;
      status = readFileSync(`/proc/${pid}/status`, "utf8");
    } catch {
      return undefined;
    }
    const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)$`, "m").exec(status)?.[1];
    const problems: string[] = [];
    if (c.noNewPrivs && field("NoNewPrivs") !== "1") problems.push(`NoNewPrivs is ${field("NoNewPrivs")}`);
    if (c.seccomp && field("Seccomp") !== "2") problems.push(`Seccomp is ${field("Seccomp")}`);
    const bounding = field("CapBnd");
    if (bounding) {
      const extra = minus(capabilitiesOfMask(BigInt(`0x${bounding}`)), c.bounding);
      if (extra.length > 0) problems.push(`its bounding set has ${formatCapabilities(extra)}`);
    }
    return problems.length > 0 ? problems.join(", ") : undefined;
  }

  /** Mesos' linux/capabilities rules (isolators/linux/capabilities.cpp), over ucr's defaults. */
  private capabilities(linux: LinuxInfo | undefined, key: string): { bounding: number[]; effective: number[]; ambient: number[] } {
    const asked = (["capability_info", "effective_capabilities", "bounding_capabilities"] as const).filter((f) => linux?.[f] !== undefined);
    if (asked.length > 0 && !this.capabilitiesIsolator) {
      throw new ConfinementRefused(
        `linux_info.${asked[0]} needs the linux/capabilities isolator, which this agent does not run (--isolation); ` +
          `without it every container gets ucr's default capabilities`,
      );
    }
    if (linux?.capability_info && linux.effective_capabilities) {
      throw new ConfinementRefused("Only one of 'capability_info' or 'effective_capabilities' is allowed");
    }
    const requestedInfo = linux?.effective_capabilities ?? linux?.capability_info;
    const requested = requestedInfo && capabilitySet(requestedInfo.capabilities);
    const requestedBounding = linux?.bounding_capabilities && capabilitySet(linux.bounding_capabilities.capabilities);

    if (requestedBounding && !subset(requestedBounding, this.allowed)) {
      throw new ConfinementRefused(
        `Bounding capabilities '${formatCapabilities(requestedBounding)}', but only '${formatCapabilities(this.allowed)}' are allowed`,
      );
    }
    if (requested && !subset(requested, this.allowed)) {
      throw new ConfinementRefused(
        `Requested capabilities '${formatCapabilities(requested)}', but only '${formatCapabilities(this.allowed)}' are allowed`,
      );
    }
    // Mesos' order when the request names capabilities; a container that names none gets no
    // more than --effective_capabilities (or the defaults) even in its bounding set, since the
    // seccomp filter opens calls by the bounding set (mount, unshare... with SYS_ADMIN).
    const bounding =
      requested || requestedBounding
        ? (requestedBounding ?? this.flagBounding ?? requested!)
        : (this.flagEffective ?? this.defaults).filter((c) => this.allowed.includes(c));
    const explicit = requested ?? this.flagEffective;
    const effective = explicit ?? this.defaults.filter((c) => bounding.includes(c));
    if (!subset(effective, bounding)) {
      throw new ConfinementRefused(
        `Requested capabilities '${formatCapabilities(effective)}', but only '${formatCapabilities(bounding)}' are allowed`,
      );
    }
    const unheld = minus([...bounding, ...effective], this.available.permitted);
    if (unheld.length > 0) {
      throw new ConfinementRefused(
        `this agent does not hold ${formatCapabilities([...new Set(unheld)])}, so it cannot give them to a container`,
      );
    }
    const beyond = [...new Set([...minus(bounding, this.defaults), ...minus(effective, this.defaults)])].sort((a, b) => a - b);
    if (requested || requestedBounding) {
      if (beyond.length > 0) {
        log.warn(
          `privilege: container ${key} is granted ${formatCapabilities(beyond)} beyond ucr's defaults ` +
            `(effective ${formatCapabilities(effective)}, bounding ${formatCapabilities(bounding)})`,
        );
      } else {
        log.info(
          `container ${key}: capabilities as requested: effective ${formatCapabilities(effective)}, bounding ${formatCapabilities(bounding)}`,
        );
      }
    }
    // As Mesos: explicitly given effective capabilities are also ambient, so a non-root workload keeps them.
    return { bounding, effective, ambient: explicit ?? [] };
  }

  /** Mesos' linux/seccomp rules (isolators/linux/seccomp.cpp); undefined: no filter. */
  private seccomp(linux: LinuxInfo | undefined, key: string, bounding: number[]): ConfineSpec["seccomp"] {
    const info = linux?.seccomp;
    let profile = this.defaultProfile;
    if (info !== undefined) {
      if (!this.seccompIsolator) {
        throw new ConfinementRefused(
          "linux_info.seccomp needs the linux/seccomp isolator, which this agent does not run (--isolation); " +
            "without it every container gets ucr's default seccomp profile",
        );
      }
      const unconfined = info.unconfined ?? false;
      if (unconfined && info.profile_name !== undefined) {
        throw new ConfinementRefused(
          "Invalid Seccomp configuration: 'profile_name' given even though 'unconfined' Seccomp setting is enabled",
        );
      }
      if (info.profile_name !== undefined) {
        try {
          profile = this.load(info.profile_name);
        } catch (err) {
          throw new ConfinementRefused((err as Error).message);
        }
      } else if (unconfined) {
        log.warn(`privilege: container ${key} runs without a seccomp filter (linux_info.seccomp.unconfined)`);
        return undefined;
      } else {
        throw new ConfinementRefused("Missing Seccomp profile name");
      }
      log.info(`Using Seccomp profile '${info.profile_name}' for container ${key}`);
    }
    try {
      return this.filter(profile, bounding);
    } catch (err) {
      throw new ConfinementRefused(`Failed to compile Seccomp profile ${profile.name} for container ${key}: ${(err as Error).message}`);
    }
  }

  /** The compiled filter for `profile` and this bounding set: built once, then reused. */
  private filter(profile: LoadedProfile, bounding: number[]): { program: string; flags: number } {
    const cacheKey = `${profile.key}|${this.arch}|${bounding.join(",")}`;
    const hit = this.compiled.get(cacheKey);
    if (hit) return hit;
    const expanded = expandProfile(profile.profile, this.arch, bounding, this.kernel);
    const entry = { program: Buffer.from(compileFilter(expanded)).toString("base64"), flags: profile.profile.flags };
    if (this.compiled.size >= COMPILED_CACHE_MAX) this.compiled.delete(this.compiled.keys().next().value!);
    this.compiled.set(cacheKey, entry);
    return entry;
  }

  /**
   * A profile named relative to --seccomp_config_dir, resolved inside it at the moment of use
   * (no '..', no symlink out), parsed again only when the file changed. Errors carry Mesos'
   * wording ("Failed to read Seccomp profile file '...'" / "Failed to parse Seccomp profile '...'").
   */
  private load(name: string): LoadedProfile {
    const dir = this.flags.seccomp_config_dir!;
    const path = join(dir, name);
    if (name.startsWith("/") || name.split("/").includes("..")) {
      throw new Error(
        `Failed to read Seccomp profile file '${path}': the profile name must be relative to --seccomp_config_dir, without '..'`,
      );
    }
    let real: string;
    let st;
    try {
      real = realpathSync(path);
      const root = realpathSync(dir);
      if (!real.startsWith(root + sep)) throw new Error(`it resolves to ${real}, outside ${root}`);
      st = statSync(real);
      if (!st.isFile()) throw new Error("not a regular file");
      if (st.size > 1 << 20) throw new Error(`${st.size} bytes; a profile may have at most 1 MiB`);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new Error(`Failed to read Seccomp profile file '${path}': ${e.code ?? e.message}`);
    }
    const cached = this.parsed.get(real);
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached.loaded;
    let profile: SeccompProfile;
    try {
      profile = parseProfile(readFileSync(real, "utf8"));
    } catch (err) {
      if (err instanceof ProfileError || err instanceof CompileError)
        throw new Error(`Failed to parse Seccomp profile '${path}': ${err.message}`);
      throw new Error(`Failed to read Seccomp profile file '${path}': ${(err as Error).message}`);
    }
    const unknown = profile.unknownNames;
    if (unknown.length > 0) {
      const shown = unknown.length > 20 ? `${unknown.slice(0, 20).join(", ")} and ${unknown.length - 20} more` : unknown.join(", ");
      log.warn(`seccomp profile '${path}' names system calls neither x86_64 nor aarch64 has; they are ignored (as runc does): ${shown}`);
    }
    const loaded = { name: `'${name}'`, key: `${real}@${st.mtimeMs}:${st.size}`, profile };
    this.parsed.set(real, { mtimeMs: st.mtimeMs, size: st.size, loaded });
    return loaded;
  }
}
