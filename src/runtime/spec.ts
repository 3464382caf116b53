// What the agent tells the container init stage (`ucr __init`), as a JSON file in the
// container's runtime directory: everything already decided, nothing left to look up.
import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { isCompiled } from "../util/compiled.ts";

export interface RootfsSpec {
  backend: "overlay" | "copy" | "bind";
  /** The mount point that becomes `/`. */
  target: string;
  /** overlay: layer trees, base first; upper and work dirs of this container. */
  lowers?: string[];
  upper?: string;
  work?: string;
  /** copy and bind: the tree to bind onto the target. */
  source?: string;
  readonly?: boolean;
}

/** A mount the container gets besides its rootfs: a bind of a host path or an image's layers. */
export interface VolumeSpec {
  /** Absolute path as the container sees it. */
  target: string;
  readonly: boolean;
  /** A host file or directory to bind... */
  source?: string;
  /** ...or an image's layer trees (base first), mounted as a read-only overlay. */
  lowers?: string[];
  /**
   * A host path whose mount is shared: bound so that it stays in the host mount's peer group
   * (what the container mounts below it appears on the host). Absent: rslave, host to container.
   */
  propagation?: "bidirectional";
}

/**
 * How the workload is confined (decided by the agent; stage 2 only applies it). Capability
 * sets are kernel capability numbers.
 */
export interface ConfineSpec {
  bounding: number[];
  /** Effective and permitted for a root workload. */
  effective: number[];
  /** Also inheritable; kept across execve, which is how a non-root workload holds capabilities. */
  ambient: number[];
  /** The kernel's highest capability (cap_last_cap): every one above `bounding` is dropped. */
  lastCap: number;
  noNewPrivs: boolean;
  /** The compiled filter (struct sock_filter array, base64) and seccomp(2) flags; absent: unconfined. */
  seccomp?: { program: string; flags: number };
}

/** The kernel files stage 2 masks or makes read-only, as far as this kernel has them (runtime/mounts.ts). */
export interface KernelFiles {
  maskedProc: string[];
  maskedSys: string[];
  readonlyProc: string[];
}

/** An rlimit to set before exec (posix/rlimits): values as decimal strings (64 bits; 2^64-1 is unlimited). */
export interface RlimitSpec {
  /** RLMT_NOFILE... for messages. */
  name: string;
  /** The kernel's RLIMIT_* number. */
  resource: number;
  soft: string;
  hard: string;
}

/**
 * What the container sees at /sys/fs/cgroup: its own cgroups, read-only, as Mesos' cgroups
 * isolator and runc mount them (no cgroup namespace: /proc/self/cgroup keeps the host's paths,
 * and each mount's root is the container's cgroup, which is how the JVM and friends find
 * their limits). v2: the container's cgroup directory is /sys/fs/cgroup itself; v1: a tmpfs
 * with one directory per hierarchy, named as on the host.
 */
export interface CgroupMounts {
  kind: "v1" | "v2";
  /** v1: hierarchy name ("memory", "cpu,cpuacct") and the container's cgroup dir in it; v2: one entry, name "". */
  binds: Array<{ name: string; source: string }>;
  /** v1: names that lead to a co-mounted hierarchy (cpu -> cpu,cpuacct), as on the host. */
  links?: Array<{ name: string; target: string }>;
}

/** Files to write to and what: "thread" writes 0 (the calling thread only), "process" the pid. */
export interface CgroupJoin {
  files: string[];
  move: "thread" | "process";
}

/**
 * An I/O switchboard (tty_info, or a session): the launcher keeps the container's terminal or
 * pipes and serves them on `<runtimeDir>/io.sock` (switchboard.ts).
 */
interface IoSpec {
  /** A pseudo-terminal from the container's own devpts, with this window size if one was given; absent: pipes. */
  tty?: { window?: { rows: number; columns: number } };
  /** No output is read until the first reader attaches (a session: none is lost before it does). */
  waitForReader?: boolean;
  /** The container's runtime dir, where its switchboard's socket goes. */
  runtimeDir: string;
}

export interface LaunchSpec {
  /** "parent.child" ContainerID chain, for messages. */
  id: string;
  hostname: string;
  /** Absent: the container sees the host's filesystem (no image). */
  rootfs?: RootfsSpec;
  /**
   * The sandbox's host directory and where the container sees it. `within` (nested containers):
   * the top-level container's sandbox, below which a workload may have written, so nothing
   * from there down may be a link.
   */
  sandbox: { host: string; container: string; within?: string };
  volumes?: VolumeSpec[];
  /** A network namespace (a bind-mounted nsfs file) to join first; absent: the host network. */
  netns?: string;
  /** Nested: the parent's workload (host pid), whose UTS (and by default IPC) namespaces it joins. */
  parentPid?: number;
  /**
   * Its PID namespace (namespaces/pid): "agent" the launcher's, the host's (a top-level
   * container sharing the agent's); "parent" parentPid's; "own" a new one (a nested
   * container's own, beside its parent's as in Mesos: the agent ends it when the parent
   * ends). Absent: a top-level container a new one, a nested one its parent's.
   */
  pidNamespace?: "agent" | "parent" | "own";
  executable: string;
  argv: string[];
  env: Record<string, string>;
  workingDir: string;
  /** A user name or uid[:gid], resolved in the image's /etc/passwd and /etc/group; absent: root. */
  user?: string;
  /** Files the agent prepared to bind over /etc/hosts (with the hostname), /etc/resolv.conf, /etc/hostname. */
  etc: { hosts?: string; resolv?: string; hostname: string };
  /** Capabilities, no_new_privs and seccomp (stage 2 refuses a spec without it). */
  confine: ConfineSpec;
  /**
   * IPC namespace: "own" (a new one), "parent" (parentPid's), "agent" (the launcher's, the
   * host's); /dev/shm: ucr's tmpfs of a size, or a bind of a host directory. Absent: a
   * top-level container its own, a nested one its parent's, with a 64 MiB /dev/shm.
   */
  ipc?: { namespace: "own" | "parent" | "agent"; shm?: { sizeBytes: number } | { bind: string } };
  /** Which of runc's masked and read-only kernel files this kernel has (absent: stage 2 tries them all). */
  kernelFiles?: KernelFiles;
  /** rlimits to set (posix/rlimits); absent: the launcher's. */
  rlimits?: RlimitSpec[];
  /** The container's cgroups, joined by stage 2 right before exec (see ContainerCgroup.join). */
  cgroupJoin?: CgroupJoin;
  /** Its cgroups as it sees them under /sys/fs/cgroup (containers with an image). */
  cgroupMounts?: CgroupMounts;
  /** linux/devices: nodes to make in the container's /dev (containers with an image). */
  devices?: Array<{ path: string; type: "b" | "c"; major: number; minor: number; mode: number }>;
  /** The sandbox files the workload's stdout and stderr go to. */
  stdout?: string;
  stderr?: string;
  /** Its stdio through the launcher's switchboard (a terminal or pipes) instead of the sandbox files. */
  io?: IoSpec;
  /**
   * A session (Mesos' DEBUG class, LAUNCH_NESTED_CONTAINER_SESSION): it joins every namespace of
   * its parent (`parentPid`), its mount namespace too, and mounts nothing of its own.
   */
  debug?: boolean;
  /** Where stage 1 writes the workload's raw wait(2) status, and its host pid. */
  statusFile: string;
  pidFile: string;
}

/**
 * Where a stage 2 for `spec` is started (src/ffi/spawn.ts' pidns): the launcher's own PID
 * namespace ("agent"), a new one ("own", and a top-level container by default), or its
 * parent's (a nested container by default, "parent").
 */
export function pidNamespaceOf(spec: LaunchSpec): "new" | number | undefined {
  if (spec.pidNamespace === "agent") return undefined;
  if (spec.pidNamespace === "own") return "new";
  return spec.parentPid ?? "new";
}

/** argv that runs this same binary (compiled) or main.ts under bun (from source). */
export function selfCommand(...args: string[]): string[] {
  if (isCompiled()) return [process.execPath, ...args];
  return [process.execPath, join(import.meta.dir, "..", "main.ts"), ...args];
}

/** The host's /etc/hosts read up to here (it is the host's, but a runaway file must not stall launches). */
const MAX_HOSTS_BYTES = 65536;

/**
 * The container's /etc/hosts: the host's (the container shares its network), plus its own
 * hostname on a loopback address as Debian maps the machine's name, so `getent hosts
 * $(hostname)` answers inside.
 */
export function etcHosts(hostname: string): string {
  let host = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  try {
    const fd = openSync("/etc/hosts", "r");
    try {
      const buf = Buffer.alloc(MAX_HOSTS_BYTES);
      let n = 0;
      for (let got; n < buf.length && (got = readSync(fd, buf, n, buf.length - n, null)) > 0; ) n += got;
      host = buf.toString("utf8", 0, n);
      if (host !== "" && !host.endsWith("\n")) host += "\n";
    } finally {
      closeSync(fd);
    }
  } catch {
    // no /etc/hosts on the host: the defaults above
  }
  return `${host}127.0.1.1\t${hostname}\n`;
}
