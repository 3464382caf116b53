// What the agent tells the container init stage (`ucr __init`), as a JSON file in the
// container's runtime directory: everything already decided, nothing left to look up.
import { join } from "node:path";
import { isCompiled } from "../version.ts";

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
}

/** Files to write to and what: "thread" writes 0 (the calling thread only), "process" the pid. */
export interface CgroupJoin {
  files: string[];
  move: "thread" | "process";
}

export interface LaunchSpec {
  /** "parent.child" ContainerID chain, for messages. */
  id: string;
  hostname: string;
  /** Absent: the container sees the host's filesystem (no image). */
  rootfs?: RootfsSpec;
  sandbox: { host: string; container: string };
  volumes?: VolumeSpec[];
  /** Nested: the parent's workload (host pid), whose PID, UTS and IPC namespaces it joins. */
  parentPid?: number;
  executable: string;
  argv: string[];
  env: Record<string, string>;
  workingDir: string;
  /** A user name or uid[:gid], resolved in the image's /etc/passwd and /etc/group; absent: root. */
  user?: string;
  /** Files the agent prepared to bind over /etc/hosts, /etc/resolv.conf, /etc/hostname. */
  etc: { hosts?: string; resolv?: string; hostname: string };
  /** The container's cgroups, joined by stage 2 right before exec (see ContainerCgroup.join). */
  cgroupJoin?: CgroupJoin;
  /** The sandbox files the workload's stdout and stderr go to. */
  stdout?: string;
  stderr?: string;
  /** Where stage 1 writes the workload's raw wait(2) status, and its host pid. */
  statusFile: string;
  pidFile: string;
}

/** What a warm init stage 2 writes on its fd 3 once it waits for its spec (before any report). */
export const WARM_READY = "R";

/** argv that runs this same binary (compiled) or main.ts under bun (from source). */
export function selfCommand(...args: string[]): string[] {
  if (isCompiled()) return [process.execPath, ...args];
  return [process.execPath, join(import.meta.dir, "..", "main.ts"), ...args];
}
