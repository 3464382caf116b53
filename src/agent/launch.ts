// Launching one container, as a flat list of named steps run in order (crun's
// container_init_setup and youki's process stages are the model): each step does one thing to
// one thing, and a failure says which step, on which container. The containers table
// (containers.ts) registers the record first, runs these, and supervises what they started;
// a KILL_CONTAINER stops them between steps (and during a pull). (Over 400 lines: every step
// of a launch in one file, to be read top to bottom as crun's container_init_setup is.)
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Flags } from "../config/flags.ts";
import { UcrError, internal, invalid, messageOf } from "../errors.ts";
import { log } from "../log.ts";
import type { LaunchContainer } from "../mesos/calls.ts";
import type { CniNetworks, Joined, NetworkPlan } from "../network/cni.ts";
import type { ImageLayers, ProvisionOptions, Provisioner } from "../provisioner/provisioner.ts";
import type { SparePool } from "../provisioner/spares.ts";
import type { Image } from "../mesos/messages.ts";
import { ContainerCgroup, type CgroupLayout, type SharedCgroups } from "../runtime/cgroups.ts";
import type { DeviceNode } from "../runtime/devices.ts";
import { makeDirBelow } from "../runtime/inroot.ts";
import type { LauncherClient } from "../runtime/launcher.ts";
import { etcHosts, type ConfineSpec, type KernelFiles, type LaunchSpec, type RlimitSpec, type VolumeSpec } from "../runtime/spec.ts";
import { startStage1 } from "../runtime/stage1.ts";
import { writeStateFile } from "../runtime/state.ts";
import { startTime } from "../util/process.ts";
import { writeCheckpoint } from "./checkpoint.ts";
import { resolveCommand, type ResolvedCommand } from "./command.ts";
import type { Confinement } from "./confinement.ts";
import { toRunning, type Container, type Provisioning, type Running } from "./container.ts";
import { fetchUris } from "./fetcher.ts";
import { mountPrivateShm, rlimitsFor } from "./host-limits.ts";
import { sessionCommand } from "./session.ts";
import {
  dockerConfigOf,
  hostnameOf,
  ipcPlan,
  limitsOf,
  pidNamespaceOf,
  resolveSecretEnvironment,
  ttyOf,
  type IpcPlan,
} from "./launch-rules.ts";
import { volumeMounts } from "./volumes.ts";

/** What a launch uses of the agent. */
export interface LaunchDeps {
  flags: Flags;
  provisioner: Provisioner;
  networks: CniNetworks;
  confinement: Confinement;
  cgroups: CgroupLayout;
  launcher: LauncherClient;
  /** Keeps a pull's leases with the container (or drops them if it is gone by then). */
  keeper(c: Container): (release: () => void) => void;
  /** Pays the kernel's cgroup-lock wait off this thread before stage 2 moves a whole process (v2). */
  warmCgroups(): void;
  /** Devices: the cgroups every container joins (v1's devices), the --allowed_devices nodes made in /dev, and their names for the log. */
  devices: { shared: SharedCgroups; nodes: DeviceNode[]; extra: string };
  /** Which of the kernel files masked or made read-only this kernel has (looked up once). */
  kernelFiles: KernelFiles;
  /** Sandboxes, rootfs skeletons and runtime dirs made ahead of launches (provisioner/spares.ts). */
  spares?: SparePool;
}

/**
 * What KILL_CONTAINER reports a launch was doing when it stopped it ("Container destroyed
 * during provisioning"): Mesos' container states, coarser than the steps.
 */
export type Stage = "provisioning" | "preparing" | "fetching" | "launching";

/** Thrown inside a launch that KILL_CONTAINER stopped; `stage` is the one it stopped in. */
class Destroyed extends Error {
  constructor(readonly stage: Stage) {
    super(`Container destroyed during ${stage}`);
    this.name = "Destroyed";
  }
}

interface Step {
  name: string;
  stage: Stage;
  run(l: Launch): void | Promise<void>;
}

/**
 * The steps, in order. Confinement is decided before anything is made (a refused request makes
 * nothing); the CNI ADD starts early and is joined late, so its plugins run while the image is
 * provisioned. The checkpoint is written before the first thing is made and again whenever the
 * record learns what a restarted agent needs to take the container apart or keep its layers.
 */
export const LAUNCH_STEPS: readonly Step[] = [
  { name: "decide confinement", stage: "provisioning", run: (l) => l.decideConfinement() },
  { name: "make dirs", stage: "provisioning", run: (l) => l.makeDirs() },
  { name: "start network", stage: "provisioning", run: (l) => l.startNetwork() },
  { name: "provision rootfs", stage: "provisioning", run: (l) => l.provisionRootfs() },
  { name: "volumes", stage: "provisioning", run: (l) => l.mountVolumes() },
  { name: "command", stage: "preparing", run: (l) => l.resolveCommand() },
  { name: "cgroups", stage: "preparing", run: (l) => l.makeCgroups() },
  { name: "namespaces and rlimits", stage: "preparing", run: (l) => l.planNamespaces() },
  { name: "fetch URIs", stage: "fetching", run: (l) => l.fetchUris() },
  { name: "join network", stage: "fetching", run: (l) => l.joinNetwork() },
  { name: "write spec", stage: "fetching", run: (l) => l.writeSpec() },
  { name: "start", stage: "launching", run: (l) => l.start() },
];

/** One launch in progress: the steps above, and what each leaves for the next. */
export class Launch {
  private readonly f: Flags;
  /** The top-level container this one is in (itself if it is one). */
  private readonly top: Container;
  private confine?: ConfineSpec;
  private hostname = "";
  private attaching?: Promise<Joined>;
  private image?: ImageLayers;
  private rootfs?: LaunchSpec["rootfs"];
  private sandboxInContainer = "";
  private volumes: VolumeSpec[] = [];
  private command?: ResolvedCommand;
  private joined?: Joined;
  private ipc?: IpcPlan;
  private rlimits?: RlimitSpec[];
  private pidNamespace?: LaunchSpec["pidNamespace"];
  private spec?: LaunchSpec;
  /** The launch spec's path, and the status file the launcher writes at the exit (for supervision). */
  specPath = "";
  statusFile = "";

  constructor(
    private readonly deps: LaunchDeps,
    private readonly call: LaunchContainer,
    private readonly c: Provisioning,
    /** Told each step's stage before it runs (what a KILL reports). */
    private readonly onStage: (stage: Stage) => void,
  ) {
    this.f = deps.flags;
    let top: Container = c;
    while (top.parent) top = top.parent;
    this.top = top;
  }

  /**
   * Runs every step. A failure of ours (a UcrError) is thrown as it is; anything else names
   * the step and the container, as an internal error (a full disk is not the client's fault).
   */
  async run(): Promise<Running> {
    for (const step of LAUNCH_STEPS) {
      this.onStage(step.stage);
      try {
        await step.run(this);
      } catch (err) {
        if (err instanceof UcrError || err instanceof Destroyed) throw err;
        throw internal(`${step.name} for container ${this.c.key}: ${messageOf(err)}`, err);
      }
      this.check(step.stage);
    }
    return this.c as Container as Running;
  }

  /** Throws if KILL_CONTAINER stopped the launch. */
  private check(stage: Stage): void {
    if (this.c.abort?.signal.aborted) throw new Destroyed(stage);
  }

  /** Awaits a step that only fills a cache (a pull): KILL_CONTAINER does not wait for it. */
  private until<T>(step: Promise<T>, stage: Stage): Promise<T> {
    const signal = this.c.abort?.signal;
    if (!signal) return step;
    if (signal.aborted) return Promise.reject(new Destroyed(stage));
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new Destroyed(stage));
      signal.addEventListener("abort", onAbort, { once: true });
      step.then(
        (v) => {
          signal.removeEventListener("abort", onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      );
    });
  }

  decideConfinement(): void {
    this.confine = this.deps.confinement.forLaunch(this.call.container?.linux_info, this.c.key);
  }

  makeDirs(): void {
    const c = this.c;
    // A top-level container's runtime dir and sandbox may be made already (spares); a nested one's sit in its parent's.
    if (c.parent || this.deps.spares?.take("runtime", c.runtime) === undefined) mkdirSync(c.runtime, { recursive: true, mode: 0o700 });
    writeCheckpoint(c, "PROVISIONING");
    // A nested container's sandbox sits in its parent's, which the parent's workload writes:
    // made there through no link, and not over a directory the workload made.
    try {
      if (c.parent) makeDirBelow(this.top.sandbox, relative(this.top.sandbox, c.sandbox), 0o750);
      else if (this.deps.spares?.take("sandbox", c.sandbox) === undefined) mkdirSync(c.sandbox, { recursive: true, mode: 0o750 });
    } catch (err) {
      throw internal(`cannot create the sandbox ${c.sandbox}: ${messageOf(err)}`, err);
    }
  }

  /**
   * CNI ADD starts now and is joined later. A nested container shares its top-level
   * container's UTS namespace, so its hostname.
   */
  async startNetwork(): Promise<void> {
    const c = this.c;
    if (c.parent) {
      hostnameOf(this.call, true); // refuses a hostname of its own
      this.hostname = hostnameOfRunning(this.top);
    } else {
      this.hostname = hostnameOf(this.call, false);
    }
    const networks = this.deps.networks;
    const infos = this.call.container?.network_infos ?? [];
    const plan: NetworkPlan | null = await networks.plan(c.key, c.parent !== undefined, infos, this.hostname);
    if (!plan) return;
    this.attaching = networks.attach(plan);
    this.attaching.catch(() => {}); // joined below; if the launch fails first, cleanup's DEL waits for it
  }

  async provisionRootfs(): Promise<void> {
    const c = this.c;
    const image = this.call.container?.mesos?.image;
    if (!image) return;
    const layers = await this.until(this.deps.provisioner.layers(image, this.pullOptions(image)), "provisioning");
    // Recorded from the LAUNCHING checkpoint on: a container restarted in PROVISIONING is
    // destroyed, so no checkpoint of that state needs its layers (the running agent keeps
    // them by its table).
    if (layers.docker) {
      c.imageRef = layers.docker.reference;
      c.layers = [...layers.docker.layerIds];
    }
    this.image = layers;
    this.check("provisioning");
    // A top-level container's skeleton may be made already (a spare); a nested one's sits in its parent's.
    const made = c.parent ? undefined : this.deps.spares?.take("rootfs", c.provisionerDir!);
    this.rootfs = await this.deps.provisioner.rootfs(layers, c.provisionerDir!, made);
  }

  async mountVolumes(): Promise<void> {
    const c = this.c;
    // Without an image a nested container sees its parent's filesystem, where its sandbox is
    // <parent's sandbox as the parent sees it>/containers/<id>.
    this.sandboxInContainer = this.rootfs
      ? this.f.sandbox_directory
      : c.parent
        ? join(c.parent.sandboxInContainer ?? c.parent.sandbox, "containers", c.id.value)
        : c.sandbox;
    c.sandboxInContainer = this.sandboxInContainer;
    if (c.parent && !this.rootfs && (this.call.container?.volumes ?? []).length > 0) {
      throw invalid("a nested container without its own image runs in its parent's filesystem and cannot have volumes; give it an image");
    }
    this.volumes = await volumeMounts(this.call, {
      sandbox: c.sandbox,
      sandboxInContainer: this.sandboxInContainer,
      topSandbox: this.top.sandbox,
      ...(c.parent ? { parentSandbox: c.parent.sandbox } : {}),
      dockerEnabled: (this.f.image_providers ?? []).includes("docker"),
      appcEnabled: (this.f.image_providers ?? []).includes("appc"),
      pullImage: async (image) => {
        const layers = await this.until(this.deps.provisioner.layers(image, this.pullOptions(image)), "provisioning");
        if (layers.docker) {
          c.volumeImages = [...(c.volumeImages ?? []), layers.docker.reference];
          c.layers = [...new Set([...(c.layers ?? []), ...layers.docker.layerIds])];
        }
        return layers.trees;
      },
    });
    for (const v of this.volumes) {
      if (v.propagation === "bidirectional") {
        log.warn(
          `privilege: container ${c.key} gets host path ${v.source} at ${v.target} with BIDIRECTIONAL mount propagation: ` +
            "what it mounts there appears on the host",
        );
      }
    }
  }

  /** How an image of this launch is pulled: Mesos' cached flag, the container's leases, Image.docker.config's credentials. */
  private pullOptions(image: Image): ProvisionOptions {
    const secret = image.docker?.config;
    return {
      force: image.cached === false,
      keep: this.deps.keeper(this.c),
      ...(secret ? { dockerConfig: dockerConfigOf(secret, "docker.config") } : {}),
    };
  }

  resolveCommand(): void {
    const c = this.c;
    const config = this.image?.docker?.config;
    const context = { sandbox: this.sandboxInContainer, useImage: !this.f.docker_ignore_runtime };
    const resolved = { ...this.call, command: resolveSecretEnvironment(this.call.command) };
    // A session runs as a command in its parent, with its parent's environment (session.ts).
    this.command = c.session ? sessionCommand(resolved, c.parent!) : resolveCommand(resolved.command, config, context);
    const asked = this.f.switch_user && this.call.command?.user ? this.call.command.user : undefined;
    const user = asked ?? c.parent?.user ?? ((config?.config?.User ?? undefined) || undefined);
    if (user) c.user = user;
  }

  makeCgroups(): void {
    const c = this.c;
    const f = this.f;
    c.limits = limitsOf(this.call);
    if (c.parent && this.call.container?.linux_info?.share_cgroups !== false) {
      c.cgroup = c.parent.cgroup; // shared: the parent's limits cover it (and it is not removed with it)
    } else if (this.deps.cgroups.kind !== "none") {
      try {
        c.cgroup = ContainerCgroup.create(this.deps.cgroups, f.cgroups_root, c.key, {
          ...c.limits,
          cfs: f.cgroups_enable_cfs,
          pids: f.default_container_pids_limit,
        });
      } catch (err) {
        throw internal(`cannot set up the cgroups of ${c.key}: ${messageOf(err)}`, err);
      }
    } else if (c.limits.cpus !== undefined || c.limits.memBytes !== undefined) {
      log.warn(`container ${c.key}: resources are not enforced: ${this.deps.cgroups.why}`);
    }
    // OOM kills already counted in its cgroup (a shared parent's, or a directory left by an
    // earlier container of this name) are not its own.
    c.oomBaseline = c.cgroup?.oomKills() ?? 0;
  }

  /**
   * namespaces/ipc, namespaces/pid and posix/rlimits: which IPC namespace and /dev/shm (a
   * PRIVATE one is a tmpfs mounted here, in the agent's mount namespace, where a nested
   * container can bind it too, as Mesos), which PID namespace, and the rlimits stage 2 sets.
   */
  planNamespaces(): void {
    const c = this.c;
    const f = this.f;
    const ipc = ipcPlan(this.call, {
      hasRootfs: this.rootfs !== undefined,
      ...(c.parent ? { parent: { key: c.parent.key, ...(c.parent.shm ? { shareable: c.parent.shm } : {}) } } : {}),
      privateShmPath: join(c.runtime, "shm"),
      ...(f.default_container_shm_size !== undefined ? { defaultShmBytes: f.default_container_shm_size } : {}),
    });
    if (ipc.shareable) c.shm = ipc.shareable;
    if (ipc.privateShm) mountPrivateShm(join(c.runtime, "shm"), ipc.privateShm.sizeBytes);
    if (ipc.namespace === "agent") {
      log.warn(`privilege: container ${c.key} shares the agent's IPC namespace and /dev/shm (ipc_mode SHARE_PARENT)`);
    }
    this.ipc = ipc;
    const info = this.call.container?.rlimit_info;
    if (info) this.rlimits = rlimitsFor(info, c.key);
    this.pidNamespace = pidNamespaceOf(this.call, this.rootfs !== undefined);
    if (this.pidNamespace === "agent") log.warn(`privilege: container ${c.key} shares the agent's PID namespace (share_pid_namespace)`);
    const extra = this.deps.devices.extra;
    if (extra !== "") log.info(`privilege: container ${c.key} may use the --allowed_devices ${extra}`);
  }

  async fetchUris(): Promise<void> {
    try {
      const c = this.c;
      // A nested container's sandbox lies in its parent's, which its parent's workload writes.
      const place = { sandbox: c.sandbox, top: this.top.sandbox, staging: join(this.f.work_dir, "provisioner", "fetch", c.key) };
      const limits = { stallMs: this.f.fetcher_stall_timeout / 1e6, totalMs: this.f.image_fetch_timeout / 1e6 };
      await fetchUris(this.call.command?.uris, place, limits, c.abort?.signal);
    } catch (err) {
      this.check("fetching");
      throw err;
    }
  }

  /** A nested container joins its root's network namespace and sees its root's /etc files. */
  async joinNetwork(): Promise<void> {
    const c = this.c;
    this.joined = this.attaching ? await this.attaching : c.parent ? this.deps.networks.joinedBy(c.key.split(".")[0]!) : undefined;
    // Mesos: bind to the container's address (a session has its parent's environment as it is).
    if (this.joined && !c.session) this.command!.env.LIBPROCESS_IP = "0.0.0.0";
  }

  writeSpec(): void {
    const c = this.c;
    const command = this.command!;
    const joined = this.joined;
    const hostnameFile = join(c.runtime, "hostname");
    writeFileSync(hostnameFile, `${this.hostname}\n`);
    const hostsFile = join(c.runtime, "hosts");
    writeFileSync(hostsFile, etcHosts(this.hostname));
    const { shared, nodes } = this.deps.devices;
    const cgroupJoin = c.cgroup?.join(shared);
    const cgroupMounts = this.rootfs ? c.cgroup?.mounts(shared) : undefined;
    const ipc = this.ipc!;
    this.statusFile = join(c.runtime, "status");
    const spec: LaunchSpec = {
      id: c.key,
      hostname: this.hostname,
      ...(this.rootfs ? { rootfs: this.rootfs } : {}),
      sandbox: { host: c.sandbox, container: this.sandboxInContainer, ...(c.parent ? { within: this.top.sandbox } : {}) },
      ...(this.volumes.length > 0 ? { volumes: this.volumes } : {}),
      ...(c.parent?.pid !== undefined ? { parentPid: c.parent.pid } : {}),
      ...(this.pidNamespace ? { pidNamespace: this.pidNamespace } : {}),
      ...(joined ? { netns: joined.netns } : {}),
      executable: command.executable,
      argv: command.argv,
      env: command.env,
      workingDir: command.workingDir,
      ...(c.user ? { user: c.user } : {}),
      etc: joined?.etc ?? {
        hosts: hostsFile,
        ...(existsSync("/etc/resolv.conf") ? { resolv: "/etc/resolv.conf" } : {}),
        hostname: hostnameFile,
      },
      ...(cgroupJoin ? { cgroupJoin } : {}),
      confine: this.confine!,
      ...(this.call.container?.linux_info?.ipc_mode !== undefined || ipc.shm
        ? { ipc: { namespace: ipc.namespace, ...(ipc.shm ? { shm: ipc.shm } : {}) } }
        : {}),
      ...(this.rlimits ? { rlimits: this.rlimits } : {}),
      kernelFiles: this.deps.kernelFiles,
      ...(cgroupMounts ? { cgroupMounts } : {}),
      ...(this.rootfs && nodes.length > 0 ? { devices: nodes } : {}),
      stdout: join(c.sandbox, "stdout"),
      stderr: join(c.sandbox, "stderr"),
      ...(c.io
        ? {
            io: {
              ...(c.io === "tty" ? { tty: ttyOf(this.call)! } : {}),
              ...(c.session ? { waitForReader: true } : {}),
              runtimeDir: c.runtime,
            },
          }
        : {}),
      ...(c.session ? { debug: true } : {}),
      statusFile: this.statusFile,
      pidFile: join(c.runtime, "pid"),
    };
    this.specPath = join(c.runtime, "launch.json");
    writeStateFile(this.specPath, JSON.stringify(spec));
    this.spec = spec;
    // A whole-process move takes the kernel's threadgroup lock, whose first use in a while
    // waits for an RCU grace period (~13 ms): take that wait in the disk worker now, while
    // stage 2 sets up, so its own move finds it paid. (A thread move, v1, takes no such lock.)
    if (cgroupJoin?.move === "process") this.deps.warmCgroups();
  }

  /** From here a workload may exist: a restarted agent looks for the launcher's pid file. */
  async start(): Promise<void> {
    const c = this.c;
    const spec = this.spec!;
    c.launching = true;
    writeCheckpoint(c, "LAUNCHING");
    // Normally the long-lived launcher starts stage 2 (one start of the binary per launch);
    // if it cannot be had, a stage 1 process of this container's own does the same job.
    let started: { pid: number } | { error: string } | undefined;
    try {
      started = await this.deps.launcher.launch(this.specPath);
    } catch (err) {
      log.warn(`container launcher unavailable (${messageOf(err)}); using a stage 1 process for ${c.key}`);
    }
    if (started === undefined && c.io) {
      // Only the launcher keeps a container's terminal or pipes (its I/O switchboard).
      throw internal(`${c.session ? "a session" : "a container with tty_info"} needs ucr's launcher, which could not be had`);
    }
    if (started === undefined) started = await startStage1(spec, this.specPath);
    // The init stage's own report (an exec that failed, a mount the image refused): the request's.
    if ("error" in started) throw invalid(started.error);
    c.pid = started.pid;
    const unconfined = this.deps.confinement.verify(c.pid, this.confine!);
    if (unconfined) {
      try {
        process.kill(c.pid, "SIGKILL");
      } catch {
        // already gone
      }
      throw internal(`container ${c.key} is not confined as decided (${unconfined}): killed; an init stage from an older ucr?`);
    }
    const pidStart = startTime(c.pid);
    // Killed while the launcher started it: it ran for a moment; it goes now (destroyKilled).
    this.check("launching");
    const running = toRunning(c, c.pid, pidStart);
    writeCheckpoint(running, "RUNNING");
  }
}

/** The hostname a running top-level container was given (its runtime dir keeps it). */
function hostnameOfRunning(top: Container): string {
  try {
    const name = readFileSync(join(top.runtime, "hostname"), "utf8").trim();
    if (name !== "") return name;
  } catch {
    // from an older ucr: its ID was its hostname
  }
  return top.id.value.slice(0, 63);
}
