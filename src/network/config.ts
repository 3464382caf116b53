// CNI network configurations (--network_cni_config_dir): reading, checking and finding them.
// A network is a `.conflist` (libcni's list) or a single-plugin `.conf`/`.json` (Mesos' form).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { UcrError } from "../errors.ts";

/** Spec versions the runtime speaks (and the plugins Debian ships answer in). */
const CNI_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] as const;
/** CNI network and container names (spec 1.0: `name`, CNI_CONTAINERID). */
export const CNI_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** What one config file may weigh: these are a few hundred bytes. */
const MAX_CONFIG_BYTES = 1 << 20;
const EXTENSIONS = [".conf", ".conflist", ".json"];

/** One plugin object of a list, as written (unknown keys pass through to the plugin). */
export type PluginConf = { type: string; capabilities?: Record<string, unknown>; ipam?: { type?: string } } & Record<string, unknown>;

export interface NetworkConf {
  name: string;
  /** A config without one is 0.1.0 (what plugins assume, and what Mesos gets). */
  cniVersion: string;
  /** Whether the file said so: a plugin is given the config without it when it did not. */
  versionGiven: boolean;
  plugins: PluginConf[];
  /** The file it came from (named in every error about it). */
  file: string;
}

export class CniConfigError extends UcrError {
  /** `file` "": the error is about a flag or a tool, and `why` says it all. */
  constructor(
    readonly file: string,
    why: string,
  ) {
    super("invalid", file === "" ? why : `CNI network configuration ${file}: ${why}`);
  }
}

const PluginSchema = v.looseObject({
  type: v.pipe(v.string("'type' must be a string"), v.regex(CNI_NAME, "'type' must be a plugin file name (letters, digits, _ . -)")),
  capabilities: v.optional(v.record(v.string(), v.unknown(), "'capabilities' must be an object")),
  ipam: v.optional(
    v.looseObject({
      type: v.pipe(v.string("'ipam.type' must be a string"), v.regex(CNI_NAME, "'ipam.type' must be a plugin file name")),
    }),
  ),
  args: v.optional(v.record(v.string(), v.unknown(), "'args' must be an object")),
});

const NameSchema = v.pipe(
  v.string("'name' must be a string"),
  v.regex(CNI_NAME, "'name' must start with a letter or digit and hold only letters, digits, _ . -"),
  v.maxLength(128, "'name' is longer than 128 characters"),
);
const VersionSchema = v.optional(v.picklist(CNI_VERSIONS, `'cniVersion' must be one of ${CNI_VERSIONS.join(", ")}`));

const ListSchema = v.looseObject({
  name: NameSchema,
  cniVersion: VersionSchema,
  plugins: v.pipe(v.array(PluginSchema, "'plugins' must be an array of plugin objects"), v.minLength(1, "'plugins' is empty")),
});
const SingleSchema = v.looseObject({ ...PluginSchema.entries, name: NameSchema, cniVersion: VersionSchema });

/** Parses and checks one config file; `pluginDirs` is where `type` and `ipam.type` must be found. */
export function readNetworkConf(file: string, pluginDirs: readonly string[]): NetworkConf {
  let text: string;
  try {
    const st = statSync(file);
    if (st.size > MAX_CONFIG_BYTES)
      throw new CniConfigError(file, `is ${st.size} bytes; a CNI config may have at most ${MAX_CONFIG_BYTES}`);
    text = readFileSync(file, "utf8");
  } catch (err) {
    if (err instanceof CniConfigError) throw err;
    throw new CniConfigError(file, `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CniConfigError(file, `is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new CniConfigError(file, "must hold a JSON object");
  const isList = "plugins" in json;
  const parsed = v.safeParse(isList ? ListSchema : SingleSchema, json);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    const path = (issue.path ?? []).map((p) => String(p.key)).join(".");
    const missing = issue.input === undefined && path !== "" ? `'${path}' is missing` : undefined;
    throw new CniConfigError(file, missing ?? (path ? `${path}: ${issue.message}` : issue.message));
  }
  const conf = parsed.output;
  const cniVersion = conf.cniVersion ?? "0.1.0";
  const plugins = ("plugins" in conf ? conf.plugins : [stripListKeys(conf)]) as PluginConf[];
  if (plugins.length > 1 && !versionAtLeast(cniVersion, "0.3.0")) {
    throw new CniConfigError(file, `chains ${plugins.length} plugins, which needs cniVersion 0.3.0 or later (it is ${cniVersion})`);
  }
  for (const [i, p] of plugins.entries()) {
    const where = plugins.length > 1 ? `plugin ${i} (${p.type})` : `plugin '${p.type}'`;
    // Mesos puts the container's NetworkInfo there; a config must not claim it.
    if (Object.hasOwn((p.args ?? {}) as object, "org.apache.mesos"))
      throw new CniConfigError(file, `${where}: 'args.org.apache.mesos' is reserved (ucr passes the container's NetworkInfo there)`);
    if (!findPlugin(p.type, pluginDirs)) throw new CniConfigError(file, `${where}: plugin '${p.type}' is not in ${pluginDirs.join(":")}`);
    const ipam = p.ipam?.type;
    if (ipam !== undefined && !findPlugin(ipam, pluginDirs)) {
      throw new CniConfigError(file, `${where}: IPAM plugin '${ipam}' is not in ${pluginDirs.join(":")}`);
    }
  }
  return { name: conf.name, cniVersion, versionGiven: conf.cniVersion !== undefined, plugins, file };
}

/** A single-plugin config's own keys are the plugin's; name and cniVersion belong to the network. */
function stripListKeys(conf: Record<string, unknown>): Record<string, unknown> {
  const { name: _name, cniVersion: _version, ...plugin } = conf;
  return plugin;
}

/**
 * Every network in `dir`: files ending in .conf, .conflist or .json, in name order (what
 * libcni reads). `strict`: any bad file or a name defined twice is an error; otherwise bad
 * files are reported through `skip` and left out (a reload at launch time must not fail
 * every network for one broken file).
 */
export function readConfigDir(
  dir: string,
  pluginDirs: readonly string[],
  opts: { strict: boolean; skip?: (file: string, why: string) => void },
): Map<string, NetworkConf> {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new CniConfigError(
      "",
      `CNI config directory ${dir} cannot be listed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const out = new Map<string, NetworkConf>();
  for (const name of names) {
    const file = join(dir, name);
    if (!EXTENSIONS.some((e) => name.endsWith(e))) {
      opts.skip?.(file, `ignored: not a .conf, .conflist or .json file`);
      continue;
    }
    try {
      if (statSync(file).isDirectory()) continue;
      const conf = readNetworkConf(file, pluginDirs);
      const earlier = out.get(conf.name);
      if (earlier) throw new CniConfigError(file, `network '${conf.name}' is already defined in ${earlier.file}`);
      out.set(conf.name, conf);
    } catch (err) {
      if (opts.strict) throw err instanceof CniConfigError ? err : new CniConfigError(file, (err as Error).message);
      opts.skip?.(file, (err as Error).message);
    }
  }
  return out;
}

/** The plugin binary `type` in the search path, as CNI_PATH is searched; undefined if none. */
export function findPlugin(type: string, pluginDirs: readonly string[]): string | undefined {
  if (!CNI_NAME.test(type)) return undefined;
  for (const dir of pluginDirs) {
    const path = join(dir, type);
    try {
      const st = statSync(path);
      if (st.isFile() && (st.mode & 0o111) !== 0) return path;
    } catch {
      // not in this one
    }
  }
  return undefined;
}

/** The spec's version order: does `version` come at or after `than`? */
export function versionAtLeast(version: string, than: string): boolean {
  const a = version.split(".").map(Number);
  const b = than.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}
