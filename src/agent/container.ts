// One container as the agent holds it, and where its pieces live on the host (all derived
// from its ID, so recovery can find them without a record).
import { join } from "node:path";
import type { ContainerID, Resource } from "../mesos/messages.ts";
import type { ContainerCgroup } from "../runtime/cgroups.ts";

/** Why a container ended when the agent ended it (Mesos' ContainerTermination fields). */
export interface Termination {
  /** TASK_KILLED, TASK_FAILED... */
  state: string;
  reason?: string;
  message: string;
}

/** What a container is in every state: where its pieces are, what it uses, how it was asked for. */
interface Record {
  id: ContainerID;
  key: string;
  sandbox: string;
  runtime: string;
  provisionerDir?: string;
  /** When the workload's process started (clock ticks since boot): tells it from a later one with its pid. */
  pidStart?: number;
  message?: string;
  /** Set when the agent's limits killed it (Mesos' TASK_FAILED + REASON_CONTAINER_LIMITATION_MEMORY). */
  limitation?: { reason: string; resources: Resource[] };
  /** Set when the agent destroyed it (killed while provisioning, or found half-made after a restart). */
  termination?: Termination;
  /** Its resources were removed when it was destroyed: only the record is left. */
  destroyed?: boolean;
  cgroup?: ContainerCgroup;
  /** Its own cgroup's directories (planned before they exist), not a shared parent's. */
  cgroupDirs?: string[];
  /** OOM kills counted in its cgroup when it was launched: only later ones are its own. */
  oomBaseline?: number;
  /** Where the workload sees its sandbox. */
  sandboxInContainer?: string;
  /** The container this one is nested in. */
  parent?: Container;
  /** Its stdio goes through the launcher's I/O switchboard: a terminal (tty_info) or pipes (a session). */
  io?: "tty" | "pipes";
  /** A session (LAUNCH_NESTED_CONTAINER_SESSION, Mesos' DEBUG class): ended with its client, and by a restarted agent. */
  session?: boolean;
  /** The /dev/shm a nested container asking for SHARE_PARENT binds (absent: this one's is private to its mount namespace). */
  shm?: string;
  /** The user it runs as (nested containers inherit it). */
  user?: string;
  /** Images mounted as volumes (kept from GC while the container exists). */
  volumeImages?: string[];
  /** Canonical reference of its image (what GC must keep). */
  imageRef?: string;
  /** Layer ids (diff_ids) its rootfs and image volumes are made of: GC keeps these whatever the tags say now. */
  layers?: string[];
  /** Store leases held until the container is removed. */
  leases: Array<() => void>;
  /** Found again after an agent restart (from its checkpoint). */
  recovered?: boolean;
  limits?: { cpus?: number; memBytes?: number; diskBytes?: number };
  /** Last disk measurement (du of sandbox and rootfs changes), and when. */
  disk?: { bytes: number; at: number };
  image?: string;
  launchedAt: number;
  exited: Promise<void>;
}

/**
 * Everything before the workload runs (pull, rootfs, cgroups, URIs, the launcher starting
 * it); `launching` tells the last step from the others. A pid is known once the launcher
 * answered (or a restarted agent found its pid file), before the launch is done.
 */
export interface Provisioning extends Record {
  state: "PROVISIONING";
  /** The launcher has been (or is being) asked to start the workload. */
  launching?: boolean;
  pid?: number;
  /** Aborted by KILL_CONTAINER: the launch stops and destroys it. */
  abort?: AbortController;
}

/** The workload runs: host pid of its PID 1. */
export interface Running extends Record {
  state: "RUNNING";
  pid: number;
}

/** It ended (or never ran); kept until REMOVE_CONTAINER. */
export interface Exited extends Record {
  state: "EXITED";
  /** The workload's host pid, if one ran. */
  pid?: number;
  /** Raw wait(2) status; undefined if no process ran. */
  exitStatus?: number;
}

export type Container = Provisioning | Running | Exited;

/** The workload started as `pid`: `c` runs. (The record is the same object: the table, its children and WAITs hold it.) */
export function toRunning(c: Container, pid: number, pidStart: number | undefined): Running {
  const running = c as Container as Running;
  delete (c as Provisioning).launching;
  delete (c as Provisioning).abort;
  running.state = "RUNNING";
  running.pid = pid;
  if (pidStart !== undefined) running.pidStart = pidStart;
  return running;
}

/** `c` ended (its workload exited, or it was destroyed or never launched). */
export function toExited(c: Container, exitStatus: number | undefined): Exited {
  const exited = c as Container as Exited;
  delete (c as Provisioning).launching;
  delete (c as Provisioning).abort;
  exited.state = "EXITED";
  if (exitStatus !== undefined) exited.exitStatus = exitStatus;
  return exited;
}

/** "c1" or "c1.child" (Mesos' string form of a ContainerID chain). */
export function idKey(id: ContainerID): string {
  return id.parent ? `${idKey(id.parent)}.${id.value}` : id.value;
}

/** The chain of values, root first. */
function idChain(id: ContainerID): string[] {
  return id.parent ? [...idChain(id.parent), id.value] : [id.value];
}

/** Where a container's pieces are: Mesos' layout, nested ones under their parent's. */
export interface ContainerPaths {
  sandbox: string;
  runtime: string;
  provisionerDir: string;
}

export function containerPaths(dirs: { workDir: string; runtimeDir: string }, id: ContainerID): ContainerPaths {
  const chain = idChain(id);
  const nest = (root: string) => join(root, ...chain.flatMap((v) => ["containers", v]));
  return {
    sandbox: nest(dirs.workDir),
    runtime: nest(dirs.runtimeDir),
    provisionerDir: nest(join(dirs.workDir, "provisioner")),
  };
}
