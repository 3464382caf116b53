// What the host allows a launch beyond its cgroups: a PRIVATE /dev/shm mounted for it (in the
// agent's mount namespace, where a nested container can bind it too), and its rlimits checked
// against the kernel's limits and the agent's own.
import { mkdirSync, readFileSync } from "node:fs";
import { internal, invalid, messageOf } from "../errors.ts";
import { MS_NODEV, MS_NOSUID, getRlimit, mount } from "../ffi/libc.ts";
import { log } from "../log.ts";
import type { RLimitInfo } from "../mesos/messages.ts";
import type { RlimitSpec } from "../runtime/spec.ts";
import { RLIM_INFINITY, rlimitsOf } from "./launch-rules.ts";

/** MS_STRICTATIME (linux/mount.h), as Mesos mounts a PRIVATE /dev/shm. */
const MS_STRICTATIME = 1 << 24;

/** A PRIVATE /dev/shm: a tmpfs at `dir` (in the container's runtime dir) in the agent's mount namespace. */
export function mountPrivateShm(dir: string, sizeBytes: number): void {
  try {
    mkdirSync(dir, { mode: 0o755 });
    mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, `mode=1777,size=${sizeBytes}`);
  } catch (err) {
    throw internal(`Failed to mount '${dir}': ${messageOf(err)}`, err);
  }
}

/** The kernel's most open files per process: a hard RLIMIT_NOFILE above it fails in setrlimit. */
const NR_OPEN = (() => {
  try {
    return BigInt(readFileSync("/proc/sys/fs/nr_open", "utf8").trim());
  } catch {
    return 1048576n;
  }
})();

const CAP_SYS_RESOURCE = 24;

/** Whether this agent (and so the init stage it starts) may raise a hard rlimit: CAP_SYS_RESOURCE. */
const CAN_RAISE_RLIMITS = (() => {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  return ((BigInt(`0x${hex}`) >> BigInt(CAP_SYS_RESOURCE)) & 1n) === 1n;
})();

/**
 * posix/rlimits for a launch, as the init stage sets them. A hard limit above the agent's own
 * is more than the container would otherwise get: logged as a grant, with the container ID.
 */
export function rlimitsFor(info: RLimitInfo, key: string): RlimitSpec[] {
  return rlimitsOf(info).map((r) => {
    if (r.type === "RLMT_NOFILE" && r.hard > NR_OPEN) {
      const hard = r.hard === RLIM_INFINITY ? "unlimited" : r.hard;
      throw invalid(
        `container.rlimit_info: RLMT_NOFILE ${hard} is above this kernel's most open files per process (fs.nr_open = ${NR_OPEN})`,
      );
    }
    const own = getRlimit(r.resource);
    if (r.hard > own.hard) {
      const show = (n: bigint) => (n === RLIM_INFINITY ? "unlimited" : String(n));
      if (!CAN_RAISE_RLIMITS) {
        throw invalid(
          `container.rlimit_info: ${r.type} hard limit ${show(r.hard)} is above the agent's own (${show(own.hard)}), ` +
            "and this agent does not hold CAP_SYS_RESOURCE to raise it",
        );
      }
      const given = `${r.type} ${show(r.soft)}/${show(r.hard)}`;
      log.warn(`privilege: container ${key} is granted ${given}, above the agent's own hard limit ${show(own.hard)}`);
    }
    return { name: r.type, resource: r.resource, soft: String(r.soft), hard: String(r.hard) };
  });
}
