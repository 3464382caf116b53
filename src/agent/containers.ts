// The containers table: launch (validate, pull, provision, sandbox, start `ucr __init`),
// wait, kill, remove and list, for standalone containers. One state machine per container:
// PROVISIONING -> RUNNING -> EXITED -> (removed). The exit status comes from the file the
// init stage writes, so it is there even when the agent was not.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, watch, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ContainerID, Resource } from "../api/proto.ts";
import type { LaunchContainer } from "../api/calls.ts";
import type { Backend, LoadedFlags } from "../config/flags.ts";
import { AppcStore } from "../images/appc.ts";
import { BackendError, chooseBackend, provision } from "../images/backends.ts";
import type { ImageService } from "../images/service.ts";
import { log } from "../log.ts";
import { ContainerCgroup, detectCgroups, ownProcsFile, type CgroupLayout } from "../runtime/cgroups.ts";
import { FetchError, fetchUris } from "./fetcher.ts";
import { CommandError, resolveCommand } from "../runtime/command.ts";
import { LauncherClient } from "../runtime/launcher.ts";
import { selfCommand, type LaunchSpec, type VolumeSpec } from "../runtime/spec.ts";
import { writeStateFile } from "../runtime/state.ts";
import type { WorkerClient } from "../workers/rpc.ts";
import { bootId, startTime, stillRunning } from "../util/process.ts";

export class ContainerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ContainerError";
  }
}

export type State = "PROVISIONING" | "RUNNING" | "EXITED";

export interface Container {
  id: ContainerID;
  key: string;
  state: State;
  sandbox: string;
  runtime: string;
  provisionerDir?: string;
  /** Host pid of the workload (PID 1 in its namespace) once it runs. */
  pid?: number;
  /** When that process started (clock ticks since boot): tells it from a later one with its pid. */
  pidStart?: number;
  /** Raw wait(2) status once it exited; undefined if no process ran. */
  exitStatus?: number;
  message?: string;
  /** Set when the agent's limits killed it (Mesos' TASK_FAILED + REASON_CONTAINER_LIMITATION_MEMORY). */
  limitation?: { reason: string; resources: Resource[] };
  cgroup?: ContainerCgroup;
  /** Where the workload sees its sandbox. */
  sandboxInContainer?: string;
  /** The container this one is nested in. */
  parent?: Container;
  /** The user it runs as (nested containers inherit it). */
  user?: string;
  /** Images mounted as volumes (kept from GC while the container exists). */
  volumeImages?: string[];
  /** Canonical reference of its image (what GC must keep). */
  imageRef?: string;
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

/** "c1" or "c1.child" (Mesos' string form of a ContainerID chain). */
export function idKey(id: ContainerID): string {
  return id.parent ? `${idKey(id.parent)}.${id.value}` : id.value;
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
  /** How to settle a running container now, with its wait status if known (set by watchExit). */
  private readonly settle = new Map<string, (status?: number) => void>();

  constructor(
    private readonly flags: LoadedFlags,
    private readonly images: ImageService,
    private readonly gc: WorkerClient,
  ) {
    const f = flags.values;
    this.provisionerDir = join(f.work_dir, "provisioner");
    this.backend = chooseBackend(f.image_provisioner_backend, this.provisionerDir);
    this.cgroups = detectCgroups();
    this.ownProcs = ownProcsFile(this.cgroups);
    const socket = join(f.runtime_dir, "launcher.sock");
    // The launcher tells us at once when a workload ends; the status file watch is the fallback.
    this.launcher = new LauncherClient(socket, selfCommand("__launcher", socket), (key, status) => this.settle.get(key)?.(status));
    this.appc = new AppcStore({ prefix: f.appc_simple_discovery_uri_prefix, storeDir: f.appc_store_dir, maxBytes: f.docker_max_layer_size });
  }

  get(id: ContainerID): Container | undefined {
    return this.table.get(idKey(id));
  }

  list(): Container[] {
    return [...this.table.values()];
  }

  /** What image GC must keep for each container not yet removed. */
  imageUsers(): Array<{ key: string; images: string[]; accountable: boolean }> {
    return this.list().map((c) => ({
      key: c.key,
      images: [...(c.imageRef ? [c.imageRef] : []), ...(c.volumeImages ?? [])],
      // A recovered Docker-image container without its canonical reference: a checkpoint
      // we cannot account for. (One still provisioning is covered by its pull's lease.)
      accountable: !(c.recovered && c.image && !c.image.startsWith("appc:") && !c.imageRef),
    }));
  }

  /** true: launched; false: the ID was already in use (Mesos answers 202). */
  async launch(call: LaunchContainer): Promise<boolean> {
    const f = this.flags.values;
    const id = call.container_id;
    const key = idKey(id);
    if (this.table.has(key)) return false;
    if (call.container && call.container.type !== "MESOS") throw new ContainerError(400, "The provided ContainerInfo is not supported");
    const shareCgroups = call.container?.linux_info?.share_cgroups;
    let parent: Container | undefined;
    if (id.parent) {
      parent = this.get(id.parent);
      if (!parent) throw new ContainerError(400, `Parent container ${idKey(id.parent)} does not exist`);
      if (parent.state !== "RUNNING") throw new ContainerError(400, `Parent container ${parent.key} is not running`);
      const depth = key.split(".").length - 1;
      const hasResources = (call.resources ?? []).length > 0 || Object.keys(call.limits ?? {}).length > 0;
      if (depth >= 2 && hasResources) {
        throw new ContainerError(400, "Resources and limits can only be set on top-level containers and their direct children");
      }
      if (depth >= 2 && shareCgroups === false) throw new ContainerError(400, "Only a direct child of a top-level container may have its own cgroups (share_cgroups: false)");
      if (hasResources && shareCgroups !== false) {
        throw new ContainerError(400, "A nested container that shares its parent's cgroups cannot have its own resources or limits; set share_cgroups: false");
      }
    } else {
      checkTopLevelResources(call.resources ?? []);
      if (shareCgroups === true) throw new ContainerError(400, "A top-level container cannot share cgroups: it has no parent");
    }

    const image = call.container?.mesos?.image;
    if (image?.type === "DOCKER" && !(f.image_providers ?? []).includes("docker")) {
      throw new ContainerError(400, "Docker images are not enabled: start the agent with --image_providers=docker --isolation=filesystem/linux,docker/runtime");
    }
    if (image?.type === "APPC" && !(f.image_providers ?? []).includes("appc")) {
      throw new ContainerError(400, "Appc images are not enabled: start the agent with --image_providers=appc (and --isolation=filesystem/linux)");
    }

    // An idle agent's launcher has exited: it starts now, while the image is pulled and mounted.
    this.launcher.prepare();
    let resolveExited!: () => void;
    const container: Container = {
      id,
      key,
      state: "PROVISIONING",
      // Nested: under the parent's sandbox and runtime dir, as Mesos lays them out.
      sandbox: join(parent ? parent.sandbox : f.work_dir, "containers", id.value),
      runtime: join(parent ? parent.runtime : f.runtime_dir, "containers", id.value),
      ...(parent ? { parent } : {}),
      launchedAt: Date.now(),
      leases: [],
      exited: new Promise<void>((r) => (resolveExited = r)),
      ...(image?.docker ? { image: image.docker.name } : image?.appc ? { image: `appc:${image.appc.name}` } : {}),
    };
    this.table.set(key, container);
    try {
      await this.start(call, container, resolveExited);
      return true;
    } catch (err) {
      await this.cleanup(container).catch(() => {});
      this.table.delete(key);
      if (err instanceof ContainerError) throw err;
      throw new ContainerError(400, (err as Error).message);
    }
  }

  private async start(call: LaunchContainer, c: Container, exited: () => void): Promise<void> {
    const f = this.flags.values;
    const image = call.container?.mesos?.image;
    mkdirSync(c.runtime, { recursive: true, mode: 0o700 });
    try {
      mkdirSync(c.sandbox, { recursive: true, mode: 0o750 });
    } catch (err) {
      throw new ContainerError(500, `cannot create the sandbox ${c.sandbox}: ${(err as Error).message}`);
    }

    let rootfs: LaunchSpec["rootfs"];
    let config;
    if (image?.appc) {
      // Appc: the rootfs only (Mesos uses no runtime config from an ACI).
      let appcImage;
      try {
        appcImage = await this.appc.get(image.appc.name, image.appc.labels?.labels ?? [], image.appc.id);
      } catch (err) {
        throw new ContainerError(400, (err as Error).message);
      }
      c.provisionerDir = join(this.provisionerDir, "containers", ...c.key.split(".").flatMap((part, i) => (i === 0 ? [part] : ["containers", part])));
      const dir = join(c.provisionerDir, "backends", this.backend);
      try {
        const provisioned = await provision(this.backend, appcImage.layers, dir, async (ls, dest) => {
          await this.gc.call("copyLayers", { layers: ls, dest, records: ls.map(() => ({ whiteouts: [], opaques: [] })) });
        });
        rootfs = provisioned.rootfs;
      } catch (err) {
        if (err instanceof BackendError) throw new ContainerError(400, err.message);
        throw err;
      }
    } else if (image?.docker) {
      const record = await this.images.puller.pull(image.docker.name, {
        force: image.cached === false,
        keep: (release) => c.leases.push(release),
      });
      c.imageRef = record.reference;
      config = this.images.store.config(record.configDigest);
      const layers = record.layers.map((l) => this.images.store.layerRootfs(l));
      c.provisionerDir = join(this.provisionerDir, "containers", ...c.key.split(".").flatMap((part, i) => (i === 0 ? [part] : ["containers", part])));
      const dir = join(c.provisionerDir, "backends", this.backend);
      try {
        const provisioned = await provision(this.backend, layers, dir, async (ls, dest) => {
          const records = record.layers.map((l) => {
            const r = this.images.store.layer(l)!;
            return { whiteouts: r.whiteouts, opaques: r.opaques };
          });
          await this.gc.call("copyLayers", { layers: ls, dest, records });
        });
        rootfs = provisioned.rootfs;
      } catch (err) {
        if (err instanceof BackendError) throw new ContainerError(400, err.message);
        throw err;
      }
    }

    // Without an image a nested container sees its parent's filesystem, where its sandbox is
    // <parent's sandbox as the parent sees it>/containers/<id>.
    const sandboxInContainer = rootfs ? f.sandbox_directory : c.parent ? join(c.parent.sandboxInContainer ?? c.parent.sandbox, "containers", c.id.value) : c.sandbox;
    c.sandboxInContainer = sandboxInContainer;
    if (c.parent && !rootfs && (call.container?.volumes ?? []).length > 0) {
      throw new ContainerError(400, "a nested container without its own image runs in its parent's filesystem and cannot have volumes; give it an image");
    }
    const volumes = await this.volumes(call, c, sandboxInContainer);
    let command;
    try {
      command = resolveCommand(call.command, config, { sandbox: sandboxInContainer, useImage: !f.docker_ignore_runtime });
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
        c.cgroup = ContainerCgroup.create(this.cgroups, f.cgroups_root, c.key, { ...c.limits, cfs: f.cgroups_enable_cfs });
      } catch (err) {
        throw new ContainerError(500, `cannot set up the cgroups of ${c.key}: ${(err as Error).message}`);
      }
    } else if (c.limits.cpus !== undefined || c.limits.memBytes !== undefined) {
      log.warn(`container ${c.key}: resources are not enforced: ${this.cgroups.why}`);
    }

    try {
      await fetchUris(call.command?.uris, c.sandbox);
    } catch (err) {
      if (err instanceof FetchError) throw new ContainerError(400, err.message);
      throw err;
    }

    const hostnameFile = join(c.runtime, "hostname");
    const hostname = c.id.value.slice(0, 63);
    writeFileSync(hostnameFile, `${hostname}\n`);
    const cgroupJoin = c.cgroup?.join();
    const spec: LaunchSpec = {
      id: c.key,
      hostname,
      ...(rootfs ? { rootfs } : {}),
      sandbox: { host: c.sandbox, container: sandboxInContainer },
      ...(volumes.length > 0 ? { volumes } : {}),
      ...(c.parent?.pid !== undefined ? { parentPid: c.parent.pid } : {}),
      executable: command.executable,
      argv: command.argv,
      env: command.env,
      workingDir: command.workingDir,
      ...(user ? { user } : {}),
      etc: {
        ...(existsSync("/etc/hosts") ? { hosts: "/etc/hosts" } : {}),
        ...(existsSync("/etc/resolv.conf") ? { resolv: "/etc/resolv.conf" } : {}),
        hostname: hostnameFile,
      },
      ...(cgroupJoin ? { cgroupJoin } : {}),
      stdout: join(c.sandbox, "stdout"),
      stderr: join(c.sandbox, "stderr"),
      statusFile: join(c.runtime, "status"),
      pidFile: join(c.runtime, "pid"),
    };
    const specPath = join(c.runtime, "launch.json");
    writeStateFile(specPath, JSON.stringify(spec));

    // A whole-process move takes the kernel's threadgroup lock, whose first use in a while
    // waits for an RCU grace period (~13 ms): take that wait in the gc worker now, while
    // stage 2 sets up, so its own move finds it paid. (A thread move, v1, takes no such lock.)
    if (cgroupJoin?.move === "process" && this.ownProcs) void this.gc.call("warmCgroups", { procs: this.ownProcs, pid: process.pid }).catch(() => {});

    // Normally the long-lived launcher starts stage 2 (one start of the binary per launch);
    // if it cannot be had, a stage 1 process of this container's own does the same job.
    let started: { pid: number } | { error: string } | undefined;
    try {
      started = await this.launcher.launch(specPath);
    } catch (err) {
      log.warn(`container launcher unavailable (${(err as Error).message}); using a stage 1 process for ${c.key}`);
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
    c.state = "RUNNING";
    c.pidStart = startTime(c.pid);
    this.checkpoint(c);
    log.info(`container ${c.key} running (pid ${c.pid}${c.image ? `, image ${c.image}` : ""}, ${this.backend})`);
    // Not our child either way: the status file the launcher (or stage 1) writes says when it ends.
    this.watchExit(c, spec.statusFile, exited);
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

  /** Settles the container with `status`, or else the one the init stage wrote. */
  private exited(c: Container, done: () => void, status?: number): void {
    if (c.state === "EXITED") return;
    try {
      c.exitStatus = status ?? Number(readFileSync(join(c.runtime, "status"), "utf8").trim());
    } catch {
      // No status file (the launcher could not write it): what the launcher reported, if we heard it.
      c.exitStatus = this.launcher.exitStatus(c.key) ?? 9; // Mesos: no status written means it was killed
    }
    if (c.cgroup && c.cgroup.oomKills() > 0) {
      const mb = c.limits?.memBytes !== undefined ? c.limits.memBytes / 1048576 : undefined;
      c.limitation = {
        reason: "REASON_CONTAINER_LIMITATION_MEMORY",
        resources: mb !== undefined ? [{ name: "mem", type: "SCALAR", scalar: { value: mb } } as Resource] : [],
      };
      c.message = `Memory limit exceeded: the kernel's OOM killer stopped the container${mb !== undefined ? ` (limit ${mb} MB)` : ""}`;
    }
    c.state = "EXITED";
    log.info(`container ${c.key} exited with status ${c.exitStatus}${c.limitation ? ` (${c.limitation.reason})` : ""}`);
    done();
  }

  /** What a restarted agent needs to find a container again (atomic, in its runtime dir). */
  private checkpoint(c: Container): void {
    const record: Checkpoint = {
      id: c.id,
      sandbox: c.sandbox,
      runtime: c.runtime,
      ...(c.provisionerDir ? { provisionerDir: c.provisionerDir } : {}),
      ...(c.pid !== undefined ? { pid: c.pid } : {}),
      ...(c.pidStart !== undefined ? { pidStart: c.pidStart } : {}),
      bootId: bootId(),
      ...(c.image ? { image: c.image } : {}),
      ...(c.cgroup && c.cgroup !== c.parent?.cgroup ? { cgroups: c.cgroup.dirs } : {}),
      ...(c.limits ? { limits: c.limits } : {}),
      ...(c.volumeImages ? { volumeImages: c.volumeImages } : {}),
      ...(c.user ? { user: c.user } : {}),
      ...(c.sandboxInContainer ? { sandboxInContainer: c.sandboxInContainer } : {}),
      ...(c.imageRef ? { imageRef: c.imageRef } : {}),
      launchedAt: c.launchedAt,
    };
    writeStateFile(join(c.runtime, "container.json"), JSON.stringify(record));
  }

  /**
   * After a restart: containers keep running without the agent. Each checkpoint becomes a
   * container again: exited (its status file is there, or its process is gone) or running
   * (watched until the init stage writes the status). Unreadable ones are reported and
   * cleaned up.
   */
  async recover(): Promise<{ running: number; exited: number; broken: string[] }> {
    const result = { running: 0, exited: 0, broken: [] as string[] };
    // A launcher that outlived the last agent knows the statuses it could not write down.
    await this.launcher.attach();
    await this.recoverUnder(join(this.flags.values.runtime_dir, "containers"), undefined, result);
    return result;
  }

  /** One level of runtime dirs: top-level containers, or the nested ones of `parent`. */
  private async recoverUnder(root: string, parent: Container | undefined, result: { running: number; exited: number; broken: string[] }): Promise<void> {
    if (!existsSync(root)) return;
    for (const name of readdirSync(root)) {
      const dir = join(root, name);
      let record: Checkpoint;
      try {
        record = JSON.parse(readFileSync(join(dir, "container.json"), "utf8")) as Checkpoint;
        if (typeof record.id?.value !== "string" || typeof record.sandbox !== "string") throw new Error("incomplete checkpoint");
      } catch (err) {
        log.error(`container checkpoint ${dir} is unreadable (${(err as Error).message}); removing its runtime state and rootfs`);
        result.broken.push(name);
        rmSync(dir, { recursive: true, force: true });
        const prov = join(this.provisionerDir, "containers", name);
        if (existsSync(prov)) await this.gc.call("remove", { path: prov, within: this.flags.values.work_dir }).catch(() => {});
        continue;
      }
      let settle!: () => void;
      const c: Container = {
        id: record.id,
        key: idKey(record.id),
        state: "RUNNING",
        sandbox: record.sandbox,
        runtime: dir,
        ...(record.provisionerDir ? { provisionerDir: record.provisionerDir } : {}),
        ...(record.pid !== undefined ? { pid: record.pid } : {}),
        ...(record.pidStart !== undefined ? { pidStart: record.pidStart } : {}),
        ...(record.image ? { image: record.image } : {}),
        ...(record.cgroups ? { cgroup: ContainerCgroup.existing(this.cgroups, record.cgroups) } : {}),
        ...(record.limits ? { limits: record.limits } : {}),
        ...(record.volumeImages ? { volumeImages: record.volumeImages } : {}),
        ...(record.user ? { user: record.user } : {}),
        ...(record.sandboxInContainer ? { sandboxInContainer: record.sandboxInContainer } : {}),
        ...(parent ? { parent } : {}),
        launchedAt: record.launchedAt,
        ...(record.imageRef ? { imageRef: record.imageRef } : {}),
        recovered: true,
        leases: [],
        exited: new Promise<void>((r) => (settle = r)),
      };
      this.table.set(c.key, c);
      if (parent && c.cgroup === undefined) c.cgroup = parent.cgroup;
      const statusFile = join(dir, "status");
      // Its processes ended with the host if the host booted since; and a pid that is alive
      // but started at another time belongs to some later process.
      const rebooted = record.bootId !== undefined && record.bootId !== bootId();
      const gone = record.pid === undefined || !stillRunning(record.pid, record.pidStart);
      if (rebooted && !existsSync(statusFile)) c.message = "The host restarted while the container was running";
      if (rebooted || existsSync(statusFile) || gone) {
        this.exited(c, settle);
        result.exited++;
      } else {
        result.running++;
        this.watchExit(c, statusFile, settle);
      }
      await this.recoverUnder(join(dir, "containers"), c, result);
    }
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
        // Stage 1 writes the status just after the workload dies; give it a moment.
        if (Date.now() - deadSince > 2000) {
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
   * The launch's volumes as mounts: host paths (the legacy `host_path` or a HOST_PATH
   * source), sandbox paths (SANDBOX_PATH, SELF), and images (pulled, mounted read-only).
   * A relative container_path is inside the sandbox, as in Mesos.
   */
  private async volumes(call: LaunchContainer, c: Container, sandboxInContainer: string): Promise<VolumeSpec[]> {
    const out: VolumeSpec[] = [];
    for (const [i, v] of (call.container?.volumes ?? []).entries()) {
      const where = `volume ${i} (container_path '${v.container_path}')`;
      if (v.container_path.split("/").includes("..")) throw new ContainerError(400, `${where}: container_path must not contain '..'`);
      const target = v.container_path.startsWith("/") ? v.container_path : join(sandboxInContainer, v.container_path);
      const readonly = v.mode === "RO";
      if (v.image) {
        if (v.image.type !== "DOCKER" || !v.image.docker) throw new ContainerError(501, `${where}: only Docker image volumes are implemented`);
        if (!(this.flags.values.image_providers ?? []).includes("docker")) {
          throw new ContainerError(400, `${where}: Docker images are not enabled (--image_providers=docker)`);
        }
        if (!readonly) throw new ContainerError(400, `${where}: an image volume must be mounted read-only (mode RO)`);
        const record = await this.images.puller.pull(v.image.docker.name, {
          force: v.image.cached === false,
          keep: (release) => c.leases.push(release),
        });
        c.volumeImages = [...(c.volumeImages ?? []), record.reference];
        out.push({ target, readonly: true, lowers: record.layers.map((l) => this.images.store.layerRootfs(l)) });
        continue;
      }
      const type = v.source?.type ?? (v.host_path !== undefined ? "HOST_PATH" : undefined);
      if (type === "HOST_PATH") {
        const source = v.source?.host_path?.path ?? v.host_path;
        if (!source || !source.startsWith("/")) throw new ContainerError(400, `${where}: the host path must be absolute`);
        if (!existsSync(source)) throw new ContainerError(400, `${where}: host path '${source}' does not exist`);
        out.push({ target, readonly, source });
      } else if (type === "SANDBOX_PATH") {
        const sp = v.source?.sandbox_path;
        if (!sp) throw new ContainerError(400, `${where}: SANDBOX_PATH needs 'sandbox_path'`);
        if ((sp.type ?? "SELF") !== "SELF") throw new ContainerError(400, `${where}: sandbox_path of type ${sp.type} needs a nested container`);
        if (sp.path.startsWith("/") || sp.path.split("/").includes("..")) {
          throw new ContainerError(400, `${where}: sandbox_path.path must be relative and stay inside the sandbox`);
        }
        const source = join(c.sandbox, sp.path);
        mkdirSync(source, { recursive: true, mode: 0o755 });
        out.push({ target, readonly, source });
      } else {
        throw new ContainerError(501, `${where}: volumes of type ${type ?? "UNKNOWN"} are not implemented`);
      }
    }
    return out;
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

  async wait(id: ContainerID): Promise<Container> {
    const c = this.get(id);
    if (!c) throw new ContainerError(404, `Container '${idKey(id)}' cannot be found`);
    await c.exited;
    return c;
  }

  kill(id: ContainerID, signal: number): void {
    const c = this.get(id);
    if (!c || c.state === "EXITED") throw new ContainerError(404, `Container '${idKey(id)}' cannot be found (or is already killed)`);
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

  /** Removes the container's rootfs, runtime state and sandbox (in the gc worker). */
  private async cleanup(c: Container): Promise<void> {
    const f = this.flags.values;
    if (c.provisionerDir) await this.gc.call("remove", { path: c.provisionerDir, within: f.work_dir });
    await this.gc.call("remove", { path: c.sandbox, within: f.work_dir });
    rmSync(c.runtime, { recursive: true, force: true });
    if (c.cgroup && c.cgroup !== c.parent?.cgroup) c.cgroup.destroy();
    for (const release of c.leases.splice(0)) release();
  }
}

interface Checkpoint {
  id: ContainerID;
  sandbox: string;
  runtime: string;
  provisionerDir?: string;
  pid?: number;
  pidStart?: number;
  /** The kernel boot the container was launched in (absent in checkpoints of ucr < 0.2). */
  bootId?: string;
  image?: string;
  cgroups?: string[];
  limits?: { cpus?: number; memBytes?: number; diskBytes?: number };
  volumeImages?: string[];
  user?: string;
  sandboxInContainer?: string;
  imageRef?: string;
  launchedAt: number;
}

/** cpus and mem from the launch's resources, `limits` winning (Mesos 1.9+ limits). */
function limitsOf(call: LaunchContainer): { cpus?: number; memBytes?: number; diskBytes?: number } {
  const scalar = (name: string) => call.resources?.find((r) => r.name === name && r.type === "SCALAR")?.scalar?.value;
  const limit = (name: string) => call.limits?.[name]?.value;
  const cpus = limit("cpus") ?? scalar("cpus");
  const mem = limit("mem") ?? scalar("mem");
  const disk = scalar("disk");
  return {
    ...(disk !== undefined && Number.isFinite(disk) ? { diskBytes: Math.round(disk * 1048576) } : {}),
    ...(cpus !== undefined && Number.isFinite(cpus) ? { cpus } : {}),
    ...(mem !== undefined && Number.isFinite(mem) ? { memBytes: Math.round(mem * 1048576) } : {}),
  };
}


/** Mesos refuses reserved, persistent-volume and revocable resources on a top-level launch. */
function checkTopLevelResources(resources: Resource[]): void {
  for (const r of resources) {
    if ((r.role && r.role !== "*") || (r.reservations ?? []).length > 0 || r.reservation) {
      throw new ContainerError(400, `resource '${r.name}' is reserved; standalone containers cannot use reserved resources`);
    }
    if (r.disk?.persistence) throw new ContainerError(400, `resource '${r.name}' is a persistent volume, which standalone containers cannot use`);
    if (r.revocable) throw new ContainerError(400, `resource '${r.name}' is revocable, which standalone containers cannot use`);
  }
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
