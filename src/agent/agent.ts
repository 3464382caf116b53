// The agent process: flags, directories, worker threads and the API server, started in
// that order and stopped in reverse. Container and image state join it in later work.
import { mkdirSync, readFileSync, realpathSync } from "node:fs";
import { isIP } from "node:net";
import { startApiServer, type ApiServer } from "../api/server.ts";
import { dropCleanFilePages } from "../ffi/libc.ts";
import type { LoadedFlags } from "../config/flags.ts";
import { log, setLevel } from "../log.ts";
import { VERSION } from "../version.ts";
import { BackendError } from "../images/backends.ts";
import { extractWorkerCount, startImageService, type ImageService } from "../images/service.ts";
import { Containers } from "./containers.ts";
import { ImageCollector, diskUsage } from "../gc/collector.ts";
import { lazyWorker, startTogether } from "../workers/pool.ts";
import type { WorkerClient } from "../workers/rpc.ts";

/** An agent's worker thread stops after this long without work (and starts again when needed). */
const WORKER_IDLE_STOP_MS = 10_000;

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

export class Agent {
  readonly workers = new Map<string, WorkerClient>();
  private server: ApiServer | undefined;
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

  constructor(readonly flags: LoadedFlags) {}

  get port(): number {
    if (!this.server) throw new Error("agent is not serving");
    return this.server.port;
  }

  async start(): Promise<void> {
    const f = this.flags.values;
    setLevel(f.logging_level);
    log.info(`ucr ${VERSION} agent starting`);
    for (const [name, source] of this.flags.sources) log.info(`flag --${name} from ${source}`);

    for (const [flag, dir] of [
      ["work_dir", f.work_dir],
      ["runtime_dir", f.runtime_dir],
      ["docker_store_dir", f.docker_store_dir],
    ] as const) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o755 });
      } catch (err) {
        throw new StartupError(`flag '--${flag}': cannot create ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
    }
    if (f.docker_registry.kind === "directory") log.info(`docker images come from archives in ${f.docker_registry.path}`);

    this.startWorkers();
    try {
      this.imageService = startImageService(f, {
        pull: this.workers.get("pull")!,
        extract: [...this.workers.entries()].filter(([n]) => n.startsWith("extract")).map(([, w]) => w),
      });
    } catch (err) {
      throw new StartupError(`flag '--docker_store_dir': cannot open the image store at ${f.docker_store_dir}: ${(err as Error).message}`);
    }
    const { removedStaging } = this.imageService;
    if (removedStaging.length > 0) log.info(`image store: removed ${removedStaging.length} unfinished staging dir(s) left by an earlier run`);
    log.info(`image store at ${f.docker_store_dir}: ${this.imageService.store.images().length} image(s)`);
    try {
      this.containerTable = new Containers(this.flags, this.imageService, this.workers.get("gc")!);
    } catch (err) {
      if (err instanceof BackendError) throw new StartupError(err.message);
      throw err;
    }
    log.info(`provisioner backend: ${this.containerTable.backend}`);
    const cg = this.containerTable.cgroups;
    if (cg.kind === "none") log.warn(`cgroups: none usable (${cg.why}); cpus and mem will not be enforced`);
    else log.info(`cgroups: ${cg.kind === "v2" ? "v2 (unified)" : `v1 (memory at ${cg.memory}, cpu at ${cg.cpu})`}`);
    const recovered = await this.containerTable.recover();
    const containers = this.containerTable;
    this.imageCollector = new ImageCollector(this.imageService.store, this.workers.get("gc")!, () => containers.imageUsers());
    await this.imageCollector.cleanLeftovers();
    this.startAutomaticGc();
    if (recovered.running + recovered.exited + recovered.broken.length > 0) {
      log.info(
        `recovered ${recovered.running} running and ${recovered.exited} exited container(s)${recovered.broken.length ? `; removed ${recovered.broken.length} with unreadable checkpoints (${recovered.broken.join(", ")})` : ""}`,
      );
    }

    if (!isLoopback(f.ip) && !f.authenticate_http_readwrite) {
      const bar = "!".repeat(78);
      log.warn(bar);
      log.warn(`WARNING: listening on ${f.ip} WITHOUT authentication. Anyone who can reach this port`);
      log.warn("can launch containers as root on this machine. Use --authenticate_http_readwrite with");
      log.warn("--http_credentials, or keep --ip on loopback (the default, 127.0.0.1).");
      log.warn(bar);
    }

    try {
      this.server = startApiServer(this);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new StartupError(`cannot listen on ${f.ip}:${f.port}: ${e.code ?? e.message}`);
    }
    log.always(`agent listening on http://${hostPort(f.ip, this.server.port)} (Operator API at /api/v1)`);
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
    log.info(`automatic image gc: every ${intervalMs}ms, keeping ${(cfg.image_disk_headroom * 100).toFixed(0)}% of ${store}'s filesystem free`);
    this.gcTimer = setInterval(() => {
      if (ok()) return;
      log.info(`automatic image gc: ${(diskUsage(store) * 100).toFixed(1)}% used, over the ${((1 - cfg.image_disk_headroom) * 100).toFixed(0)}% threshold`);
      this.collector.prune(excluded, ok).catch((err: Error) => log.error(`automatic image gc failed: ${err.message}`));
    }, intervalMs);
    this.gcTimer.unref();
  }

  /**
   * The worker threads, started when first needed and stopped after WORKER_IDLE_STOP_MS
   * without work: an agent with nothing to do holds none (each is a few MiB). The pull and
   * extract workers start together at a pull's first call; the gc worker on its own.
   */
  private startWorkers(): void {
    const started = (label: string) => log.info(`worker ${label} started`);
    const pull = lazyWorker("pull", "pull", WORKER_IDLE_STOP_MS, started);
    const extract = Array.from({ length: extractWorkerCount() }, (_, i) => lazyWorker("extract", `extract${i === 0 ? "" : `-${i + 1}`}`, WORKER_IDLE_STOP_MS, started));
    startTogether([pull, ...extract]);
    const gc = lazyWorker("gc", "gc", WORKER_IDLE_STOP_MS, started);
    // The last worker's idle stop means a quiet agent (the gc worker serves every REMOVE and
    // image GC, the others every pull). Its garbage (and the allocator's free pages) go back to
    // the system, and so do the pages of the binary's code it has run so far (after some use
    // most of the idle footprint: ~35 MiB here; they stay in the page cache and come back, a
    // minor fault each, when next needed).
    const all = [pull, ...extract, gc];
    const quiet = () => {
      if (all.some((w) => w.running)) return;
      Bun.gc(true);
      try {
        const before = residentKiB();
        dropCleanFilePages(realpathSync(process.execPath));
        log.info(`idle: ${((before - residentKiB()) / 1024).toFixed(1)} MiB of memory given back`);
      } catch (err) {
        log.warn(`idle: could not give back the binary's pages: ${(err as Error).message}`);
      }
    };
    for (const w of all) w.onIdleStop = quiet;
    for (const client of all) {
      client.unref();
      this.workers.set(client.name, client);
    }
  }

  async stop(): Promise<void> {
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.server) {
      log.info("agent stopping: no new requests; finishing those in flight");
      await this.server.drain();
    }
    for (const w of this.workers.values()) w.terminate();
    log.info("agent stopped");
  }
}

/** This process's resident memory (KiB). */
function residentKiB(): number {
  return Number(/^Rss:\s+(\d+)/m.exec(readFileSync("/proc/self/smaps_rollup", "utf8"))?.[1] ?? 0);
}

function isLoopback(ip: string): boolean {
  return (isIP(ip) === 4 && ip.startsWith("127.")) || ip === "::1";
}

function hostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}
