// Host state around CNI tests and benches: test networks on bridges of their own with free
// subnets, what the plugins leave on the host (iptables, veths, leases, nsfs mounts), and
// putting back what only the plugins changed (ip_forward, portmap's shared chains).
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCommand } from "./command.ts";

const CNI_PLUGINS = "/usr/lib/cni";

/** Why CNI tests cannot run here, or undefined when they can. */
export function cniUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, iptables)";
  for (const p of ["bridge", "host-local", "portmap"]) {
    if (!existsSync(join(CNI_PLUGINS, p))) return `needs the CNI plugin ${p} in ${CNI_PLUGINS} (Debian: containernetworking-plugins)`;
  }
  for (const t of ["unshare", "ip", "iptables-save"]) if (!Bun.which(t)) return `needs ${t} in PATH`;
  return undefined;
}

/** A /24 in 10.200.0.0-10.254.255.0 that no route or address of this host touches. */
export async function freeSubnet(): Promise<{ subnet: string; gateway: string; prefix: string }> {
  const routes = (await runCommand(["ip", "-4", "route", "show", "table", "all"])).stdout + (await runCommand(["ip", "-4", "addr"])).stdout;
  for (let i = 0; i < 200; i++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 55)}.${Math.floor(Math.random() * 256)}`;
    if (!routes.includes(`${prefix}.`)) return { subnet: `${prefix}.0/24`, gateway: `${prefix}.1`, prefix };
  }
  throw new Error("no free 10.x.y.0/24 subnet on this host");
}

/** A bridge name nobody else uses: ucr + 6 hex + a tag letter (<= 15 characters). */
export function bridgeName(tag: string): string {
  return `ucr${Math.random().toString(16).slice(2, 8)}${tag}`;
}

/** iptables-save output as lines to compare: no comments, no packet counters. */
async function rules(tool: string): Promise<string[]> {
  if (!Bun.which(tool)) return [];
  const out = await runCommand([tool]);
  return out.stdout
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
}

export interface HostNetState {
  iptables: string[];
  ip6tables: string[];
}

export async function hostNetState(): Promise<HostNetState> {
  return { iptables: await rules("iptables-save"), ip6tables: await rules("ip6tables-save") };
}

/** Interfaces attached to `bridge` (the veths the bridge plugin made). */
export async function portsOf(bridge: string): Promise<string[]> {
  const out = await runCommand(["ip", "-o", "link", "show", "master", bridge]);
  return out.stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.split(":")[1]!.trim().split("@")[0]!);
}

/** Lease files host-local holds in `dataDir/network` (its lock and last_reserved_ip files are not leases). */
export function leases(dataDir: string, network: string): string[] {
  const dir = join(dataDir, network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip"));
}

/** nsfs mounts (held network namespaces) under `dir`. */
export function netnsMountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.includes(" - nsfs "))
    .map((l) => l.split(" ")[4]!)
    .filter((t) => t.startsWith(`${dir}/`));
}

export function ipForward(): string {
  return readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
}

export function setIpForward(value: string): void {
  if (ipForward() !== value) writeFileSync("/proc/sys/net/ipv4/ip_forward", `${value}\n`);
}

const HOSTPORT_CHAINS = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"];

/** Whether portmap's shared nat chains exist (they outlive every container: plugins 1.1.1 never remove them). */
export async function hostportChainsExist(): Promise<boolean> {
  return (await rules("iptables-save")).some((l) => l.startsWith(":CNI-HOSTPORT-DNAT "));
}

/**
 * Removes portmap's shared chains and their jumps, for a test that found none: only when no
 * container's chain (CNI-DN-*) still hangs off them, i.e. nobody else maps a port now.
 */
export async function removeHostportChains(): Promise<void> {
  for (const tool of ["iptables", "ip6tables"]) {
    const save = await rules(`${tool}-save`);
    if (!save.some((l) => l.startsWith(":CNI-HOSTPORT-DNAT ")) || save.some((l) => l.startsWith("-A CNI-HOSTPORT-DNAT "))) continue;
    for (const l of save.filter((x) => /^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-/.test(x))) {
      await runCommand([tool, "-w", "-t", "nat", "-D", ...splitRule(l.slice(3))]);
    }
    for (const c of HOSTPORT_CHAINS) await runCommand([tool, "-w", "-t", "nat", "-F", c]);
    for (const c of HOSTPORT_CHAINS) await runCommand([tool, "-w", "-t", "nat", "-X", c]);
  }
}

/** An iptables-save rule as argv (quoted comments kept whole). */
function splitRule(rule: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(rule); m; m = re.exec(rule)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!);
  return out;
}

export async function deleteLink(name: string): Promise<void> {
  await runCommand(["ip", "link", "del", name]);
}
