// Host ports for port mappings: the agent's `ports` resource (--resources, Mesos' default
// [31000-32000]) is where `host_port: 0` is taken from, and no two containers may map the
// same host port and protocol.
import { DEFAULT_PORTS, type PortRange, formatRanges } from "../config/resources.ts";

export { DEFAULT_PORTS, type PortRange };

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
}

/** Which container holds which host port, per protocol; taken at launch and recovery, given back at DEL. */
export class HostPorts {
  private readonly used = new Map<string, string>();
  private next = 0;

  constructor(readonly ranges: readonly PortRange[]) {}

  /**
   * Takes the mappings' host ports for `owner`; `hostPort` 0 gets a free port of the range
   * (free for every protocol, so tcp and udp of one mapping stay together). All or nothing.
   */
  take(owner: string, mappings: readonly PortMapping[]): PortMapping[] {
    const taken: string[] = [];
    const out: PortMapping[] = [];
    try {
      for (const m of mappings) {
        let port = m.hostPort;
        if (port === 0) port = this.free();
        const key = `${m.protocol}/${port}`;
        const holder = this.used.get(key);
        if (holder !== undefined && holder !== owner)
          throw new Error(`host port ${port}/${m.protocol} is already mapped by container ${holder}`);
        if (holder === undefined) {
          this.used.set(key, owner);
          taken.push(key);
        }
        out.push({ ...m, hostPort: port });
      }
    } catch (err) {
      for (const k of taken) this.used.delete(k);
      throw err;
    }
    return out;
  }

  release(owner: string): void {
    for (const [k, o] of this.used) if (o === owner) this.used.delete(k);
  }

  private free(): number {
    const size = this.ranges.reduce((n, r) => n + r.end - r.begin + 1, 0);
    const busy = new Set([...this.used.keys()].map((k) => Number(k.slice(k.indexOf("/") + 1))));
    // Round robin from where the last one was taken: a port just given back is reused last.
    for (let i = 0; i < size; i++) {
      const port = this.nth((this.next + i) % size);
      if (!busy.has(port)) {
        this.next = (this.next + i + 1) % size;
        return port;
      }
    }
    throw new Error(`no free host port left in ${formatRanges(this.ranges)} (--resources)`);
  }

  private nth(i: number): number {
    for (const r of this.ranges) {
      const n = r.end - r.begin + 1;
      if (i < n) return r.begin + i;
      i -= n;
    }
    throw new Error("port index out of range");
  }
}
