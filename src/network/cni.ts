// Mesos' network/cni isolator for standalone containers: a container whose network_infos
// name CNI networks gets a network namespace of its own, attached by the plugins (ADD),
// its /etc/hosts, /etc/hostname and /etc/resolv.conf, and its host ports; all of it is
// undone (DEL) when it exits or is removed, also by an agent that restarted in between.
//
// State lives in files, one directory per container under the CNI root (Mesos' layout):
//   <root>/<id>/ns                             the namespace (nsfs bind mount) until DEL is done
//   <root>/<id>/{hosts,hostname,resolv.conf}   what the container sees in /etc
//   <root>/<id>/<network>/network.conf         config, runtimeConfig and args of the ADD (written first)
//   <root>/<id>/<network>/<ifname>/network.info the final ADD result (DEL's prevResult)
// so a DEL always has what its ADD had, whoever ran the ADD. (Over 400 lines: ADD, DEL and
// recovery of these files are one state machine; configs, plugins, results and namespaces
// are apart.)
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import type { Flags } from "../config/flags.ts";
import { log } from "../log.ts";
import { writeStateFile } from "../runtime/state.ts";
import {
  CNI_NAME,
  CniConfigError,
  type NetworkConf,
  type PluginConf,
  findPlugin,
  readConfigDir,
  readNetworkConf,
  versionAtLeast,
} from "./config.ts";
import { NETNS_TOOLS, createNetns, isNetns, makeSharedMount, releaseNetns, unmountSharedMount } from "./netns.ts";
import { invokePlugin } from "./plugin.ts";
import { DEFAULT_PORTS, HostPorts, type PortMapping, type PortRange } from "./ports.ts";
import { type CniResult, addressOf, parseResult } from "./result.ts";
import { UcrError } from "../errors.ts";

/** Mesos' NetworkInfo, as a launch gives it (already shape-checked by the API). */
export interface NetworkInfo {
  name?: string;
  ip_addresses?: Array<{ protocol?: string; ip_address?: string }>;
  groups?: string[];
  labels?: { labels?: Array<{ key: string; value?: string }> };
  port_mappings?: Array<{ host_port: number; container_port: number; protocol?: string }>;
}

/** What ContainerStatus.network_infos reports for one network. */
export interface NetworkStatus extends Omit<NetworkInfo, "ip_addresses"> {
  ip_addresses: Array<{ protocol: "IPv4" | "IPv6"; ip_address: string }>;
}

/** A launch or status request's error: invalid (the request's networks) or internal (a plugin failed). */
export class NetworkError extends UcrError {}

/** One network of one container: everything ADD was given, so DEL gets the same (network.conf). */
interface Attachment {
  version: 1;
  network: string;
  ifName: string;
  /** CNI_CONTAINERID. */
  cniId: string;
  conf: NetworkConf;
  /** runtimeConfig values for the capabilities a plugin declares (portMappings, ips). */
  capabilityArgs: { portMappings?: Array<{ hostPort: number; containerPort: number; protocol: string }>; ips?: string[] };
  /** The request's NetworkInfo with host ports allocated: args["org.apache.mesos"].network_info. */
  networkInfo: NetworkInfo;
}

export interface NetworkPlan {
  key: string;
  hostname: string;
  attachments: Attachment[];
}

/** What stage 2 needs: the namespace to join and the files to see as /etc/hosts, hostname, resolv.conf. */
export interface Joined {
  netns: string;
  etc: { hosts: string; hostname: string; resolv?: string };
}

const PLUGIN_TIMEOUT_MS = 60_000;
const HOST_RESOLV = "/etc/resolv.conf";

export interface CniOptions {
  configDir: string;
  pluginDirs: string[];
  rootDir: string;
  ports: PortRange[];
}

export class CniNetworks {
  private configs = new Map<string, NetworkConf>();
  /** Containers whose networks are attached (or being attached): what status and nested ones need. */
  private readonly attached = new Map<string, { joined?: Joined; statuses: NetworkStatus[] }>();
  /** Operations on one container, one at a time (the spec forbids two at once). */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Supported spec versions per plugin binary (its VERSION answer), keyed by path and mtime. */
  private readonly versions = new Map<string, string[]>();
  readonly ports: HostPorts;

  private constructor(readonly options: CniOptions | undefined) {
    this.ports = new HostPorts(options?.ports ?? DEFAULT_PORTS);
  }

  /** The agent's networks from its flags; without --network_cni_config_dir, host network only. */
  static async fromFlags(f: Flags): Promise<CniNetworks> {
    if (f.network_cni_config_dir === undefined) return new CniNetworks(undefined);
    const base = f.network_cni_root_dir_persist ? f.work_dir : f.runtime_dir;
    const net = new CniNetworks({
      configDir: f.network_cni_config_dir,
      pluginDirs: f.network_cni_plugins_dir,
      rootDir: join(base, "isolators", "network", "cni"),
      ports: f.resources ?? DEFAULT_PORTS,
    });
    await net.start();
    return net;
  }

  /** Start-up: every config valid and its plugins speaking its version, tools there, the root dir a shared mount. */
  private async start(): Promise<void> {
    const o = this.options!;
    for (const dir of o.pluginDirs) {
      if (!existsSync(dir)) throw new CniConfigError("", `flag '--network_cni_plugins_dir': ${dir} does not exist`);
    }
    if (!existsSync(o.configDir)) throw new CniConfigError("", `flag '--network_cni_config_dir': ${o.configDir} does not exist`);
    for (const tool of NETNS_TOOLS) {
      if (!Bun.which(tool))
        throw new CniConfigError("", `network/cni needs '${tool}' in PATH for network namespaces (util-linux's unshare, iproute2's ip)`);
    }
    this.configs = readConfigDir(o.configDir, o.pluginDirs, {
      strict: true,
      skip: (file, why) => log.warn(`CNI config ${file}: ${why}`),
    });
    for (const conf of this.configs.values()) await this.checkVersions(conf);
    mkdirSync(o.rootDir, { recursive: true, mode: 0o700 });
    if (makeSharedMount(o.rootDir)) log.info(`CNI root ${o.rootDir}: made a shared mount of its own`);
    log.info(`CNI networks: ${[...this.configs.keys()].join(", ") || "none"} (from ${o.configDir}; plugins in ${o.pluginDirs.join(":")})`);
  }

  /** Every plugin of `conf` must list its cniVersion in its VERSION answer (firewall refuses 0.3.x, say). */
  private async checkVersions(conf: NetworkConf): Promise<void> {
    const o = this.options!;
    const binaries = new Set<string>();
    for (const p of conf.plugins) {
      binaries.add(findPlugin(p.type, o.pluginDirs)!);
      if (p.ipam?.type) binaries.add(findPlugin(p.ipam.type, o.pluginDirs)!);
    }
    await Promise.all(
      [...binaries].map(async (binary) => {
        const key = `${binary}:${Bun.file(binary).lastModified}`;
        let supported = this.versions.get(key);
        if (!supported) {
          let out: string;
          try {
            out = await invokePlugin({
              command: "VERSION",
              binary,
              cniPath: o.pluginDirs,
              containerId: "ucr-version-check",
              ifName: "eth0",
              stdin: JSON.stringify({ cniVersion: conf.cniVersion }),
              timeoutMs: 10_000,
              what: `CNI plugin ${binary}`,
            });
            const answer = JSON.parse(out) as { supportedVersions?: unknown };
            if (!Array.isArray(answer.supportedVersions))
              throw new Error(`VERSION answered without supportedVersions: ${out.slice(0, 200)}`);
            supported = answer.supportedVersions.map(String);
          } catch (err) {
            throw new CniConfigError(conf.file, `plugin ${binary} did not say which CNI versions it speaks: ${(err as Error).message}`);
          }
          this.versions.set(key, supported);
        }
        if (!supported.includes(conf.cniVersion)) {
          throw new CniConfigError(
            conf.file,
            `plugin ${binary} does not speak cniVersion ${conf.cniVersion} (it speaks ${supported.join(", ")})`,
          );
        }
      }),
    );
  }

  /**
   * The config of network `name`, read again from its file (configs may change while the
   * agent runs, as in Mesos); an unknown name rereads the directory once.
   */
  private async lookup(name: string): Promise<NetworkConf> {
    const o = this.options!;
    const known = this.configs.get(name);
    if (known) {
      let fresh: NetworkConf | undefined;
      try {
        fresh = readNetworkConf(known.file, o.pluginDirs);
      } catch (err) {
        if (existsSync(known.file)) throw new NetworkError("invalid", `CNI network '${name}': ${(err as Error).message}`);
      }
      if (fresh?.name === name) {
        await this.checked(fresh);
        this.configs.set(name, fresh);
        return fresh;
      }
      this.configs.delete(name);
    }
    const found = readConfigDir(o.configDir, o.pluginDirs, { strict: false });
    for (const [n, conf] of found) if (!this.configs.has(n)) this.configs.set(n, conf);
    const conf = found.get(name);
    if (!conf)
      throw new NetworkError(
        "invalid",
        `Unknown CNI network '${name}' (known: ${[...this.configs.keys()].join(", ") || "none"}, in ${o.configDir})`,
      );
    await this.checked(conf);
    return conf;
  }

  private async checked(conf: NetworkConf): Promise<void> {
    try {
      await this.checkVersions(conf);
    } catch (err) {
      throw new NetworkError("invalid", `CNI network '${conf.name}': ${(err as Error).message}`);
    }
  }

  /**
   * A launch's networks, checked: named networks known, none twice, port mappings valid and
   * their host ports taken (0: one from the agent's range). null: the host network. Nested
   * containers join their parent's namespace and may not name networks of their own.
   */
  async plan(key: string, nested: boolean, infos: readonly NetworkInfo[], hostname: string): Promise<NetworkPlan | null> {
    if (nested) {
      if (infos.length > 0) {
        throw new NetworkError(
          "invalid",
          "container.network_infos: a nested container joins its parent's network namespace and cannot name networks of its own",
        );
      }
      return null;
    }
    const named = infos.map((info, i) => ({ info, i })).filter(({ info }) => info.name !== undefined && info.name !== "");
    if (named.length === 0) {
      const withPorts = infos.findIndex((info) => (info.port_mappings ?? []).length > 0);
      if (withPorts >= 0)
        throw new NetworkError(
          "invalid",
          `container.network_infos[${withPorts}].port_mappings: port mappings need a named CNI network ` +
            "(the host network has no ports to map)",
        );
      return null;
    }
    if (!this.options) {
      throw new NetworkError(
        "invalid",
        `container.network_infos[${named[0]!.i}].name: '${named[0]!.info.name}' is a CNI network, but this agent has none: ` +
          "start it with --network_cni_config_dir (and --isolation=...,network/cni)",
      );
    }
    const seen = new Set<string>();
    const cniId = CNI_NAME.test(key) ? key : `ucr-${createHash("sha256").update(key).digest("hex").slice(0, 32)}`;
    const attachments: Attachment[] = [];
    try {
      for (const [n, { info, i }] of named.entries()) {
        const where = `container.network_infos[${i}]`;
        const name = info.name!;
        if (seen.has(name)) throw new NetworkError("invalid", `${where}.name: Attempted to join CNI network '${name}' multiple times`);
        seen.add(name);
        const conf = await this.lookup(name);
        const mappings = (info.port_mappings ?? []).map((m, j): PortMapping => {
          const protocol = (m.protocol ?? "tcp").toLowerCase();
          if (!["tcp", "udp", "sctp"].includes(protocol))
            throw new NetworkError("invalid", `${where}.port_mappings[${j}].protocol: '${m.protocol}' is not tcp, udp or sctp`);
          if (m.container_port < 1 || m.container_port > 65535)
            throw new NetworkError("invalid", `${where}.port_mappings[${j}].container_port: ${m.container_port} is not a port (1-65535)`);
          if (m.host_port < 0 || m.host_port > 65535)
            throw new NetworkError(
              "invalid",
              `${where}.port_mappings[${j}].host_port: ${m.host_port} is not a port (1-65535, or 0 for one from the agent's range)`,
            );
          return { hostPort: m.host_port, containerPort: m.container_port, protocol };
        });
        if (mappings.length > 0 && !conf.plugins.some((p) => p.capabilities?.portMappings === true || p.type === "mesos-cni-port-mapper")) {
          throw new NetworkError(
            "invalid",
            `${where}.port_mappings: CNI network '${name}' (${conf.file}) has no plugin with the portMappings capability ` +
              `(add {"type":"portmap","capabilities":{"portMappings":true}})`,
          );
        }
        let taken: PortMapping[];
        try {
          taken = this.ports.take(key, mappings);
        } catch (err) {
          throw new NetworkError("invalid", `${where}.port_mappings: ${(err as Error).message}`);
        }
        const ips = (info.ip_addresses ?? []).map((a) => a.ip_address).filter((a): a is string => a !== undefined && a !== "");
        const badIp = ips.findIndex((ip) => isIP(ip) === 0);
        if (badIp >= 0) throw new NetworkError("invalid", `${where}.ip_addresses: '${ips[badIp]}' is not an IP address`);
        const { port_mappings: _asked, ...rest } = info;
        const networkInfo: NetworkInfo = {
          ...rest,
          ...(taken.length > 0
            ? { port_mappings: taken.map((m) => ({ host_port: m.hostPort, container_port: m.containerPort, protocol: m.protocol })) }
            : {}),
        };
        attachments.push({
          version: 1,
          network: name,
          ifName: `eth${n}`,
          cniId,
          conf,
          capabilityArgs: { ...(taken.length > 0 ? { portMappings: taken } : {}), ...(ips.length > 0 ? { ips } : {}) },
          networkInfo,
        });
      }
    } catch (err) {
      this.ports.release(key);
      throw err;
    }
    return { key, hostname, attachments };
  }

  private serial<T>(key: string, op: () => Promise<T>): Promise<T> {
    const before = this.queues.get(key) ?? Promise.resolve();
    const run = before.then(op, op);
    const tail = run.catch(() => {});
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return run;
  }

  private dir(key: string): string {
    return join(this.options!.rootDir, key);
  }

  /**
   * Makes the namespace, runs ADD for every network (in parallel, each plugin chain in
   * order) and writes the /etc files. On failure everything is DELeted before it throws.
   */
  attach(plan: NetworkPlan): Promise<Joined> {
    return this.serial(plan.key, async () => {
      const dir = this.dir(plan.key);
      // Left by an earlier container of this ID whose DEL failed: finish that first.
      if (existsSync(dir)) await this.detachNow(plan.key, false);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      this.attached.set(plan.key, { statuses: [] });
      const ns = join(dir, "ns");
      const started = performance.now();
      const timings: string[] = [];
      try {
        // Taken again: a detach of leftovers above gave back whatever this ID held.
        try {
          this.ports.take(
            plan.key,
            plan.attachments.flatMap((a) => a.capabilityArgs.portMappings ?? []),
          );
        } catch (err) {
          throw new NetworkError("invalid", `container.network_infos: ${(err as Error).message}`);
        }
        await createNetns(ns);
        timings.push(`netns ${(performance.now() - started).toFixed(1)} ms`);
        const settled = await Promise.allSettled(plan.attachments.map((a) => this.add(dir, ns, a, timings)));
        const failed = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected").map((s) => s.reason as Error);
        if (failed.length > 0) {
          const kind = failed.every((e) => e instanceof NetworkError && e.kind === "invalid") ? "invalid" : "internal";
          throw new NetworkError(kind, failed.map((e) => e.message).join("; "));
        }
        const results = settled.map((s) => (s as PromiseFulfilledResult<CniResult>).value);
        const joined = this.writeFiles(dir, ns, plan, results);
        this.attached.set(plan.key, { joined, statuses: plan.attachments.map((a, i) => statusOf(a, results[i]!)) });
        log.info(`container ${plan.key}: CNI networks attached in ${(performance.now() - started).toFixed(1)} ms (${timings.join("; ")})`);
        return joined;
      } catch (err) {
        try {
          await this.detachNow(plan.key, false);
        } catch (cleanup) {
          log.error(`container ${plan.key}: cleaning up after a failed network attach: ${(cleanup as Error).message}`);
        }
        if (err instanceof NetworkError) throw err;
        throw new NetworkError("internal", `container ${plan.key}: ${(err as Error).message}`);
      }
    });
  }

  /** ADD of one network: network.conf first (DEL needs it even if we die now), the chain, then the result. */
  private async add(dir: string, ns: string, a: Attachment, timings: string[]): Promise<CniResult> {
    const o = this.options!;
    const netDir = join(dir, a.network);
    mkdirSync(join(netDir, a.ifName), { recursive: true, mode: 0o700 });
    writeStateFile(join(netDir, "network.conf"), JSON.stringify(a));
    let prev: Record<string, unknown> | undefined;
    let result: CniResult | undefined;
    const took: string[] = [];
    for (const p of a.conf.plugins) {
      const t0 = performance.now();
      const what = `The CNI plugin '${p.type}' failed to attach container ${a.cniId} to CNI network '${a.network}'`;
      const binary = findPlugin(p.type, o.pluginDirs);
      if (!binary) throw new NetworkError("internal", `${what}: it is no longer in ${o.pluginDirs.join(":")}`);
      const out = await invokePlugin({
        command: "ADD",
        binary,
        cniPath: o.pluginDirs,
        containerId: a.cniId,
        netns: ns,
        ifName: a.ifName,
        stdin: JSON.stringify(pluginStdin(a, p, prev)),
        timeoutMs: PLUGIN_TIMEOUT_MS,
        what,
      }).catch((err: Error) => {
        throw new NetworkError("internal", err.message);
      });
      try {
        const parsed = parseResult(out, `The CNI plugin '${p.type}' (network '${a.network}')`);
        prev = parsed.raw;
        result = parsed.result;
      } catch (err) {
        throw new NetworkError("internal", (err as Error).message);
      }
      took.push(`${p.type} ${(performance.now() - t0).toFixed(1)} ms`);
    }
    timings.push(`${a.network}: ${took.join(", ")}`);
    writeStateFile(join(netDir, a.ifName, "network.info"), JSON.stringify(prev));
    const wanted = a.capabilityArgs.ips ?? [];
    const given = result!.ips.map((ip) => addressOf(ip.address));
    const missed = wanted.filter((ip) => !given.includes(ip));
    if (missed.length > 0) {
      throw new NetworkError(
        "invalid",
        `CNI network '${a.network}' did not assign the requested address ${missed.join(", ")} (it gave ${given.join(", ") || "none"}): ` +
          "its plugins must honour the 'ips' capability or Mesos' network_info",
      );
    }
    return result!;
  }

  /** hosts (localhost and the first IPv4 as the hostname, as Mesos writes it), hostname, resolv.conf from the results' DNS. */
  private writeFiles(dir: string, ns: string, plan: NetworkPlan, results: CniResult[]): Joined {
    const hosts = join(dir, "hosts");
    const hostname = join(dir, "hostname");
    const first = results.flatMap((r) => r.ips.filter((ip) => ip.version === 4)).at(0);
    writeStateFile(hosts, `127.0.0.1 localhost\n${first ? `${addressOf(first.address)} ${plan.hostname}\n` : ""}`);
    writeStateFile(hostname, `${plan.hostname}\n`);
    // Merged in network order as Mesos merges them: lists add up, a later domain wins.
    const nameservers = results.flatMap((r) => r.dns.nameservers ?? []);
    let resolv: string | undefined = HOST_RESOLV;
    if (nameservers.length > 0) {
      const domain = results
        .map((r) => r.dns.domain)
        .filter((d) => d !== undefined)
        .at(-1);
      const search = results.flatMap((r) => r.dns.search ?? []);
      const options = results.flatMap((r) => r.dns.options ?? []);
      resolv = join(dir, "resolv.conf");
      writeStateFile(
        resolv,
        [
          ...(domain ? [`domain ${domain}`] : []),
          ...(search.length ? [`search ${search.join(" ")}`] : []),
          ...(options.length ? [`options ${options.join(" ")}`] : []),
          ...nameservers.map((n) => `nameserver ${n}`),
          "",
        ].join("\n"),
      );
    } else if (!existsSync(HOST_RESOLV)) {
      resolv = undefined;
    }
    return { netns: ns, etc: { hosts, hostname, ...(resolv ? { resolv } : {}) } };
  }

  /** What a nested container of top-level container `rootKey` joins; undefined: the host network. */
  joinedBy(rootKey: string): Joined | undefined {
    return this.attached.get(rootKey)?.joined;
  }

  /** ContainerStatus.network_infos of a container (a nested one reports its root's); undefined: host network. */
  status(key: string): NetworkStatus[] | undefined {
    const entry = this.attached.get(key.split(".")[0]!);
    return entry && entry.statuses.length > 0 ? entry.statuses : undefined;
  }

  /** DEL of every network of `key`, then the namespace and files go. Idempotent; throws if a plugin failed (state kept for a retry). */
  detach(key: string): Promise<void> {
    if (!this.options || key.includes(".")) return Promise.resolve();
    return this.serial(key, () => this.detachNow(key, false));
  }

  private async detachNow(key: string, waitForPlugins: boolean): Promise<void> {
    const dir = this.dir(key);
    if (!existsSync(dir)) {
      this.forget(key);
      return;
    }
    const ns = join(dir, "ns");
    // Without CNI_NETNS the bridge plugin cannot find the addresses whose masquerade rules to remove.
    const netns = isNetns(ns) ? ns : undefined;
    const networks = readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    // Networks in parallel, as they were added; all of them even if one fails.
    const errors = (await Promise.all(networks.map((network) => this.del(key, join(dir, network), netns, waitForPlugins)))).flat();
    if (errors.length > 0) throw new NetworkError("internal", `container ${key}: ${errors.join("; ")}`);
    releaseNetns(ns);
    rmSync(dir, { recursive: true, force: true });
    this.forget(key);
  }

  /** DEL of one network (the chain in reverse); the errors, empty if it is gone. */
  private async del(key: string, netDir: string, netns: string | undefined, waitForPlugins: boolean): Promise<string[]> {
    const o = this.options!;
    const errors: string[] = [];
    let a: Attachment;
    try {
      a = JSON.parse(readFileSync(join(netDir, "network.conf"), "utf8")) as Attachment;
      if (a.version !== 1 || !Array.isArray(a.conf?.plugins)) throw new Error("not a network.conf this version of ucr wrote");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        log.error(
          `container ${key}: ${join(netDir, "network.conf")} is unreadable (${(err as Error).message}); its network cannot be DELeted`,
        );
      rmSync(netDir, { recursive: true, force: true });
      return [];
    }
    if (waitForPlugins) await pluginsGone(a.cniId, PLUGIN_TIMEOUT_MS);
    let prev: Record<string, unknown> | undefined;
    try {
      prev = JSON.parse(readFileSync(join(netDir, a.ifName, "network.info"), "utf8")) as Record<string, unknown>;
    } catch {
      prev = undefined; // ADD did not finish: DEL without a prevResult, as libcni does
    }
    // Reverse order, each with the final ADD result (0.4.0+: 0.3.x plugins do not take it on DEL).
    for (const p of [...a.conf.plugins].reverse()) {
      const what = `The CNI plugin '${p.type}' failed to detach container ${a.cniId} from CNI network '${a.network}'`;
      const binary = findPlugin(p.type, o.pluginDirs);
      if (!binary) {
        errors.push(`${what}: it is no longer in ${o.pluginDirs.join(":")}`);
        continue;
      }
      try {
        await invokePlugin({
          command: "DEL",
          binary,
          cniPath: o.pluginDirs,
          containerId: a.cniId,
          ...(netns ? { netns } : {}),
          ifName: a.ifName,
          stdin: JSON.stringify(pluginStdin(a, p, versionAtLeast(a.conf.cniVersion, "0.4.0") ? prev : undefined)),
          timeoutMs: PLUGIN_TIMEOUT_MS,
          what,
        });
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    if (errors.length === 0) rmSync(netDir, { recursive: true, force: true });
    return errors;
  }

  private forget(key: string): void {
    this.attached.delete(key);
    this.ports.release(key);
  }

  /**
   * After an agent restart: containers still running keep their networks (status and host
   * ports come back from the files); every other directory is DELeted: containers that
   * exited meanwhile, and launches the agent died in (waiting first for any plugin of
   * theirs still running).
   */
  async recover(running: (key: string) => boolean): Promise<{ kept: number; cleaned: number; failed: number }> {
    const out = { kept: 0, cleaned: 0, failed: 0 };
    if (!this.options || !existsSync(this.options.rootDir)) return out;
    const keys = readdirSync(this.options.rootDir);
    const stale: string[] = [];
    for (const key of keys) {
      const dir = this.dir(key);
      const attachments = readAttachments(dir);
      try {
        this.ports.take(
          key,
          attachments.flatMap((a) => a.capabilityArgs.portMappings ?? []),
        );
      } catch (err) {
        log.error(`container ${key}: its host ports after restart: ${(err as Error).message}`);
      }
      const ns = join(dir, "ns");
      if (running(key) && isNetns(ns)) {
        const statuses: NetworkStatus[] = [];
        for (const a of attachments) {
          try {
            statuses.push(
              statusOf(a, parseResult(readFileSync(join(dir, a.network, a.ifName, "network.info"), "utf8"), "network.info").result),
            );
          } catch {
            // ADD never finished, so the container never ran: it cannot be running
          }
        }
        const resolv = existsSync(join(dir, "resolv.conf")) ? join(dir, "resolv.conf") : existsSync(HOST_RESOLV) ? HOST_RESOLV : undefined;
        const joined: Joined = {
          netns: ns,
          etc: { hosts: join(dir, "hosts"), hostname: join(dir, "hostname"), ...(resolv ? { resolv } : {}) },
        };
        this.attached.set(key, { joined, statuses });
        out.kept++;
      } else {
        stale.push(key);
      }
    }
    await Promise.all(
      stale.map((key) =>
        this.serial(key, () => this.detachNow(key, true)).then(
          () => {
            out.cleaned++;
            log.info(`container ${key}: its CNI networks were detached after the agent restart`);
          },
          (err: Error) => {
            out.failed++;
            log.error(`${err.message} (kept for a retry at the next start or REMOVE)`);
          },
        ),
      ),
    );
    return out;
  }

  /** Agent shutdown: the root's shared mount goes if no container holds a namespace under it. */
  shutdown(): void {
    if (!this.options) return;
    try {
      unmountSharedMount(this.options.rootDir);
    } catch (err) {
      log.warn(`CNI root ${this.options.rootDir}: cannot unmount: ${(err as Error).message}`);
    }
  }
}

/** A plugin's stdin: its object with the network's name and version, its runtimeConfig, Mesos' args, the prevResult. */
function pluginStdin(a: Attachment, p: PluginConf, prev: Record<string, unknown> | undefined): Record<string, unknown> {
  const { capabilities, ...plugin } = p;
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, value] of Object.entries(a.capabilityArgs)) {
    if (capabilities?.[cap] === true) runtimeConfig[cap] = value;
  }
  return {
    ...plugin,
    ...(a.conf.versionGiven ? { cniVersion: a.conf.cniVersion } : {}),
    name: a.conf.name,
    args: { ...(p.args ?? {}), "org.apache.mesos": { network_info: a.networkInfo } },
    ...(Object.keys(runtimeConfig).length > 0 ? { runtimeConfig } : {}),
    ...(prev ? { prevResult: prev } : {}),
  };
}

/** The request's NetworkInfo with the container's addresses (without prefix length), as Mesos reports it. */
function statusOf(a: Attachment, result: CniResult): NetworkStatus {
  const { ip_addresses: _requested, ...info } = a.networkInfo;
  const mine = result.ips.filter((ip) => ip.interface === undefined || result.interfaces[ip.interface]?.sandbox !== undefined);
  return {
    ...info,
    ip_addresses: mine.map((ip) => ({ protocol: ip.version === 6 ? "IPv6" : "IPv4", ip_address: addressOf(ip.address) })),
  };
}

function readAttachments(dir: string): Attachment[] {
  const out: Attachment[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    try {
      out.push(JSON.parse(readFileSync(join(dir, name, "network.conf"), "utf8")) as Attachment);
    } catch {
      // not a network dir, or ADD never began
    }
  }
  return out.sort((x, y) => x.ifName.localeCompare(y.ifName, undefined, { numeric: true }));
}

/** Waits until no plugin process of CNI container `cniId` runs (one an agent killed mid-ADD left running). */
async function pluginsGone(cniId: string, timeoutMs: number): Promise<void> {
  const needle = `\0CNI_CONTAINERID=${cniId}\0`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = readdirSync("/proc").filter((p) => {
      if (!/^\d+$/.test(p) || Number(p) === process.pid) return false;
      try {
        const env = `\0${readFileSync(`/proc/${p}/environ`, "latin1")}`;
        return env.includes(needle) && env.includes("\0CNI_COMMAND=");
      } catch {
        return false;
      }
    });
    if (running.length === 0 || Date.now() > deadline) return;
    await Bun.sleep(50);
  }
}
