// What a CNI plugin prints: a result in the 0.3.0+ shape (interfaces, ips, routes, dns) or
// the legacy 0.1.0/0.2.0 one (ip4, ip6, dns) Mesos parses, or an error object. Both are
// checked and turned into one form; the raw JSON is kept as the next plugin's prevResult.
import { isIP } from "node:net";
import * as v from "valibot";
import { errorOfKind } from "../errors.ts";

interface CniIp {
  /** Address with prefix length, e.g. 10.1.2.3/24. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`, when the plugin says which one. */
  interface?: number;
  version: 4 | 6;
}

interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips: CniIp[];
  routes: Array<{ dst: string; gw?: string }>;
  dns: CniDns;
}

class CniResultError extends errorOfKind("internal") {}

/** A word in resolv.conf: nothing that could start another line or option. */
const Word = v.pipe(v.string(), v.maxLength(253), v.regex(/^[^\s#;]+$/, "must be one word without spaces or comment characters"));
const Ip = v.pipe(
  v.string(),
  v.check((s) => isIP(s) !== 0, "is not an IP address"),
);
const Cidr = v.pipe(v.string(), v.check(isCidr, "is not an address with a prefix length (CIDR)"));

const DnsSchema = v.optional(
  v.looseObject({
    nameservers: v.optional(v.pipe(v.array(Ip), v.maxLength(64))),
    domain: v.optional(Word),
    search: v.optional(v.pipe(v.array(Word), v.maxLength(64))),
    options: v.optional(v.pipe(v.array(Word), v.maxLength(64))),
  }),
  {},
);
const RouteSchema = v.looseObject({ dst: Cidr, gw: v.optional(Ip) });
const Routes = v.optional(v.pipe(v.array(RouteSchema), v.maxLength(1024)), []);

const CurrentSchema = v.looseObject({
  cniVersion: v.optional(v.string()),
  interfaces: v.optional(
    v.pipe(
      v.array(v.looseObject({ name: v.pipe(v.string(), v.maxLength(64)), mac: v.optional(v.string()), sandbox: v.optional(v.string()) })),
      v.maxLength(1024),
    ),
    [],
  ),
  ips: v.optional(
    v.pipe(
      v.array(
        v.looseObject({
          address: Cidr,
          gateway: v.optional(Ip),
          interface: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
          version: v.optional(v.picklist(["4", "6"])),
        }),
      ),
      v.maxLength(1024),
    ),
    [],
  ),
  routes: Routes,
  dns: DnsSchema,
});

const LegacyIpSchema = v.optional(v.looseObject({ ip: Cidr, gateway: v.optional(Ip), routes: Routes }));
const LegacySchema = v.looseObject({
  cniVersion: v.optional(v.string()),
  ip4: LegacyIpSchema,
  ip6: LegacyIpSchema,
  dns: DnsSchema,
});

/** Checks a plugin's stdout as a result; `what` names the plugin for errors. */
export function parseResult(stdout: string, what: string): { raw: Record<string, unknown>; result: CniResult } {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new CniResultError(`${what} printed a result that is not JSON: ${excerpt(stdout)}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new CniResultError(`${what} printed a result that is not a JSON object`);
  const raw = json as Record<string, unknown>;
  const legacy =
    "ip4" in raw || "ip6" in raw || (!("ips" in raw) && !("interfaces" in raw) && /^0\.[12]\./.test(String(raw.cniVersion ?? "0.1.0")));
  if (legacy) {
    const parsed = v.safeParse(LegacySchema, raw);
    if (!parsed.success) throw new CniResultError(`${what} printed an invalid result: ${issueText(parsed.issues)}`);
    const r = parsed.output;
    const ips: CniIp[] = [];
    const routes: CniResult["routes"] = [];
    for (const [version, ip] of [
      [4, r.ip4],
      [6, r.ip6],
    ] as const) {
      if (!ip) continue;
      if (ipVersion(ip.ip) !== version)
        throw new CniResultError(`${what} printed an invalid result: ip${version}.ip ${ip.ip} is not IPv${version}`);
      ips.push({ address: ip.ip, ...(ip.gateway ? { gateway: ip.gateway } : {}), version });
      routes.push(...ip.routes.map((x) => ({ dst: x.dst, ...(x.gw ? { gw: x.gw } : {}) })));
    }
    return { raw, result: { cniVersion: r.cniVersion ?? "0.1.0", interfaces: [], ips, routes, dns: dnsOf(r.dns) } };
  }
  const parsed = v.safeParse(CurrentSchema, raw);
  if (!parsed.success) throw new CniResultError(`${what} printed an invalid result: ${issueText(parsed.issues)}`);
  const r = parsed.output;
  for (const ip of r.ips) {
    if (ip.interface !== undefined && ip.interface >= r.interfaces.length) {
      throw new CniResultError(
        `${what} printed an invalid result: ip ${ip.address} names interface ${ip.interface} of ${r.interfaces.length}`,
      );
    }
  }
  return {
    raw,
    result: {
      cniVersion: r.cniVersion ?? "",
      interfaces: r.interfaces.map((i) => ({
        name: i.name,
        ...(i.mac ? { mac: i.mac } : {}),
        ...(i.sandbox ? { sandbox: i.sandbox } : {}),
      })),
      ips: r.ips.map((ip) => ({
        address: ip.address,
        ...(ip.gateway ? { gateway: ip.gateway } : {}),
        ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
        version: ipVersion(ip.address),
      })),
      routes: r.routes.map((x) => ({ dst: x.dst, ...(x.gw ? { gw: x.gw } : {}) })),
      dns: dnsOf(r.dns),
    },
  };
}

/** The error object a failed plugin printed (on stdout, as plugins 1.1.1 do, or stderr), as one line. */
export function pluginErrorText(stdout: string, stderr: string): string {
  for (const text of [stdout, stderr]) {
    try {
      const e = JSON.parse(text) as { code?: unknown; msg?: unknown; details?: unknown };
      if (e && typeof e === "object" && (e.msg !== undefined || e.code !== undefined)) {
        const details = typeof e.details === "string" && e.details !== "" ? `: ${e.details}` : "";
        return `${typeof e.code === "number" ? `[code ${e.code}] ` : ""}${String(e.msg ?? "")}${details}`.slice(0, 2000);
      }
    } catch {
      // not an error object
    }
  }
  const both = [stdout.trim() && `stdout: ${excerpt(stdout)}`, stderr.trim() && `stderr: ${excerpt(stderr)}`].filter(Boolean).join("; ");
  return both || "no output";
}

/** The address part of `10.1.2.3/24`. */
export function addressOf(cidr: string): string {
  return cidr.slice(0, cidr.lastIndexOf("/"));
}

function isCidr(s: string): boolean {
  const slash = s.lastIndexOf("/");
  if (slash < 0) return false;
  const version = isIP(s.slice(0, slash));
  const prefix = s.slice(slash + 1);
  if (version === 0 || !/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (version === 4 ? 32 : 128);
}

function ipVersion(cidr: string): 4 | 6 {
  return isIP(addressOf(cidr)) === 6 ? 6 : 4;
}

function dnsOf(d: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }): CniDns {
  return {
    ...(d.nameservers?.length ? { nameservers: d.nameservers } : {}),
    ...(d.domain ? { domain: d.domain } : {}),
    ...(d.search?.length ? { search: d.search } : {}),
    ...(d.options?.length ? { options: d.options } : {}),
  };
}

function issueText(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0]!;
  const path = (issue.path ?? []).map((p) => String(p.key)).join(".");
  return `${path ? `${path}: ` : ""}${issue.message}`;
}

function excerpt(s: string): string {
  const t = s.trim().replace(/\s+/g, " ");
  return t.length > 500 ? `${t.slice(0, 500)}…` : t;
}
