// The containers table: launch (validate, pull, provision, sandbox, start `ucr __init`),
// wait, kill, remove and list, for standalone containers. One state machine per container:
// PROVISIONING -> RUNNING -> EXITED -> (removed). A container is checkpointed before any
// side effect of its launch (checkpoint.ts), so an agent killed at any instruction leaves
// nothing the next one cannot find (recovery.ts). The exit status comes from the file the
// launcher writes, so it is there even when the agent was not. (Over 400 lines: the launch
// steps stay in start() until the pipeline of named steps (issue #11) takes them, as other
// work edits them meanwhile.)
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { ContainerID, Image, RLimitInfo } from "../api/proto.ts";
import { MS_NODEV, MS_NOSUID, getRlimit, mount } from "../ffi/libc.ts";
import type { LaunchContainer } from "../api/calls.ts";
import type { Backend, DockerConfig, LoadedFlags } from "../config/flags.ts";
import type { AppcStore } from "../images/appc.ts";
import { BackendError, chooseBackend, provision } from "../images/backends.ts";
import type { ImageService } from "../images/service.ts";
import { log } from "../log.ts";
import { ContainerCgroup, confineDevices, detectCgroups, ownProcsFile, type CgroupLayout, type SharedCgroups } from "../runtime/cgroups.ts";
import { DEFAULT_DEVICE_RULES, DeviceSetupError, allowedDevices, ruleText, type DeviceNode } from "../runtime/devices.ts";
import { Confinement, ConfinementRefused } from "./confinement.ts";
import { FetchError, fetchUris } from "./fetcher.ts";
import { type CniNetworks, NetworkError } from "../network/cni.ts";
import { CommandError, resolveCommand } from "../runtime/command.ts";
import { LauncherClient, launcherAlive } from "../runtime/launcher.ts";
import { makeDirBelow } from "../runtime/inroot.ts";
import { kernelFilesHere } from "../runtime/mounts.ts";
import { etcHosts, selfCommand, type LaunchSpec, type RlimitSpec } from "../runtime/spec.ts";
import { writeStateFile } from "../runtime/state.ts";
import type { WorkerClient } from "../workers/rpc.ts";
import { startTime, stillRunning } from "../util/process.ts";
import { writeCheckpoint } from "./checkpoint.ts";
import { ContainerError, containerPaths, idKey, type Container, type Termination } from "./container.ts";
import { clearRuntime, launcherStatus, takeApart } from "./destroy.ts";
import {
  RLIM_INFINITY,
  checkLaunch,
  checkSession,
  dockerConfigOf,
  hostnameOf,
  ipcPlan,
  limitsOf,
  ownsCgroups,
  pidNamespaceOf,
  resolveSecretEnvironment,
  rlimitsOf,
  ttyOf,
} from "./launch-rules.ts";
import { OomGuard, oomKillsSinceLaunch, setMemoryLimitation } from "./oom.ts";
import { recoverContainers, type RecoveryResult } from "./recovery.ts";
import { endSession, sessionCommand } from "./session.ts";
import { volumeMounts } from "./volumes.ts";

export { ContainerError, idKey, type Container, type State } from "./container.ts";

/** Thrown inside a launch that KILL_CONTAINER stopped; `stage` is the step it stopped in. */
class Destroyed extends Error {
  constructor(readonly stage: string) {
    super(`Container destroyed during ${stage}`);
    this.name = "Destroyed";
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

/** MS_STRICTATIME (linux/mount.h), as Mesos mounts a PRIVATE /dev/shm. */
const MS_STRICTATIME = 1 << 24;

/** A PRIVATE /dev/shm: a tmpfs at `dir` (in the container's runtime dir) in the agent's mount namespace. */
function mountPrivateShm(dir: string, sizeBytes: number): void {
  try {
    mkdirSync(dir, { mode: 0o755 });
    mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, `mode=1777,size=${sizeBytes}`);
  } catch (err) {
    throw new ContainerError(500, `Failed to mount '${dir}': ${(err as Error).message}`);
  }
}

/** The kernel's most open files per process: a hard RLIMIT_NOFILE above it fails in setrlimit. */
function nrOpen(): bigint {
  try {
    return BigInt(readFileSync("/proc/sys/fs/nr_open", "utf8").trim());
  } catch {
    return 1048576n;
  }
}

const CAP_SYS_RESOURCE = 24;

/** Whether this process holds capability `cap` (effective). */
function holdsCapability(cap: number): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  return ((BigInt(`0x${hex}`) >> BigInt(cap)) & 1n) === 1n;
}

/** The top-level container a nested one is in (itself if it is one). */
function topLevel(c: Container): Container {
  let top = c;
  while (top.parent) top = top.parent;
  return top;
}

export class Containers {
  private readonly table = new Map<string, Container>();
  readonly backend: Backend;
  readonly cgroups: CgroupLayout;
  private readonly provisionerDir: string;
  private readonly appc: AppcStore;
  /** The agent's own cgroup.procs (for warming the kernel's cgroup lock before a launch). */
  private readonly ownProcs: string | undefined;
  private readonly launcher: LauncherClient;
  /** Capabilities, no_new_privs and seccomp filters for each launch. */
  readonly confinement: Confinement;
  /** Cgroups every container joins (v1's devices cgroup). */
  private readonly shared: SharedCgroups = {};
  /** Which devices containers may open, for the start-up log. */
  readonly devicesConfinement: string;
  /** The --allowed_devices every container may use beyond the defaults, for each launch's log ("" if none). */
  private readonly extraDevices: string = "";
  /** linux/devices: the --allowed_devices nodes made in the /dev of containers with an image. */
  private readonly deviceNodes: DeviceNode[];
  private readonly nrOpen = nrOpen();
  /** Which of the kernel files every container gets masked or read-only this kernel has (looked up once). */
  private readonly kernelFiles = kernelFilesHere();
  /** Whether this agent (and so the init stage it starts) may raise a hard rlimit: CAP_SYS_RESOURCE. */
  private readonly canRaiseRlimits = holdsCapability(CAP_SYS_RESOURCE);
  /** How to settle a running container now, with its wait status if known (set by watchExit). */
  private readonly settle = new Map<string, (status?: number) => void>();
  /** Ends a container on an OOM kill in its cgroup. */
  private readonly oom = new OomGuard((c) => writeCheckpoint(c, "RUNNING"));
  /** WAIT_CONTAINER calls blocked on a container: told when the agent shuts down. */
  private readonly waiters = new Map<(err: Error) => void, Container>();
  private shuttingDown = false;

  constructor(
    private readonly flags: LoadedFlags,
    private readonly images: ImageService,
    private readonly gc: WorkerClient,
    /** CNI networks (network/cni); without --network_cni_config_dir, host network only. */
    readonly networks: CniNetworks,
  ) {
    const f = flags.values;
    this.provisionerDir = join(f.work_dir, "provisioner");
    this.backend = chooseBackend(f.image_provisioner_backend, this.provisionerDir);
    this.cgroups = detectCgroups();
    this.ownProcs = ownProcsFile(this.cgroups);
    const allowed = allowedDevices(f.allowed_devices);
    this.deviceNodes = f.isolation.includes("linux/devices") ? allowed.nodes : [];
    const devices = confineDevices(this.cgroups, f.cgroups_root, [...DEFAULT_DEVICE_RULES, ...allowed.rules]);
    if ("why" in devices) {
      if (f.isolation.includes("cgroups/devices")) {
        throw new DeviceSetupError(`isolator cgroups/devices: containers' devices cannot be confined: ${devices.why}`);
      }
      this.devicesConfinement = `NOT confined (${devices.why}): a root container may open any device node it can reach`;
    } else {
      this.shared = devices.shared;
      const extra = allowed.rules.length > 0 ? `, plus --allowed_devices ${allowed.rules.map(ruleText).join(", ")}` : "";
      this.devicesConfinement = `null, zero, full, random, urandom, tty, ptys${extra}, by ${devices.how}`;
      for (const r of allowed.rules) log.warn(`privilege: --allowed_devices lets every container use ${ruleText(r)}`);
      this.extraDevices = allowed.rules.map(ruleText).join(", ");
    }
    const socket = join(f.runtime_dir, "launcher.sock");
    // The launcher tells us at once when a workload ends; the status file watch is the fallback.
    this.launcher = new LauncherClient(socket, selfCommand("__launcher", socket), (key, status) => this.settle.get(key)?.(status));
    this.confinement = new Confinement(f);
    this.appc = images.appc;
  }

  get(id: ContainerID): Container | undefined {
    return this.table.get(idKey(id));
  }

  list(): Container[] {
    return [...this.table.values()];
  }

  /**
   * What image GC must keep for each container not yet removed: its image references and
   * the layer ids its rootfs and image volumes are made of (a tag pulled again since may
   * name other layers now). A destroyed container keeps nothing: its rootfs is gone.
   */
  imageUsers(): Array<{ key: string; images: string[]; layers: string[]; accountable: boolean }> {
    return this.list()
      .filter((c) => !c.destroyed)
      .map((c) => ({
        key: c.key,
        images: [...(c.imageRef ? [c.imageRef] : []), ...(c.volumeImages ?? [])],
        layers: c.layers ?? [],
        // A recovered Docker-image container without its canonical reference: a checkpoint
        // we cannot account for. (One still provisioning is covered by its pull's lease.)
        accountable: !(c.recovered && c.image && !c.image.startsWith("appc:") && !c.imageRef),
      }));
  }

  /**
   * true: launched; false: the ID was already in use (Mesos answers 202). `session`: a
   * LAUNCH_NESTED_CONTAINER_SESSION (Mesos' DEBUG class), whose output waits for its reader.
   */
  async launch(call: LaunchContainer, { session = false } = {}): Promise<boolean> {
    const f = this.flags.values;
    const id = call.container_id;
    const key = idKey(id);
    if (this.table.has(key)) return false;
    const parent = id.parent ? this.get(id.parent) : undefined;
    checkLaunch(call, parent, f);
    if (session) checkSession(call);
    if (this.shuttingDown) throw new ContainerError(503, "Agent is shutting down");

    const image = call.container?.mesos?.image;
    // Every place the launch will create something, known before it creates any of them.
    const paths = containerPaths({ workDir: f.work_dir, runtimeDir: f.runtime_dir }, id);
    const cgroupDirs = ownsCgroups(call) ? ContainerCgroup.dirsFor(this.cgroups, f.cgroups_root, key) : [];
    // An idle agent's launcher has exited: it starts now, while the image is pulled and mounted.
    this.launcher.prepare();
    let resolveExited!: () => void;
    const container: Container = {
      id,
      key,
      state: "PROVISIONING",
      // Nested: under the parent's sandbox and runtime dir, as Mesos lays them out.
      sandbox: paths.sandbox,
      runtime: paths.runtime,
      ...(image ? { provisionerDir: paths.provisionerDir } : {}),
      ...(cgroupDirs.length > 0 ? { cgroupDirs } : {}),
      ...(parent ? { parent } : {}),
      launchedAt: Date.now(),
      leases: [],
      exited: new Promise<void>((r) => (resolveExited = r)),
      abort: new AbortController(),
      ...(image?.docker ? { image: image.docker.name } : image?.appc ? { image: `appc:${image.appc.name}` } : {}),
      ...(session || call.container?.tty_info ? { io: call.container?.tty_info ? "tty" : "pipes" } : {}),
      ...(session ? { session: true } : {}),
    };
    this.table.set(key, container);
    let stage = "provisioning";
    try {
      await this.start(call, container, resolveExited, (s) => (stage = s));
      return true;
    } catch (err) {
      if (container.abort?.signal.aborted) {
        await this.destroyKilled(container, resolveExited, stage);
        throw new ContainerError(400, `Container destroyed during ${stage}`);
      }
      const message = err instanceof ContainerError ? err.message : (err as Error).message;
      log.warn(`container ${key}: launch failed during ${stage}: ${message}`);
      try {
        await this.cleanup(container);
      } catch (cleanupErr) {
        log.error(`container ${key}: cleaning up after the failed launch: ${(cleanupErr as Error).message}`);
      }
      this.table.delete(key);
      // A WAIT sent while it was provisioning hears how it ended.
      container.termination = { state: "TASK_FAILED", reason: "REASON_CONTAINER_LAUNCH_FAILED", message };
      container.state = "EXITED";
      resolveExited();
      if (err instanceof ContainerError) throw err;
      if (err instanceof NetworkError) throw new ContainerError(err.status, err.message);
      throw new ContainerError(400, message);
    } finally {
      delete container.abort;
    }
  }

  /**
   * posix/rlimits for a launch, as the init stage sets them. A hard limit above the agent's own
   * is more than the container would otherwise get: logged as a grant, with the container ID.
   */
  private rlimitsFor(info: RLimitInfo, key: string): RlimitSpec[] {
    return rlimitsOf(info).map((r) => {
      if (r.type === "RLMT_NOFILE" && r.hard > this.nrOpen) {
        const hard = r.hard === RLIM_INFINITY ? "unlimited" : r.hard;
        throw new ContainerError(
          400,
          `container.rlimit_info: RLMT_NOFILE ${hard} is above this kernel's most open files per process (fs.nr_open = ${this.nrOpen})`,
        );
      }
      const own = getRlimit(r.resource);
      if (r.hard > own.hard) {
        const show = (n: bigint) => (n === RLIM_INFINITY ? "unlimited" : String(n));
        if (!this.canRaiseRlimits) {
          throw new ContainerError(
            400,
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

  /** Image.docker.config: registry credentials for this image's pull, over --docker_config's (Mesos). */
  private credentialsOf(image: Image): { dockerConfig?: DockerConfig } {
    const secret = image.docker?.config;
    return secret ? { dockerConfig: dockerConfigOf(secret, "docker.config") } : {};
  }

  /** Awaits a step that only fills a cache (a pull): KILL_CONTAINER does not wait for it. */
  private until<T>(c: Container, step: Promise<T>, stage: string): Promise<T> {
    const signal = c.abort?.signal;
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

  /** Throws if KILL_CONTAINER stopped the launch: called after each step that makes something. */
  private check(c: Container, stage: string): void {
    if (c.abort?.signal.aborted) throw new Destroyed(stage);
  }

  /** Keeps a pull's leases with the container, or drops them if it is gone by the time the pull ends. */
  private keeper(c: Container): (release: () => void) => void {
    return (release) => {
      if (c.destroyed || !this.table.has(c.key) || this.table.get(c.key) !== c) release();
      else c.leases.push(release);
    };
  }

  /**
   * The launch's steps, in order. The checkpoint is written before the first thing is made
   * and again whenever the record learns something a restarted agent needs to take the
   * container apart or keep its layers; `onStage` names the step for a KILL that stops it.
   */
  private async start(call: LaunchContainer, c: Container, exited: () => void, onStage: (stage: string) => void): Promise<void> {
    const f = this.flags.values;
    const image = call.container?.mesos?.image;
    let confine;
    try {
      confine = this.confinement.forLaunch(call.container?.linux_info, c.key);
    } catch (err) {
      if (err instanceof ConfinementRefused) throw new ContainerError(400, err.message);
      throw err;
    }
    mkdirSync(c.runtime, { recursive: true, mode: 0o700 });
    writeCheckpoint(c, "PROVISIONING");
    // A nested container's sandbox sits in its parent's, which the parent's workload writes:
    // made there through no link, and not over a directory the workload made.
    const top = topLevel(c);
    try {
      if (c.parent) makeDirBelow(top.sandbox, relative(top.sandbox, c.sandbox), 0o750);
      else mkdirSync(c.sandbox, { recursive: true, mode: 0o750 });
    } catch (err) {
      throw new ContainerError(500, `cannot create the sandbox ${c.sandbox}: ${(err as Error).message}`);
    }
    // CNI networks first: their ADD (tens of ms of plugins) runs while the image is provisioned.
    // A nested container shares its top-level container's UTS namespace, so its hostname.
    const hostname = c.parent ? (hostnameOf(call, true), hostnameOfRunning(top)) : hostnameOf(call, false);
    const netPlan = await this.networks.plan(c.key, c.parent !== undefined, call.container?.network_infos ?? [], hostname);
    const attaching = netPlan ? this.networks.attach(netPlan) : undefined;
    attaching?.catch(() => {}); // awaited below; if the launch fails first, cleanup's DEL waits for it

    let rootfs: LaunchSpec["rootfs"];
    let config;
    if (image?.appc) {
      // Appc: the rootfs only (Mesos uses no runtime config from an ACI).
      let appcImage;
      try {
        appcImage = await this.until(c, this.appc.get(image.appc.name, image.appc.labels?.labels ?? [], image.appc.id), "provisioning");
      } catch (err) {
        if (err instanceof Destroyed) throw err;
        throw new ContainerError(400, (err as Error).message);
      }
      rootfs = await this.provisionRootfs(c, appcImage.layers, appcImage.layers.map(() => ({ whiteouts: [], opaques: [] })));
    } else if (image?.docker) {
      const record = await this.until(
        c,
        this.images.puller.pull(image.docker.name, { force: image.cached === false, keep: this.keeper(c), ...this.credentialsOf(image) }),
        "provisioning",
      );
      c.imageRef = record.reference;
      c.layers = [...record.layers];
      writeCheckpoint(c, "PROVISIONING");
      config = this.images.store.config(record.configDigest);
      const layers = record.layers.map((l) => this.images.store.layerRootfs(l));
      const records = record.layers.map((l) => {
        const r = this.images.store.layer(l)!;
        return { whiteouts: r.whiteouts, opaques: r.opaques };
      });
      rootfs = await this.provisionRootfs(c, layers, records);
    }
    this.check(c, "provisioning");

    // Without an image a nested container sees its parent's filesystem, where its sandbox is
    // <parent's sandbox as the parent sees it>/containers/<id>.
    const sandboxInContainer = rootfs ? f.sandbox_directory : c.parent ? join(c.parent.sandboxInContainer ?? c.parent.sandbox, "containers", c.id.value) : c.sandbox;
    c.sandboxInContainer = sandboxInContainer;
    if (c.parent && !rootfs && (call.container?.volumes ?? []).length > 0) {
      throw new ContainerError(400, "a nested container without its own image runs in its parent's filesystem and cannot have volumes; give it an image");
    }
    const volumes = await volumeMounts(call, {
      sandbox: c.sandbox,
      sandboxInContainer,
      topSandbox: top.sandbox,
      ...(c.parent ? { parentSandbox: c.parent.sandbox } : {}),
      dockerEnabled: (f.image_providers ?? []).includes("docker"),
      appcEnabled: (f.image_providers ?? []).includes("appc"),
      pullImage: async (volumeImage) => {
        if (volumeImage.appc) {
          const { appc } = volumeImage;
          try {
            return (await this.until(c, this.appc.get(appc.name, appc.labels?.labels ?? [], appc.id), "provisioning")).layers;
          } catch (err) {
            if (err instanceof Destroyed) throw err;
            throw new ContainerError(400, (err as Error).message);
          }
        }
        const docker = volumeImage.docker!;
        const record = await this.until(
          c,
          this.images.puller.pull(docker.name, {
            force: volumeImage.cached === false,
            keep: this.keeper(c),
            ...this.credentialsOf(volumeImage),
          }),
          "provisioning",
        );
        c.volumeImages = [...(c.volumeImages ?? []), record.reference];
        c.layers = [...new Set([...(c.layers ?? []), ...record.layers])];
        writeCheckpoint(c, "PROVISIONING");
        return record.layers.map((l) => this.images.store.layerRootfs(l));
      },
    });
    for (const v of volumes) {
      if (v.propagation === "bidirectional") {
        log.warn(
          `privilege: container ${c.key} gets host path ${v.source} at ${v.target} with BIDIRECTIONAL mount propagation: ` +
            "what it mounts there appears on the host",
        );
      }
    }
    this.check(c, "provisioning");
    onStage("preparing");
    let command;
    try {
      const context = { sandbox: sandboxInContainer, useImage: !f.docker_ignore_runtime };
      const resolved = { ...call, command: resolveSecretEnvironment(call.command) };
      command = c.session ? sessionCommand(resolved, c.parent!) : resolveCommand(resolved.command, config, context);
    } catch (err) {
      if (err instanceof CommandError) throw new ContainerError(400, err.message);
      throw err;
    }
    const user =
      (f.switch_user && call.command?.user ? call.command.user : undefined) ?? c.parent?.user ?? ((config?.config?.User ?? undefined) || undefined);
    c.user = user;

    c.limits = limitsOf(call);
    if (c.parent && call.container?.linux_info?.share_cgroups !== false) {
      c.cgroup = c.parent.cgroup; // shared: the parent's limits cover it (and it is not removed with it)
    } else if (this.cgroups.kind !== "none") {
      try {
        c.cgroup = ContainerCgroup.create(this.cgroups, f.cgroups_root, c.key, {
          ...c.limits,
          cfs: f.cgroups_enable_cfs,
          pids: f.default_container_pids_limit,
        });
      } catch (err) {
        throw new ContainerError(500, `cannot set up the cgroups of ${c.key}: ${(err as Error).message}`);
      }
    } else if (c.limits.cpus !== undefined || c.limits.memBytes !== undefined) {
      log.warn(`container ${c.key}: resources are not enforced: ${this.cgroups.why}`);
    }
    // OOM kills already counted in its cgroup (a shared parent's, or a directory left by an
    // earlier container of this name) are not its own.
    c.oomBaseline = c.cgroup?.oomKills() ?? 0;

    // namespaces/ipc: which IPC namespace and /dev/shm; a PRIVATE one is a tmpfs mounted here,
    // in the agent's mount namespace, where a nested container can bind it too (as Mesos).
    const ipc = ipcPlan(call, {
      hasRootfs: rootfs !== undefined,
      ...(c.parent ? { parent: { key: c.parent.key, ...(c.parent.shm ? { shareable: c.parent.shm } : {}) } } : {}),
      privateShmPath: join(c.runtime, "shm"),
      ...(f.default_container_shm_size !== undefined ? { defaultShmBytes: f.default_container_shm_size } : {}),
    });
    if (ipc.shareable) c.shm = ipc.shareable;
    if (ipc.privateShm) mountPrivateShm(join(c.runtime, "shm"), ipc.privateShm.sizeBytes);
    if (ipc.namespace === "agent") {
      log.warn(`privilege: container ${c.key} shares the agent's IPC namespace and /dev/shm (ipc_mode SHARE_PARENT)`);
    }
    const rlimits = call.container?.rlimit_info ? this.rlimitsFor(call.container.rlimit_info, c.key) : undefined;
    const pidNamespace = pidNamespaceOf(call, rootfs !== undefined);
    if (pidNamespace === "agent") log.warn(`privilege: container ${c.key} shares the agent's PID namespace (share_pid_namespace)`);
    if (this.extraDevices !== "") log.info(`privilege: container ${c.key} may use the --allowed_devices ${this.extraDevices}`);

    onStage("fetching");
    try {
      await fetchUris(call.command?.uris, c.sandbox, c.abort?.signal);
    } catch (err) {
      this.check(c, "fetching");
      if (err instanceof FetchError) throw new ContainerError(400, err.message);
      throw err;
    }
    this.check(c, "fetching");

    // A nested container joins its root's network namespace and sees its root's /etc files.
    const joined = attaching ? await attaching : c.parent ? this.networks.joinedBy(c.key.split(".")[0]!) : undefined;
    // Mesos: bind to the container's address (a session has its parent's environment as it is)
    if (joined && !c.session) command.env.LIBPROCESS_IP = "0.0.0.0";
    const hostnameFile = join(c.runtime, "hostname");
    writeFileSync(hostnameFile, `${hostname}\n`);
    const hostsFile = join(c.runtime, "hosts");
    writeFileSync(hostsFile, etcHosts(hostname));
    const cgroupJoin = c.cgroup?.join(this.shared);
    const cgroupMounts = rootfs ? c.cgroup?.mounts(this.shared) : undefined;
    const spec: LaunchSpec = {
      id: c.key,
      hostname,
      ...(rootfs ? { rootfs } : {}),
      sandbox: { host: c.sandbox, container: sandboxInContainer, ...(c.parent ? { within: top.sandbox } : {}) },
      ...(volumes.length > 0 ? { volumes } : {}),
      ...(c.parent?.pid !== undefined ? { parentPid: c.parent.pid } : {}),
      ...(pidNamespace ? { pidNamespace } : {}),
      ...(joined ? { netns: joined.netns } : {}),
      executable: command.executable,
      argv: command.argv,
      env: command.env,
      workingDir: command.workingDir,
      ...(user ? { user } : {}),
      etc: joined?.etc ?? {
        hosts: hostsFile,
        ...(existsSync("/etc/resolv.conf") ? { resolv: "/etc/resolv.conf" } : {}),
        hostname: hostnameFile,
      },
      ...(cgroupJoin ? { cgroupJoin } : {}),
      confine,
      ...(call.container?.linux_info?.ipc_mode !== undefined || ipc.shm
        ? { ipc: { namespace: ipc.namespace, ...(ipc.shm ? { shm: ipc.shm } : {}) } }
        : {}),
      ...(rlimits ? { rlimits } : {}),
      kernelFiles: this.kernelFiles,
      ...(cgroupMounts ? { cgroupMounts } : {}),
      ...(rootfs && this.deviceNodes.length > 0 ? { devices: this.deviceNodes } : {}),
      stdout: join(c.sandbox, "stdout"),
      stderr: join(c.sandbox, "stderr"),
      ...(c.io
        ? { io: { ...(c.io === "tty" ? { tty: ttyOf(call)! } : {}), ...(c.session ? { waitForReader: true } : {}), runtimeDir: c.runtime } }
        : {}),
      ...(c.session ? { debug: true } : {}),
      statusFile: join(c.runtime, "status"),
      pidFile: join(c.runtime, "pid"),
    };
    const specPath = join(c.runtime, "launch.json");
    writeStateFile(specPath, JSON.stringify(spec));

    // A whole-process move takes the kernel's threadgroup lock, whose first use in a while
    // waits for an RCU grace period (~13 ms): take that wait in the gc worker now, while
    // stage 2 sets up, so its own move finds it paid. (A thread move, v1, takes no such lock.)
    if (cgroupJoin?.move === "process" && this.ownProcs) void this.gc.call("warmCgroups", { procs: this.ownProcs, pid: process.pid }).catch(() => {});

    // From here a workload may exist: a restarted agent looks for the launcher's pid file.
    onStage("launching");
    c.launching = true;
    writeCheckpoint(c, "LAUNCHING");
    // Normally the long-lived launcher starts stage 2 (one start of the binary per launch);
    // if it cannot be had, a stage 1 process of this container's own does the same job.
    let started: { pid: number } | { error: string } | undefined;
    try {
      started = await this.launcher.launch(specPath);
    } catch (err) {
      log.warn(`container launcher unavailable (${(err as Error).message}); using a stage 1 process for ${c.key}`);
    }
    if (started === undefined && c.io) {
      // Only the launcher keeps a container's terminal or pipes (its I/O switchboard).
      const what = c.session ? "a session" : "a container with tty_info";
      throw new ContainerError(500, `${what} needs ucr's launcher, which could not be had`);
    }
    if (started === undefined) {
      const stage1 = await this.startStage1(spec, specPath);
      if ("error" in stage1) throw new ContainerError(400, stage1.error);
      c.pid = stage1.pid;
    } else if ("error" in started) {
      throw new ContainerError(400, started.error);
    } else {
      c.pid = started.pid;
    }
    const unconfined = this.confinement.verify(c.pid, confine);
    if (unconfined) {
      try {
        process.kill(c.pid, "SIGKILL");
      } catch {
        // already gone
      }
      throw new ContainerError(500, `container ${c.key} is not confined as decided (${unconfined}): killed; an init stage from an older ucr?`);
    }
    c.pidStart = startTime(c.pid);
    // Killed while the launcher started it: it ran for a moment; it goes now (destroyKilled).
    this.check(c, "launching");
    c.state = "RUNNING";
    delete c.launching;
    writeCheckpoint(c, "RUNNING");
    log.info(`container ${c.key} running (pid ${c.pid}${c.image ? `, image ${c.image}` : ""}, ${this.backend})`);
    // Not our child either way: the status file the launcher (or stage 1) writes says when it ends.
    this.watchExit(c, spec.statusFile, exited);
    // Once LAUNCH is answered; an OOM kill before the watch is in place is found by the check.
    this.afterReply(c, () => {
      this.oom.watch(c);
      this.oom.check(c);
    });
  }

  /**
   * Runs `then`, or else writes `c`'s checkpoint in its current state, once the call being
   * answered has been: on the launch and exit paths these are not worth a reply's wait.
   */
  private afterReply(c: Container, then?: () => void): void {
    setImmediate(() => {
      if (this.table.get(c.key) !== c || !existsSync(c.runtime)) return;
      if (then) return then();
      const state = c.state === "EXITED" ? "EXITED" : c.state === "RUNNING" ? "RUNNING" : c.launching ? "LAUNCHING" : "PROVISIONING";
      try {
        writeCheckpoint(c, state);
      } catch (err) {
        log.warn(`container ${c.key}: cannot checkpoint it (${state}): ${(err as Error).message}`);
      }
    });
  }

  /** The rootfs from `layers` (base first), in the container's provisioner dir, for this backend. */
  private async provisionRootfs(
    c: Container,
    layers: string[],
    records: Array<{ whiteouts: string[]; opaques: string[] }>,
  ): Promise<LaunchSpec["rootfs"]> {
    this.check(c, "provisioning");
    const dir = join(c.provisionerDir!, "backends", this.backend);
    try {
      const provisioned = await provision(this.backend, layers, dir, async (ls, dest) => {
        await this.gc.call("copyLayers", { layers: ls, dest, records });
      });
      return provisioned.rootfs;
    } catch (err) {
      if (err instanceof BackendError) throw new ContainerError(400, err.message);
      throw err;
    }
  }

  /** The fallback: `ucr __init SPEC` as this container's own stage 1. */
  private async startStage1(spec: LaunchSpec, specPath: string): Promise<{ pid: number } | { error: string }> {
    const stdout = openSync(spec.stdout!, "a", 0o640);
    const stderr = openSync(spec.stderr!, "a", 0o640);
    let proc;
    try {
      proc = Bun.spawn(selfCommand("__init", specPath), {
        stdio: ["ignore", stdout, stderr, "pipe"],
        env: {},
        detached: true, // its own session: the agent's signals and death do not reach it
      });
    } finally {
      closeSync(stdout);
      closeSync(stderr);
    }
    const report = await readAll((proc as unknown as { stdio: number[] }).stdio[3]!);
    if (report.trim() !== "") {
      await proc.exited;
      return { error: report.trim() };
    }
    proc.unref();
    return { pid: Number(readFileSync(spec.pidFile, "utf8").trim()) };
  }

  /** Settles the container with `status`, or else the one the launcher wrote. */
  private exited(c: Container, done: () => void, status?: number): void {
    if (c.state === "EXITED") return;
    // No status file (the launcher could not write it): what the launcher reported, if we heard it.
    // Mesos: no status written means it was killed.
    c.exitStatus = status ?? launcherStatus(c.runtime) ?? this.launcher.exitStatus(c.key) ?? 9;
    if (!c.limitation && oomKillsSinceLaunch(c) > 0) setMemoryLimitation(c);
    c.state = "EXITED";
    delete c.launching;
    this.oom.stop(c);
    log.info(`container ${c.key} exited with status ${c.exitStatus}${c.limitation ? ` (${c.limitation.reason})` : ""}`);
    this.endDescendants(c);
    // CNI DEL now, while the namespace is still held; REMOVE waits for it (and retries a failure).
    void this.networks.detach(c.key).catch((err: Error) => log.error(`${err.message} (retried at REMOVE)`));
    done();
    // How it ended outlives this agent (a terminated record, kept until REMOVE_CONTAINER);
    // until it is written, the launcher's status file says the same.
    this.afterReply(c);
  }

  /**
   * Nested containers end with their parent, as Mesos destroys them: those in its PID
   * namespace die with it; those with one of their own (the default with an image) are
   * killed here, and ones still being launched are stopped.
   */
  private endDescendants(c: Container): void {
    for (const x of this.list()) {
      if (!x.key.startsWith(`${c.key}.`) || x.state === "EXITED") continue;
      if (x.state === "PROVISIONING") {
        if (x.abort && !x.abort.signal.aborted) x.abort.abort();
        continue;
      }
      if (x.pid === undefined || !stillRunning(x.pid, x.pidStart)) continue;
      log.info(`container ${x.key}: its parent ${c.key} ended; killing it`);
      try {
        process.kill(x.pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }

  /**
   * A launch that KILL_CONTAINER stopped: the record says so first (a restart finishes the
   * job), then everything it made goes; the record stays, terminated, until REMOVE.
   */
  private async destroyKilled(c: Container, settle: () => void, stage: string): Promise<void> {
    const ran = c.pid !== undefined;
    c.termination = {
      state: "TASK_KILLED",
      reason: "REASON_TASK_KILLED_DURING_LAUNCH",
      message: `Container destroyed during ${stage}: KILL_CONTAINER arrived ${
        ran ? "as its workload started; it was killed" : "before its workload started; it never ran"
      }`,
    };
    c.destroyed = true;
    log.info(`container ${c.key}: ${c.termination.message}`);
    // Its CNI networks (an ADD may be under way): DEL them; a failure is retried at REMOVE.
    // (After a restart, the networks' own recovery does this for containers it destroys.)
    await this.networks.detach(c.key).catch((err: Error) => log.error(`container ${c.key}: ${err.message} (retried at REMOVE)`));
    await this.destroy(c, settle, ran);
  }

  /**
   * Destroys a container that is not removed: marks it destroyed in its checkpoint, takes it
   * apart, and settles it as a terminated record (its runtime dir keeps the checkpoint).
   * `ran`: a workload was started, so its exit status is read (or 9 if none was written).
   */
  private async destroy(c: Container, settle: () => void, ran: boolean): Promise<void> {
    c.destroyed = true;
    try {
      writeCheckpoint(c, "EXITED");
    } catch (err) {
      log.warn(`container ${c.key}: cannot checkpoint its destruction: ${(err as Error).message}`);
    }
    try {
      await this.takeApart(c);
    } catch (err) {
      log.error(`container ${c.key}: destroying it: ${(err as Error).message}`);
    }
    clearRuntime(c.runtime);
    for (const release of c.leases.splice(0)) release();
    if (ran) c.exitStatus ??= 9;
    c.state = "EXITED";
    delete c.launching;
    try {
      writeCheckpoint(c, "EXITED");
    } catch {
      // reported above
    }
    settle();
  }

  /** Kills, unmounts and deletes what `c` has (all but its runtime dir). */
  private async takeApart(c: Container): Promise<void> {
    this.oom.stop(c);
    const f = this.flags.values;
    await takeApart(
      {
        key: c.key,
        ...(c.pid !== undefined && (c.state !== "EXITED" || c.destroyed) ? { pid: c.pid } : {}),
        ...(c.pidStart !== undefined ? { pidStart: c.pidStart } : {}),
        ...(c.cgroupDirs ? { cgroup: ContainerCgroup.existing(this.cgroups, c.cgroupDirs) } : {}),
        sandbox: c.sandbox,
        ...(c.provisionerDir ? { provisionerDir: c.provisionerDir } : {}),
        runtime: c.runtime,
      },
      async (path) => {
        await this.gc.call("remove", { path, within: f.work_dir });
      },
    );
  }

  /**
   * After a restart: reconciles the checkpoints, the launcher's pid and status files and
   * the cgroups under --cgroups_root (recovery.ts). Every container found is adopted or
   * destroyed and reported; what belongs to no container is killed and removed.
   */
  async recover(): Promise<RecoveryResult> {
    const f = this.flags.values;
    // A launcher that outlived the last agent knows the statuses it could not write down.
    await this.launcher.attach();
    const result = await recoverContainers({
      layout: this.cgroups,
      workDir: f.work_dir,
      runtimeDir: f.runtime_dir,
      cgroupsRoot: f.cgroups_root,
      add: (c) => this.table.set(c.key, c),
      has: (key) => this.table.has(key),
      adopt: (c, settle) => {
        this.watchExit(c, join(c.runtime, "status"), settle);
        // Mesos destroys DEBUG containers on recovery: their client went with the last agent.
        if (c.session) endSession(c, "the agent restarted, and its client went with the agent before");
        this.oom.watch(c);
        // An OOM kill while no agent watched ends it now.
        this.oom.check(c);
      },
      exited: (c, settle, status) => this.exited(c, settle, status),
      destroy: (c, settle, termination: Termination, ran) => {
        c.termination = termination;
        return this.destroy(c, settle, ran);
      },
      removeTree: async (path) => {
        await this.gc.call("remove", { path, within: f.work_dir });
      },
    });
    // Networks of containers that ended meanwhile, or whose launch the agent died in, are DELeted.
    await this.networks.recover((key) => this.table.get(key)?.state === "RUNNING");
    // A nested container whose parent ended while no agent watched ends now.
    for (const c of this.list()) if (c.state === "EXITED" && !c.parent) this.endDescendants(c);
    for (const c of this.list()) if (c.state === "EXITED" && c.parent) this.endDescendants(c);
    return result;
  }

  /**
   * The init stage is no longer our child: watch its runtime dir for the status file it
   * writes at the end (inotify), and poll too, in case it died before writing one.
   */
  private watchExit(c: Container, statusFile: string, settle: () => void): void {
    let deadSince: number | undefined;
    const stop = () => {
      watcher.close();
      clearInterval(timer);
      this.settle.delete(c.key);
    };
    const check = () => {
      if (c.state === "EXITED") return stop();
      if (existsSync(statusFile)) {
        this.exited(c, settle);
        return stop();
      }
      if (c.pid !== undefined && !stillRunning(c.pid, c.pidStart)) {
        deadSince ??= Date.now();
        // The launcher (or its reaper, if the launcher died) writes the status just after the
        // workload is reaped: give it a moment, and as long as it takes while one of them lives
        // (a loaded machine can delay it by seconds); a minute at most.
        const waited = Date.now() - deadSince;
        if (waited > 2000 && (waited > 60_000 || !launcherAlive(this.launcher.socketPath))) {
          this.exited(c, settle);
          stop();
        }
      }
    };
    const watcher = watch(c.runtime, () => check());
    const timer = setInterval(check, 250);
    timer.unref();
    this.settle.set(c.key, (status) => {
      if (status === undefined) return check();
      this.exited(c, settle, status);
      stop();
    });
  }

  /**
   * Disk a container uses: its sandbox plus what it wrote over its image (the overlay upper
   * dir or the copied rootfs), measured like du(1) in the gc worker, at most every 5 s.
   * `disk` is accounted and reported, not enforced.
   */
  async diskUsed(c: Container): Promise<number | undefined> {
    if (c.disk && Date.now() - c.disk.at < 5000) return c.disk.bytes;
    const paths = [c.sandbox, ...(c.provisionerDir ? [c.provisionerDir] : [])];
    try {
      const sizes = await Promise.all(paths.map((path) => this.gc.call<{ bytes: number }>("du", { path })));
      const bytes = sizes.reduce((sum, s) => sum + s.bytes, 0);
      c.disk = { bytes, at: Date.now() };
      return bytes;
    } catch {
      return c.disk?.bytes;
    }
  }

  /** Resolves once `c` is no longer being provisioned (it runs, or it ended). */
  async launched(c: Container): Promise<void> {
    while (c.state === "PROVISIONING" && this.table.get(c.key) === c) await Bun.sleep(25);
  }

  async wait(id: ContainerID): Promise<Container> {
    const c = this.get(id);
    if (!c) throw new ContainerError(404, `Container '${idKey(id)}' cannot be found`);
    if (c.state === "EXITED") return c;
    if (this.shuttingDown) throw shutdownError(c);
    let interrupt!: (err: Error) => void;
    const interrupted = new Promise<never>((_, reject) => (interrupt = reject));
    this.waiters.set(interrupt, c);
    try {
      await Promise.race([c.exited, interrupted]);
    } finally {
      this.waiters.delete(interrupt);
    }
    return c;
  }

  /**
   * Signals the workload. One still provisioning has none: it is destroyed (Mesos), its
   * launch fails, and WAIT reports it killed.
   */
  kill(id: ContainerID, signal: number): void {
    const c = this.get(id);
    if (!c || c.state === "EXITED") throw new ContainerError(404, `Container '${idKey(id)}' cannot be found (or is already killed)`);
    if (c.state === "PROVISIONING") {
      if (c.abort && !c.abort.signal.aborted) {
        log.info(`container ${c.key}: KILL_CONTAINER while it is provisioning: destroying it`);
        c.abort.abort();
      }
      return;
    }
    if (c.pid === undefined) return;
    try {
      // The workload is PID 1 of its namespace: SIGKILL to it ends every process in there.
      process.kill(c.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  async remove(id: ContainerID): Promise<void> {
    const c = this.get(id);
    if (!c) throw new ContainerError(404, `Container '${idKey(id)}' cannot be found`);
    if (c.state !== "EXITED") {
      throw new ContainerError(500, c.parent ? "Nested container has not terminated yet" : `Container '${c.key}' has not terminated yet`);
    }
    // Its nested containers ended with it (they share its PID namespace); they go with it.
    for (const child of this.list().filter((x) => x.key.startsWith(`${c.key}.`)).reverse()) {
      await child.exited;
      await this.cleanup(child);
      this.table.delete(child.key);
    }
    await this.cleanup(c);
    this.table.delete(c.key);
  }

  /** Removes the container's processes, cgroups, mounts, rootfs, sandbox and runtime state. */
  private async cleanup(c: Container): Promise<void> {
    // CNI DEL first, while the namespace is held: a failure keeps the container for another REMOVE.
    await this.networks.detach(c.key).catch((err: Error) => {
      throw new ContainerError(500, `${err.message}; the container is kept: REMOVE it again to retry`);
    });
    await this.takeApart(c);
    rmSync(c.runtime, { recursive: true, force: true });
    for (const release of c.leases.splice(0)) release();
  }

  /**
   * The agent is stopping: blocked WAITs are answered now (503, as the container outlives
   * this agent and the next one recovers it) instead of holding the shutdown; watches stop.
   */
  shutdown(): void {
    this.shuttingDown = true;
    for (const [interrupt, c] of [...this.waiters]) interrupt(shutdownError(c));
    this.waiters.clear();
    this.oom.stopAll();
  }
}

function shutdownError(c: Container): ContainerError {
  return new ContainerError(
    503,
    `Agent is shutting down: container '${c.key}' keeps running and the next agent recovers it; send WAIT_CONTAINER to it`,
  );
}

/** Everything written to a pipe until every writer closed it. */
async function readAll(fd: number): Promise<string> {
  try {
    return await Bun.file(fd).text();
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}
