// The containers table: register, wait, kill, remove and list standalone containers, and
// supervise what runs. One state machine per container (container.ts): PROVISIONING ->
// RUNNING -> EXITED -> (removed). A launch registers the record, checkpoints it before any side
// effect (checkpoint.ts) and runs the named steps of launch.ts; so an agent killed at any
// instruction leaves nothing the next one cannot find (recovery.ts). The exit status comes
// from the file the launcher writes, so it is there even when the agent was not. (Over 400
// lines: the table and the supervision of what it started share every record's life: exit,
// destroy and removal each change the table's own state.)
import { existsSync, rmSync, watch } from "node:fs";
import { join } from "node:path";
import type { LoadedFlags } from "../config/flags.ts";
import { UcrError, internal, invalid, messageOf, notFound, precondition, unavailable } from "../errors.ts";
import type { ImageService } from "../images/service.ts";
import { log } from "../log.ts";
import type { LaunchContainer } from "../mesos/calls.ts";
import type { ContainerID } from "../mesos/messages.ts";
import type { CniNetworks } from "../network/cni.ts";
import type { LayerWhiteouts } from "../provisioner/copy.ts";
import { Provisioner } from "../provisioner/provisioner.ts";
import { SparePool } from "../provisioner/spares.ts";
import { ContainerCgroup, confineDevices, detectCgroups, ownProcsFile, type CgroupLayout, type SharedCgroups } from "../runtime/cgroups.ts";
import { DEFAULT_DEVICE_RULES, DeviceSetupError, allowedDevices, ruleText, type DeviceNode } from "../runtime/devices.ts";
import { kernelFilesHere } from "../runtime/mounts.ts";
import { LauncherClient, launcherAlive } from "../runtime/launcher.ts";
import type { WorkerClient } from "../threads/rpc.ts";
import type { DiskOps } from "../gc/disk.ts";
import { stillRunning } from "../util/process.ts";
import { writeCheckpoint } from "./checkpoint.ts";
import { Confinement } from "./confinement.ts";
import { containerPaths, idKey, toExited, type Container, type Exited, type Provisioning, type Termination } from "./container.ts";
import { clearRuntime, launcherStatus, takeApart } from "./destroy.ts";
import { Launch, type LaunchDeps, type Stage } from "./launch.ts";
import { checkLaunch, checkSession, ownsCgroups } from "./launch-rules.ts";
import { endSession } from "./session.ts";
import { OomGuard, oomKillsSinceLaunch, setMemoryLimitation } from "./oom.ts";
import { recoverContainers, type RecoveryResult } from "./recovery.ts";

export class Containers {
  private readonly table = new Map<string, Container>();
  readonly cgroups: CgroupLayout;
  /** Image layers to rootfs, with the backend the flags or the machine chose. */
  readonly provisioner: Provisioner;
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
  /** Which of the kernel files every container gets masked or read-only this kernel has (looked up once). */
  private readonly kernelFiles = kernelFilesHere();
  /** How to settle a running container now, with its wait status if known (set by watchExit). */
  private readonly settle = new Map<string, (status?: number) => void>();
  /** Ends a container on an OOM kill in its cgroup. */
  private readonly oom = new OomGuard((c) => writeCheckpoint(c, "RUNNING"));
  /** WAIT_CONTAINER calls blocked on a container: told when the agent shuts down. */
  private readonly waiters = new Map<(err: Error) => void, Container>();
  private shuttingDown = false;
  private deps: LaunchDeps | undefined;
  /** Sandboxes, rootfs skeletons and runtime dirs made ahead of launches, in the disk worker. */
  readonly spares: SparePool;

  constructor(
    private readonly flags: LoadedFlags,
    images: ImageService,
    /** The disk worker: deletes and measures trees, copies layers, warms cgroup locks. */
    private readonly gc: WorkerClient<DiskOps>,
    /** CNI networks (network/cni); without --network_cni_config_dir, host network only. */
    readonly networks: CniNetworks,
  ) {
    const f = flags.values;
    const copy = async (layers: string[], dest: string, records: LayerWhiteouts[]) => {
      await this.gc.call("copyLayers", { layers, dest, records });
    };
    this.provisioner = new Provisioner(images, join(f.work_dir, "provisioner"), f.image_provisioner_backend, copy);
    const spares = join(f.work_dir, "spares");
    this.spares = new SparePool({ sandbox: spares, rootfs: spares, runtime: join(f.runtime_dir, "spares") }, this.provisioner.backend, {
      make: (args) => this.gc.call("makeSpares", args),
      remove: async (path, within) => {
        await this.gc.call("remove", { path, within });
      },
    });
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
    this.launcher = new LauncherClient(socket, (key, status) => this.settle.get(key)?.(status));
    this.confinement = new Confinement(f);
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
    if (this.shuttingDown) throw unavailable("Agent is shutting down");

    const image = call.container?.mesos?.image;
    // Every place the launch will create something, known before it creates any of them.
    const paths = containerPaths({ workDir: f.work_dir, runtimeDir: f.runtime_dir }, id);
    const cgroupDirs = ownsCgroups(call) ? ContainerCgroup.dirsFor(this.cgroups, f.cgroups_root, key) : [];
    // An idle agent's launcher has exited: it starts now, while the image is pulled and mounted.
    this.launcher.prepare();
    let resolveExited!: () => void;
    const container: Provisioning = {
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
    let stage: Stage = "provisioning";
    const launch = new Launch(this.launchDeps(), call, container, (s) => (stage = s));
    try {
      const running = await launch.run();
      const image = running.image ? `, image ${running.image}` : "";
      log.info(`container ${key} running (pid ${running.pid}${image}, ${this.provisioner.backend})`);
      // Not our child either way: the status file the launcher (or stage 1) writes says when it ends.
      this.watchExit(running, launch.statusFile, resolveExited);
      // Once LAUNCH is answered; an OOM kill before the watch is in place is found by the check.
      this.afterReply(running, () => {
        this.oom.watch(running);
        this.oom.check(running);
      });
      return true;
    } catch (err) {
      if (container.abort?.signal.aborted) {
        await this.destroyKilled(container, resolveExited, stage);
        throw invalid(`Container destroyed during ${stage}`);
      }
      const message = messageOf(err);
      log.warn(`container ${key}: launch failed during ${stage}: ${message}`);
      try {
        await this.cleanup(container);
      } catch (cleanupErr) {
        log.error(`container ${key}: cleaning up after the failed launch: ${messageOf(cleanupErr)}`);
      }
      this.table.delete(key);
      // A WAIT sent while it was provisioning hears how it ended.
      container.termination = { state: "TASK_FAILED", reason: "REASON_CONTAINER_LAUNCH_FAILED", message };
      toExited(container, undefined);
      resolveExited();
      // Ours say their kind; anything else is a failure of ucr or the machine (a full disk).
      if (err instanceof UcrError) throw err;
      throw internal(message, err);
    } finally {
      delete container.abort;
    }
  }

  /** What a launch's steps use of the agent. */
  private launchDeps(): LaunchDeps {
    return (this.deps ??= {
      flags: this.flags.values,
      provisioner: this.provisioner,
      networks: this.networks,
      confinement: this.confinement,
      cgroups: this.cgroups,
      launcher: this.launcher,
      keeper: (c) => this.keeper(c),
      devices: { shared: this.shared, nodes: this.deviceNodes, extra: this.extraDevices },
      kernelFiles: this.kernelFiles,
      spares: this.spares,
      warmCgroups: () => {
        if (this.ownProcs) void this.gc.call("warmCgroups", { procs: this.ownProcs, pid: process.pid }).catch(() => {});
      },
    });
  }

  /** Keeps a pull's leases with the container, or drops them if it is gone by the time the pull ends. */
  private keeper(c: Container): (release: () => void) => void {
    return (release) => {
      if (c.destroyed || !this.table.has(c.key) || this.table.get(c.key) !== c) release();
      else c.leases.push(release);
    };
  }

  /**
   * Runs `then`, or else writes `c`'s checkpoint in its current state, once the call being
   * answered has been: on the launch and exit paths these are not worth a reply's wait.
   */
  private afterReply(c: Container, then?: () => void): void {
    setImmediate(() => {
      if (this.table.get(c.key) !== c || !existsSync(c.runtime)) return;
      if (then) return then();
      const state = c.state === "PROVISIONING" ? (c.launching ? "LAUNCHING" : "PROVISIONING") : c.state;
      try {
        writeCheckpoint(c, state);
      } catch (err) {
        log.warn(`container ${c.key}: cannot checkpoint it (${state}): ${(err as Error).message}`);
      }
    });
  }

  /** Settles the container with `status`, or else the one the launcher wrote. */
  private exited(c: Container, done: () => void, status?: number): void {
    if (c.state === "EXITED") return;
    if (!c.limitation && oomKillsSinceLaunch(c) > 0) setMemoryLimitation(c);
    // No status file (the launcher could not write it): what the launcher reported, if we heard it.
    // Mesos: no status written means it was killed.
    const exited = toExited(c, status ?? launcherStatus(c.runtime) ?? this.launcher.exitStatus(c.key) ?? 9);
    this.oom.stop(c);
    log.info(`container ${c.key} exited with status ${exited.exitStatus}${c.limitation ? ` (${c.limitation.reason})` : ""}`);
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
      if (!stillRunning(x.pid, x.pidStart)) continue;
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
    const exited = toExited(c, undefined);
    if (ran) exited.exitStatus ??= 9;
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
    // It may have ended already (a short workload, a busy agent): the launcher's report came
    // before this watch, or the status file is written; not found only by the poll, 250 ms on.
    const heard = c.pid !== undefined ? this.launcher.exitStatusOf(c.key, c.pid) : undefined;
    if (heard !== undefined) {
      this.exited(c, settle, heard);
      stop();
    } else {
      check();
    }
  }

  /**
   * Disk a container uses: its sandbox plus what it wrote over its image (the overlay upper
   * dir or the copied rootfs), measured like du(1) in the disk worker, at most every 5 s.
   * `disk` is accounted and reported, not enforced.
   */
  async diskUsed(c: Container): Promise<number | undefined> {
    if (c.disk && Date.now() - c.disk.at < 5000) return c.disk.bytes;
    const paths = [c.sandbox, ...(c.provisionerDir ? [c.provisionerDir] : [])];
    try {
      const sizes = await Promise.all(paths.map((path) => this.gc.call("du", { path })));
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

  async wait(id: ContainerID): Promise<Exited> {
    const c = this.get(id);
    if (!c) throw notFound(`Container '${idKey(id)}' cannot be found`);
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
    // `exited` resolves only once the record is EXITED (exited(), destroy(), a failed launch).
    return c as Container as Exited;
  }

  /**
   * Signals the workload. One still provisioning has none: it is destroyed (Mesos), its
   * launch fails, and WAIT reports it killed.
   */
  kill(id: ContainerID, signal: number): void {
    const c = this.get(id);
    if (!c || c.state === "EXITED") throw notFound(`Container '${idKey(id)}' cannot be found (or is already killed)`);
    if (c.state === "PROVISIONING") {
      if (c.abort && !c.abort.signal.aborted) {
        log.info(`container ${c.key}: KILL_CONTAINER while it is provisioning: destroying it`);
        c.abort.abort();
      }
      return;
    }
    try {
      // The workload is PID 1 of its namespace: SIGKILL to it ends every process in there.
      process.kill(c.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  async remove(id: ContainerID): Promise<void> {
    const c = this.get(id);
    if (!c) throw notFound(`Container '${idKey(id)}' cannot be found`);
    if (c.state !== "EXITED") {
      throw precondition(c.parent ? "Nested container has not terminated yet" : `Container '${c.key}' has not terminated yet`);
    }
    // Its nested containers ended with it (they share its PID namespace); they go with it.
    for (const child of this.list()
      .filter((x) => x.key.startsWith(`${c.key}.`))
      .reverse()) {
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
      throw internal(`${err.message}; the container is kept: REMOVE it again to retry`);
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
    this.spares.stop();
    for (const [interrupt, c] of [...this.waiters]) interrupt(shutdownError(c));
    this.waiters.clear();
    this.oom.stopAll();
  }
}

function shutdownError(c: Container): UcrError {
  return unavailable(
    `Agent is shutting down: container '${c.key}' keeps running and the next agent recovers it; send WAIT_CONTAINER to it`,
  );
}
