// `--resources`: the agent's `ports` resource, in Mesos' text or JSON form. It is where a
// port mapping's `host_port: 0` is taken from (Mesos' default range [31000-32000]).

export type PortRange = { begin: number; end: number };

export const DEFAULT_PORTS: PortRange[] = [{ begin: 31000, end: 32000 }];

/**
 * `--resources` as Mesos writes it: `name(role):value;...` text (`ports:[31000-32000,40000-40100]`)
 * or a JSON array of Resource objects. ucr uses only `ports`: the others describe what a
 * Mesos agent offers to a master, and an agent of standalone containers has none.
 */
export function parseResourcesFlag(s: string): PortRange[] {
  const text = s.trim();
  if (text.startsWith("[")) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`is not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(json)) throw new Error("must be a JSON array of resources");
    const ranges: PortRange[] = [];
    for (const r of json as Array<Record<string, unknown>>) {
      if (r?.name !== "ports") throw new Error(`resource '${String(r?.name)}' is not used by ucr (only 'ports', the host ports it maps)`);
      const list = (r.ranges as { range?: unknown } | undefined)?.range;
      if (r.type !== "RANGES" || !Array.isArray(list)) throw new Error("resource 'ports' must be of type RANGES with ranges.range");
      for (const x of list as Array<{ begin?: unknown; end?: unknown }>) ranges.push(checkRange(Number(x?.begin), Number(x?.end)));
    }
    return normalise(ranges);
  }
  const ranges: PortRange[] = [];
  for (const part of text
    .split(";")
    .map((p) => p.trim())
    .filter((p) => p !== "")) {
    const m = /^([a-z_]+)(\([^)]*\))?:\s*(.*)$/i.exec(part);
    if (!m) throw new Error(`'${part}' is not name:value`);
    if (m[1] !== "ports") throw new Error(`resource '${m[1]}' is not used by ucr (only 'ports', the host ports it maps)`);
    const body = /^\[(.*)\]$/.exec(m[3]!.trim());
    if (!body) throw new Error(`ports '${m[3]}' must be ranges like [31000-32000]`);
    for (const r of body[1]!
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "")) {
      const b = /^(\d+)-(\d+)$/.exec(r);
      if (!b) throw new Error(`'${r}' is not a port range begin-end`);
      ranges.push(checkRange(Number(b[1]), Number(b[2])));
    }
  }
  if (ranges.length === 0) throw new Error("names no ports");
  return normalise(ranges);
}

function checkRange(begin: number, end: number): PortRange {
  if (!Number.isInteger(begin) || !Number.isInteger(end) || begin < 1 || end > 65535 || begin > end) {
    throw new Error(`port range ${begin}-${end} is not within 1-65535 with begin <= end`);
  }
  return { begin, end };
}

function normalise(ranges: PortRange[]): PortRange[] {
  return [...ranges].sort((a, b) => a.begin - b.begin);
}

export function formatRanges(ranges: readonly PortRange[]): string {
  return `ports:[${ranges.map((r) => `${r.begin}-${r.end}`).join(",")}]`;
}
