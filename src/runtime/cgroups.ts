// Resource limits through cgroups, on v1, v2, or the hybrid layout (v1 controllers with a
// cgroup2 mount at /sys/fs/cgroup/unified, which this machine has and crun refuses):
// cpus -> cpu shares/weight (and a CFS quota with --cgroups_enable_cfs), mem -> a memory
// limit, a pids limit for every container, and the devices all containers may use (one
// cgroup under --cgroups_root, see devices.ts); usage and OOM kills read back for
// WAIT_CONTAINER and GET_CONTAINERS; OOM events
// watched (v1: eventfd on memory.oom_control; v2: inotify on memory.events); a container's
// processes killed and its directories removed, and those of containers nobody knows found.
// (Over 400 lines: v1, v2 and the hybrid layout side by side for every controller ucr uses.)
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmdirSync, statSync, watch, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { eventfd } from "../ffi/eventfd.ts";
import { applyDeviceRulesV1, applyDeviceRulesV2, type DeviceRule } from "./devices.ts";
import type { CgroupJoin, CgroupMounts } from "./spec.ts";

export type CgroupLayout =
  | { kind: "v2"; root: string }
  /** v1: the hierarchies ucr uses; pids and devices where the kernel has them. */
  | { kind: "v1"; cpu: string; cpuacct: string; memory: string; pids?: string; devices?: string }
  | { kind: "none"; why: string };

const ROOT = "/sys/fs/cgroup";

/** Which cgroup layout this machine has (v2 wins only when it is the unified hierarchy). */
export function detectCgroups(): CgroupLayout {
  if (existsSync(join(ROOT, "cgroup.controllers"))) {
    const controllers = readFileSync(join(ROOT, "cgroup.controllers"), "utf8");
    if (!/\bmemory\b/.test(controllers) || !/\bcpu\b/.test(controllers)) {
      return { kind: "none", why: "the cgroup v2 hierarchy lacks the cpu or memory controller" };
    }
    return { kind: "v2", root: ROOT };
  }
  const v1 = (name: string) => [join(ROOT, name), join(ROOT, "cpu,cpuacct")].find((p) => existsSync(join(p, "cgroup.procs")));
  const cpu = v1("cpu");
  const cpuacct = v1("cpuacct");
  const memory = existsSync(join(ROOT, "memory", "cgroup.procs")) ? join(ROOT, "memory") : undefined;
  const pids = existsSync(join(ROOT, "pids", "cgroup.procs")) ? join(ROOT, "pids") : undefined;
  const devices = existsSync(join(ROOT, "devices", "devices.allow")) ? join(ROOT, "devices") : undefined;
  if (cpu && cpuacct && memory) return { kind: "v1", cpu, cpuacct, memory, ...(pids ? { pids } : {}), ...(devices ? { devices } : {}) };
  return { kind: "none", why: "no cgroup v1 cpu, cpuacct and memory hierarchies and no cgroup v2 hierarchy under /sys/fs/cgroup" };
}

export interface Limits {
  cpus?: number;
  memBytes?: number;
  cfs: boolean;
  /** pids.max: at most this many processes and threads at once (--default_container_pids_limit). */
  pids?: number | "max";
}

const CFS_PERIOD_US = 100_000;
const MIN_SHARES = 2;

/** The cgroup(s) of one container; `dirs` are what to add its process to and remove at the end. */
export class ContainerCgroup {
  constructor(
    readonly layout: CgroupLayout,
    readonly dirs: string[],
  ) {}

  /**
   * How the init stage joins, right before exec. v1: 0 to each `tasks` file, which moves
   * only the calling thread (the one that execs next; exec leaves it alone) and takes no
   * global lock; moving a whole process (cgroup.procs) takes the kernel's threadgroup lock,
   * whose first writer in a while waits for an RCU grace period (~13 ms here). v2 has no
   * `tasks`: the pid to cgroup.procs.
   */
  join(shared: SharedCgroups = {}): CgroupJoin {
    return this.layout.kind === "v1"
      ? { files: [...this.dirs, ...(shared.devices ? [shared.devices] : [])].map((d) => join(d, "tasks")), move: "thread" }
      : { files: this.dirs.map((d) => join(d, "cgroup.procs")), move: "process" };
  }

  /** How the container sees these cgroups at /sys/fs/cgroup (see CgroupMounts). */
  mounts(shared: SharedCgroups = {}): CgroupMounts | undefined {
    const layout = this.layout;
    if (layout.kind === "v2") return this.dirs[0] === undefined ? undefined : { kind: "v2", binds: [{ name: "", source: this.dirs[0] }] };
    if (layout.kind !== "v1") return undefined;
    const binds: CgroupMounts["binds"] = [];
    const links: NonNullable<CgroupMounts["links"]> = [];
    for (const kind of ["cpu", "cpuacct", "memory", "pids", "devices"] as const) {
      const hierarchy = layout[kind];
      if (hierarchy === undefined) continue;
      const name = relative(ROOT, hierarchy); // "cpu", or "cpu,cpuacct" where they are co-mounted
      const source = kind === "devices" ? shared.devices : this.dirs.find((d) => d.startsWith(`${hierarchy}/`));
      if (!source || name.includes("/") || name.startsWith(".")) continue;
      if (!binds.some((b) => b.name === name)) binds.push({ name, source });
      if (name !== kind) links.push({ name: kind, target: name });
    }
    return binds.length === 0 ? undefined : { kind: "v1", binds, ...(links.length > 0 ? { links } : {}) };
  }

  /** Where the cgroup of container `name` under `parent` (--cgroups_root) is, in each hierarchy. */
  static dirsFor(layout: CgroupLayout, parent: string, name: string): string[] {
    if (layout.kind === "none") return [];
    if (layout.kind === "v2") return [join(layout.root, parent, name)];
    const pids = layout.pids ? [join(layout.pids, parent, name)] : [];
    return [...new Set([join(layout.cpu, parent, name), join(layout.cpuacct, parent, name), join(layout.memory, parent, name), ...pids])];
  }

  /**
   * Creates the cgroup and sets its limits. A failure (a limit the kernel refuses) removes
   * what was created before it is reported: a failed launch leaves no cgroup behind.
   */
  static create(layout: CgroupLayout, parent: string, name: string, limits: Limits): ContainerCgroup | undefined {
    if (layout.kind === "none") return undefined;
    const dirs = ContainerCgroup.dirsFor(layout, parent, name);
    try {
      return ContainerCgroup.createIn(layout, parent, name, limits);
    } catch (err) {
      for (const d of dirs) {
        try {
          rmdirSync(d);
        } catch {
          // never created, or already gone
        }
      }
      throw err;
    }
  }

  private static createIn(layout: CgroupLayout, parent: string, name: string, limits: Limits): ContainerCgroup | undefined {
    if (layout.kind === "none") return undefined;
    if (layout.kind === "v2") {
      const base = join(layout.root, parent);
      mkdirSync(base, { recursive: true });
      // Controllers must be enabled for the children of every level down to ours.
      enable(layout.root);
      enable(base);
      const dir = join(base, name);
      mkdirSync(dir, { recursive: true });
      if (limits.pids !== undefined && existsSync(join(dir, "pids.max"))) writeFileSync(join(dir, "pids.max"), String(limits.pids));
      if (limits.cpus !== undefined) {
        const shares = Math.max(MIN_SHARES, Math.round(limits.cpus * 1024));
        const weight = Math.min(10000, Math.max(1, 1 + Math.floor(((shares - 2) * 9999) / 262142)));
        writeFileSync(join(dir, "cpu.weight"), String(weight));
        if (limits.cfs) writeFileSync(join(dir, "cpu.max"), `${Math.max(1000, Math.round(limits.cpus * CFS_PERIOD_US))} ${CFS_PERIOD_US}`);
      }
      if (limits.memBytes !== undefined) {
        writeFileSync(join(dir, "memory.max"), String(limits.memBytes));
        if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
      }
      return new ContainerCgroup(layout, [dir]);
    }
    const cpu = join(layout.cpu, parent, name);
    const cpuacct = join(layout.cpuacct, parent, name);
    const memory = join(layout.memory, parent, name);
    const pids = layout.pids ? join(layout.pids, parent, name) : undefined;
    for (const d of new Set([cpu, cpuacct, memory, ...(pids ? [pids] : [])])) mkdirSync(d, { recursive: true });
    if (pids && limits.pids !== undefined) writeFileSync(join(pids, "pids.max"), String(limits.pids));
    if (limits.cpus !== undefined) {
      writeFileSync(join(cpu, "cpu.shares"), String(Math.max(MIN_SHARES, Math.round(limits.cpus * 1024))));
      if (limits.cfs) {
        writeFileSync(join(cpu, "cpu.cfs_period_us"), String(CFS_PERIOD_US));
        writeFileSync(join(cpu, "cpu.cfs_quota_us"), String(Math.max(1000, Math.round(limits.cpus * CFS_PERIOD_US))));
      }
    }
    if (limits.memBytes !== undefined) {
      writeFileSync(join(memory, "memory.limit_in_bytes"), String(limits.memBytes));
      // Without swap accounting the limit could be dodged by swapping.
      if (existsSync(join(memory, "memory.memsw.limit_in_bytes"))) {
        try {
          writeFileSync(join(memory, "memory.memsw.limit_in_bytes"), String(limits.memBytes));
        } catch {
          // swap accounting off: the memory limit alone applies
        }
      }
    }
    return new ContainerCgroup(layout, [...new Set([cpu, cpuacct, memory, ...(pids ? [pids] : [])])]);
  }

  /** Re-attach to the cgroup dirs of a recovered container. */
  static existing(layout: CgroupLayout, dirs: string[]): ContainerCgroup {
    return new ContainerCgroup(layout, dirs);
  }

  private file(kind: "memory" | "cpu" | "cpuacct", name: string): string | undefined {
    const dir =
      this.layout.kind === "v2" ? this.dirs[0] : this.dirs.find((d) => d.startsWith(this.layout.kind === "v1" ? this.layout[kind] : ""));
    if (!dir) return undefined;
    try {
      return readFileSync(join(dir, name), "utf8");
    } catch {
      return undefined;
    }
  }

  /** How many times the kernel's OOM killer killed a process in here. */
  oomKills(): number {
    const text = this.layout.kind === "v2" ? this.file("memory", "memory.events") : this.file("memory", "memory.oom_control");
    const m = /^oom_kill (\d+)/m.exec(text ?? "");
    return m ? Number(m[1]) : 0;
  }

  /** Mesos' ResourceStatistics fields that cgroups give us. */
  statistics(): Record<string, number> {
    const stats: Record<string, number> = {};
    if (this.layout.kind === "v2") {
      const cpu = this.file("cpu", "cpu.stat") ?? "";
      const user = /^user_usec (\d+)/m.exec(cpu);
      const system = /^system_usec (\d+)/m.exec(cpu);
      if (user) stats.cpus_user_time_secs = Number(user[1]) / 1e6;
      if (system) stats.cpus_system_time_secs = Number(system[1]) / 1e6;
      const current = this.file("memory", "memory.current");
      if (current) stats.mem_total_bytes = Number(current);
      const max = this.file("memory", "memory.max")?.trim();
      if (max && max !== "max") stats.mem_limit_bytes = Number(max);
      const rss = /^anon (\d+)/m.exec(this.file("memory", "memory.stat") ?? "");
      if (rss) stats.mem_rss_bytes = Number(rss[1]);
    } else if (this.layout.kind === "v1") {
      const acct = this.file("cpuacct", "cpuacct.stat") ?? "";
      const hz = 100; // USER_HZ
      const user = /^user (\d+)/m.exec(acct);
      const system = /^system (\d+)/m.exec(acct);
      if (user) stats.cpus_user_time_secs = Number(user[1]) / hz;
      if (system) stats.cpus_system_time_secs = Number(system[1]) / hz;
      const usage = this.file("memory", "memory.usage_in_bytes");
      if (usage) stats.mem_total_bytes = Number(usage);
      const limit = this.file("memory", "memory.limit_in_bytes");
      if (limit && Number(limit) < 2 ** 60) stats.mem_limit_bytes = Number(limit);
      const rss = /^total_rss (\d+)/m.exec(this.file("memory", "memory.stat") ?? "");
      if (rss) stats.mem_rss_bytes = Number(rss[1]);
    }
    return stats;
  }

  /** Its directory in the memory hierarchy (v1), or its one directory (v2). */
  private memoryDir(): string | undefined {
    const layout = this.layout;
    if (layout.kind === "none") return undefined;
    return layout.kind === "v2" ? this.dirs[0] : this.dirs.find((d) => d.startsWith(`${layout.memory}/`));
  }

  /** Is `pid` in this cgroup? */
  contains(pid: number): boolean {
    const mine = this.memoryDir();
    return mine !== undefined && cgroupProcs(mine).includes(pid);
  }

  /**
   * Calls `onOom` when the kernel's OOM killer acts in this cgroup (any process, not only
   * the workload's first one). Event-driven: v1 registers an eventfd for memory.oom_control
   * through cgroup.event_control and reads it on the event loop; v2 watches memory.events
   * with inotify (the kernel notifies a modify on each change). Returns the way to stop.
   * The caller checks oomKills() against its baseline: the v1 eventfd is also signalled
   * when the cgroup is removed.
   */
  watchOom(onOom: () => void): () => void {
    if (this.layout.kind === "v2") {
      const watcher = watch(join(this.dirs[0]!, "memory.events"), () => onOom());
      watcher.on("error", () => {});
      return () => watcher.close();
    }
    if (this.layout.kind !== "v1") return () => {};
    const memory = this.memoryDir();
    if (!memory) return () => {};
    const efd = eventfd();
    let stopped = false;
    let reader: ReturnType<ReadableStream<Uint8Array<ArrayBuffer>>["getReader"]>;
    try {
      const control = openSync(join(memory, "memory.oom_control"), "r");
      try {
        writeFileSync(join(memory, "cgroup.event_control"), `${efd} ${control}`);
      } finally {
        closeSync(control);
      }
      reader = Bun.file(efd).stream().getReader();
    } catch (err) {
      closeSync(efd);
      throw err;
    }
    void (async () => {
      for (;;) {
        let chunk;
        try {
          chunk = await reader!.read();
        } catch {
          return;
        }
        if (chunk.done || stopped) return;
        onOom();
      }
    })();
    return () => {
      if (stopped) return;
      stopped = true;
      // Cancelling leaves the descriptor open: close it after, and the kernel drops the
      // registration with it.
      void reader!
        .cancel()
        .catch(() => {})
        .finally(() => {
          try {
            closeSync(efd);
          } catch {
            // already closed
          }
        });
    };
  }

  /** Every process in any of this container's cgroup directories. */
  procs(): number[] {
    return [...new Set(this.dirs.flatMap((d) => cgroupProcs(d)))];
  }

  /**
   * Kills every process in the cgroup and removes its directories; true if they are gone.
   * v2 has cgroup.kill (5.14+); otherwise SIGKILL to each process listed, again until none
   * is left (a process may fork between the read and the kill), within `timeoutMs`.
   */
  async destroy(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pids = this.procs();
      if (pids.length === 0 && this.removeDirs()) return true;
      if (Date.now() > deadline) return false;
      if (this.layout.kind === "v2" && existsSync(join(this.dirs[0]!, "cgroup.kill"))) {
        try {
          writeFileSync(join(this.dirs[0]!, "cgroup.kill"), "1");
        } catch {
          // removed meanwhile
        }
      }
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      await Bun.sleep(pids.length === 0 ? 20 : 5);
    }
  }

  /** Removes the (empty) directories; false if one is still there (busy). */
  private removeDirs(): boolean {
    let all = true;
    for (const d of this.dirs) {
      try {
        rmdirSync(d);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") all = false;
      }
    }
    return all;
  }

  /**
   * The container cgroups under `parent` (--cgroups_root) that exist now, by name, with
   * their directories in every hierarchy: what recovery compares with the checkpoints.
   */
  static under(layout: CgroupLayout, parent: string): Map<string, ContainerCgroup> {
    const out = new Map<string, ContainerCgroup>();
    if (layout.kind === "none") return out;
    const v1 = (l: Extract<CgroupLayout, { kind: "v1" }>) => [l.cpu, l.cpuacct, l.memory, ...(l.pids ? [l.pids] : [])];
    const roots = layout.kind === "v2" ? [layout.root] : [...new Set(v1(layout))];
    for (const root of roots) {
      let names: string[];
      try {
        names = readdirSync(join(root, parent));
      } catch {
        continue;
      }
      for (const name of names) {
        try {
          if (!statSync(join(root, parent, name)).isDirectory()) continue;
        } catch {
          continue;
        }
        if (!out.has(name)) out.set(name, new ContainerCgroup(layout, ContainerCgroup.dirsFor(layout, parent, name)));
      }
    }
    return out;
  }
}

/** Cgroups all containers share (not removed with any of them): v1's devices cgroup under --cgroups_root. */
export interface SharedCgroups {
  devices?: string;
}

/**
 * Confines the devices of every container (cgroups/devices) under `parent` (--cgroups_root),
 * once at start-up: v1 through the devices cgroup `<devices>/<parent>`, which each container
 * joins; v2 through a device program on `<root>/<parent>`, inherited by each container's
 * cgroup below it. Returns the shared v1 cgroup, and how it was done for the log; throws
 * DeviceSetupError (or a string saying why it cannot be done here, for the caller to judge).
 */
export function confineDevices(
  layout: CgroupLayout,
  parent: string,
  rules: readonly DeviceRule[],
): { shared: SharedCgroups; how: string } | { why: string } {
  if (layout.kind === "v1") {
    if (!layout.devices) return { why: "this host's cgroup v1 has no devices hierarchy mounted (/sys/fs/cgroup/devices)" };
    const dir = join(layout.devices, parent);
    applyDeviceRulesV1(dir, rules);
    return { shared: { devices: dir }, how: `cgroup v1 ${join(dir, "devices.allow")}` };
  }
  if (layout.kind === "v2") {
    const dir = join(layout.root, parent);
    applyDeviceRulesV2(dir, rules);
    return { shared: {}, how: `a cgroup v2 device program on ${dir}` };
  }
  return { why: layout.why };
}

function cgroupProcs(dir: string): number[] {
  let text: string;
  try {
    text = readFileSync(join(dir, "cgroup.procs"), "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

function enable(dir: string): void {
  const want = ["cpu", "memory", "pids"].filter((c) => readFileSync(join(dir, "cgroup.controllers"), "utf8").includes(c));
  const on = readFileSync(join(dir, "cgroup.subtree_control"), "utf8");
  for (const c of want) if (!on.includes(c)) writeFileSync(join(dir, "cgroup.subtree_control"), `+${c}`);
}

/** The cgroup.procs file of the cgroup this process is in (memory hierarchy on v1). */
export function ownProcsFile(layout: CgroupLayout): string | undefined {
  if (layout.kind === "none") return undefined;
  try {
    const lines = readFileSync("/proc/self/cgroup", "utf8").split("\n");
    if (layout.kind === "v2") {
      const path = lines.find((l) => l.startsWith("0::"))?.slice(3);
      return path === undefined ? undefined : join(layout.root, path, "cgroup.procs");
    }
    const path = lines.map((l) => l.split(":")).find((f) => f[1]?.split(",").includes("memory"))?.[2];
    return path === undefined ? undefined : join(layout.memory, path, "cgroup.procs");
  } catch {
    return undefined;
  }
}
