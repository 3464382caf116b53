// The agent: flags, directories, worker threads, the image store, the containers table (with
// recovery) and image GC, started in that order and stopped in reverse. It serves nothing
// itself: src/compose.ts starts the API server over it once it is up.
import { join } from "node:path";
import { spreadSubdirs } from "../ffi/libc.ts";
import { giveBackMemory } from "../util/idle-memory.ts";
import type { LoadedFlags } from "../config/flags.ts";
import { isolatorLines } from "../config/isolators.ts";
import { log, setLevel } from "../log.ts";
import { VERSION } from "../version.ts";
import { BackendError } from "../provisioner/backends.ts";
import { extractWorkerCount, startImageService, type ImageService } from "../images/service.ts";
import { ConfinementSetupError } from "./confinement.ts";
import { DeviceSetupError } from "../runtime/devices.ts";
import { Containers } from "./containers.ts";
import { CniConfigError } from "../network/config.ts";
import { CniNetworks } from "../network/cni.ts";
import { ImageCollector, diskUsage } from "../gc/collector.ts";
import { lazyWorker, startTogether } from "../threads/pool.ts";
import { DISK_WORKER, type DiskOps } from "../gc/disk.ts";
import { EXTRACT_WORKER, type ExtractOps } from "../images/layer-job.ts";
import { PULL_WORKER, type PullOps } from "../images/resolve.ts";
import { describePrivateDir, ensurePrivateDir } from "../util/private-dir.ts";
import type { WorkerClient } from "../threads/rpc.ts";
import { errorOfKind } from "../errors.ts";

/** How long start-up lets the removal of an earlier GC's leftovers run before it serves anyway. */
const LEFTOVER_GRACE_MS = 1000;
/** An agent's worker thread stops after this long without work (and starts again when needed). */
const WORKER_IDLE_STOP_MS = 10_000;

export class StartupError extends errorOfKind("invalid") {}

export class Agent {
  /** The agent's worker threads (threads/workers.ts), each started when first needed. */
  private workers: { pull: WorkerClient<PullOps>; extract: Array<WorkerClient<ExtractOps>>; disk: WorkerClient<DiskOps> } | undefined;
  private imageService: ImageService | undefined;
  private containerTable: Containers | undefined;
  private imageCollector: ImageCollector | undefined;
  private gcTimer: ReturnType<typeof setInterval> | undefined;

  get collector(): ImageCollector {
    if (!this.imageCollector) throw new Error("agent is not started");
    return this.imageCollector;
  }

  get containers(): Containers {
    if (!this.containerTable) throw new Error("agent is not started");
    return this.containerTable;
  }

  /** The Docker image store and puller (started with the agent). */
  get images(): ImageService {
    if (!this.imageService) throw new Error("agent is not started");
    return this.imageService;
  }

  /** CNI networks (their status is part of GET_CONTAINERS). */
  get networks(): CniNetworks {
    return this.containers.networks;
  }

  constructor(readonly flags: LoadedFlags) {}

  async start(): Promise<void> {
    const f = this.flags.values;
    setLevel(f.logging_level);
    log.info(`ucr ${VERSION} agent starting`);
    for (const [name, source] of this.flags.sources) log.info(`flag --${name} from ${source}`);
    for (const line of isolatorLines(f.isolation)) log.info(line);

    // Private to ucr (0700), or passable (0711) where a container's user must reach its sandbox.
    for (const [flag, dir, mode] of [
      ["work_dir", f.work_dir, 0o711],
      ["work_dir", join(f.work_dir, "containers"), 0o711],
      ["work_dir", join(f.work_dir, "provisioner"), 0o700],
      ["work_dir", join(f.work_dir, "provisioner", "containers"), 0o700],
      ["runtime_dir", f.runtime_dir, 0o700],
      ["runtime_dir", join(f.runtime_dir, "containers"), 0o700],
      ["docker_store_dir", f.docker_store_dir, 0o700],
    ] as const) {
      try {
        const note = describePrivateDir(flag, dir, ensurePrivateDir(dir, mode), mode);
        if (note) log.warn(note);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code ? `cannot create ${dir}: ${code}` : `cannot use ${dir}: ${(err as Error).message}`;
        throw new StartupError(`flag '--${flag}': ${why}`);
      }
    }
    // Each container's directories in a block group of their own, where the filesystem can (ext4:
    // see spreadSubdirs and src/provisioner/spares.ts): a no-op elsewhere.
    for (const dir of [join(f.work_dir, "containers"), join(f.work_dir, "provisioner", "containers"), join(f.runtime_dir, "containers")]) {
      spreadSubdirs(dir);
    }
    if (f.docker_registry.kind === "directory") log.info(`docker images come from archives in ${f.docker_registry.path}`);

    const workers = this.startWorkers();
    try {
      this.imageService = startImageService(f, { pull: workers.pull, extract: workers.extract });
    } catch (err) {
      throw new StartupError(`flag '--docker_store_dir': cannot open the image store at ${f.docker_store_dir}: ${(err as Error).message}`);
    }
    const { removedStaging, removedAppcStaging } = this.imageService;
    for (const note of this.imageService.notes) log.warn(note);
    if (removedStaging.length > 0)
      log.info(`image store: removed ${removedStaging.length} unfinished staging dir(s) left by an earlier run`);
    if (removedAppcStaging.length > 0)
      log.info(`appc store: removed ${removedAppcStaging.length} unfinished staging dir(s) left by an earlier run`);
    log.info(`image store at ${f.docker_store_dir}: ${this.imageService.store.images().length} image(s)`);
    try {
      const networks = await CniNetworks.fromFlags(f);
      this.containerTable = new Containers(this.flags, this.imageService, workers.disk, networks);
    } catch (err) {
      const setup = [BackendError, CniConfigError, ConfinementSetupError, DeviceSetupError];
      if (setup.some((kind) => err instanceof kind)) {
        throw new StartupError((err as Error).message);
      }
      throw err;
    }
    log.info(`provisioner backend: ${this.containerTable.provisioner.backend}`);
    log.info(`confinement: ${this.containerTable.confinement.describe()}`);
    log.info(`devices: containers may open ${this.containerTable.devicesConfinement}`);
    const cg = this.containerTable.cgroups;
    if (cg.kind === "none") log.warn(`cgroups: none usable (${cg.why}); cpus and mem will not be enforced`);
    else log.info(`cgroups: ${cg.kind === "v2" ? "v2 (unified)" : `v1 (memory at ${cg.memory}, cpu at ${cg.cpu})`}`);
    const containers = this.containerTable;
    this.imageCollector = new ImageCollector(this.imageService.store, workers.disk, () => containers.imageUsers());
    // What an earlier sweep left goes while containers are recovered, and on in the
    // background if it is big: serving waits for it LEFTOVER_GRACE_MS at most (a prune
    // queues behind it).
    const leftovers = this.imageCollector.cleanLeftovers().then(
      (n) => void (n > 0 && log.info(`image gc: removed ${n} leftover(s) of an earlier run's sweep`)),
      (err: Error) => log.error(`image gc: removing an earlier run's leftovers failed: ${err.message}`),
    );
    const recovered = await this.containerTable.recover();
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      leftovers.then(() => false),
      new Promise<boolean>((resolve) => (graceTimer = setTimeout(() => resolve(true), LEFTOVER_GRACE_MS))),
    ]);
    clearTimeout(graceTimer);
    if (late) log.info("image gc: an earlier run's leftovers are still being removed; serving meanwhile");
    this.startAutomaticGc();
    const { running, exited, destroyed, broken, orphans } = recovered;
    if (running + exited + destroyed.length + broken.length + orphans.length > 0) {
      const unreadable = broken.length ? `; removed ${broken.length} with unreadable checkpoints (${broken.join(", ")})` : "";
      const halfLaunched = destroyed.length ? `; destroyed ${destroyed.length} found half-launched (${destroyed.join(", ")})` : "";
      const unowned = orphans.length ? `; removed ${orphans.length} thing(s) no container owned (${orphans.join(", ")})` : "";
      log.info(`recovered ${running} running and ${exited} exited container(s)${unreadable}${halfLaunched}${unowned}`);
    }
  }

  /**
   * --image_gc_config: every interval, if the store's filesystem has less free space than
   * the headroom, collect least recently used images until it has it again.
   */
  private startAutomaticGc(): void {
    const cfg = this.flags.values.image_gc_config;
    if (!cfg) return;
    const store = this.images.store.root;
    const excluded = ImageCollector.exclusions(cfg.excluded_images);
    const ok = () => diskUsage(store) + cfg.image_disk_headroom <= 1;
    const intervalMs = Math.max(10, cfg.image_disk_watch_interval.nanoseconds / 1e6);
    log.info(
      `automatic image gc: every ${intervalMs}ms, keeping ${(cfg.image_disk_headroom * 100).toFixed(0)}% of ${store}'s filesystem free`,
    );
    this.gcTimer = setInterval(() => {
      if (ok()) return;
      log.info(
        `automatic image gc: ${(diskUsage(store) * 100).toFixed(1)}% used, over the ${((1 - cfg.image_disk_headroom) * 100).toFixed(0)}% threshold`,
      );
      this.collector.prune(excluded, ok).catch((err: Error) => log.error(`automatic image gc failed: ${err.message}`));
    }, intervalMs);
    this.gcTimer.unref();
  }

  /**
   * The worker threads, started when first needed and stopped after WORKER_IDLE_STOP_MS
   * without work: an agent with nothing to do holds none (each is a few MiB). The pull and
   * extract workers start together at a pull's first call; the disk worker on its own.
   */
  private startWorkers(): NonNullable<Agent["workers"]> {
    const started = (label: string) => log.info(`worker ${label} started`);
    const pull = lazyWorker(PULL_WORKER, "pull", WORKER_IDLE_STOP_MS, started);
    const extract = Array.from({ length: extractWorkerCount() }, (_, i) =>
      lazyWorker(EXTRACT_WORKER, `extract${i === 0 ? "" : `-${i + 1}`}`, WORKER_IDLE_STOP_MS, started),
    );
    startTogether([pull, ...extract]);
    const disk = lazyWorker(DISK_WORKER, "disk", WORKER_IDLE_STOP_MS, started);
    // The last worker's idle stop means a quiet agent (the disk worker serves every REMOVE and
    // image GC, the others every pull). Its garbage (and the allocator's free pages) go back to
    // the system, and so do the pages of the binary's code it has run so far (after some use
    // most of the idle footprint: ~35 MiB here; they stay in the page cache and come back, a
    // minor fault each, when next needed).
    const all = [pull, ...extract, disk];
    const quiet = () => {
      if (all.some((w) => w.running)) return;
      try {
        log.info(`idle: ${giveBackMemory().toFixed(1)} MiB of memory given back`);
      } catch (err) {
        log.warn(`idle: could not give back the binary's pages: ${(err as Error).message}`);
      }
    };
    for (const w of all) {
      w.onIdleStop = quiet;
      w.unref();
    }
    this.workers = { pull, extract, disk };
    return this.workers;
  }

  /**
   * The first half of stopping, before the API server drains: blocked WAITs are answered at
   * once (containers keep running; the next agent recovers them), GC stops.
   */
  quiesce(): void {
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.containerTable?.shutdown();
  }

  /** The second half, once no request is in flight: worker threads and network plugins stop. */
  stop(): void {
    this.quiesce();
    const w = this.workers;
    for (const client of w ? [w.pull, ...w.extract, w.disk] : []) client.terminate();
    this.containerTable?.networks.shutdown();
    log.info("agent stopped");
  }
}
