// The Docker provisioner's puller, on the main thread: from an image name to an image
// record in the store. Resolution happens in the pull worker, layers in the extract
// workers (bounded by their number); pulls of one image and downloads of one layer are
// shared, and layers already in the store are not fetched again.
import type { DockerConfig, Registry } from "../config/flags.ts";
import type { WorkerClient } from "../threads/rpc.ts";
import { lookupCredentials } from "./credentials.ts";
import type { ExtractOps, LayerJob } from "./layer-job.ts";
import {
  DOCKER_HUB,
  DOCKER_HUB_REGISTRY,
  canonical,
  manifestReference,
  parseReference,
  remotePath,
  type ImageReference,
} from "./reference.ts";
import { isLoopbackHost, probeBase, type RegistrySpec } from "./registry.ts";
import type { PullOps, ResolvedImage, ResolvedLayer } from "./resolve.ts";
import type { DockerStore, ImageRecord } from "./store.ts";
import type { AciJob, AciResult } from "./appc.ts";
import { DEFAULT_LIMITS, type FetchLimits } from "./transfer.ts";
import { archiveCandidates } from "./archive.ts";
import { existsSync } from "node:fs";
import { UcrError } from "../errors.ts";

export interface PullerOptions {
  registry: Registry;
  dockerConfig?: DockerConfig;
  insecureRegistries: readonly string[];
  maxLayerSize: number;
  /** Stall and total deadlines of every download (--fetcher_stall_timeout, --image_fetch_timeout). */
  limits?: FetchLimits;
  /** --docker_allow_foreign_platform */
  allowForeignPlatform?: boolean;
}

export type LayerEvent =
  | { kind: "layer"; index: number; total: number; id: string; state: "cached" | "shared" | "start"; size: number }
  | { kind: "progress"; index: number; id: string; bytes: number; size: number }
  | { kind: "layer-done"; index: number; id: string; bytes: number; ms: number };

export interface PullOptions {
  /** Fetch the manifest again even if the image is in the store (Mesos forcePullImage). */
  force?: boolean;
  /**
   * Keep the image and its layers from GC after the pull; the caller releases them (a
   * launch, when its container is removed). Without it they are released when the pull ends.
   */
  keep?: (release: () => void) => void;
  onEvent?: (e: LayerEvent) => void;
  /** Credentials for this pull (a launch's Image.docker.config), instead of --docker_config's, as in Mesos. */
  dockerConfig?: DockerConfig;
}

/** Whatever stopped a pull (a bad name, a registry's answer, a hostile layer): the image cannot be had as asked. */
export class PullError extends UcrError {
  constructor(
    readonly image: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super("invalid", `pull ${image}: ${message}`, options);
  }
}

export interface PullerWorkers {
  pull: WorkerClient<PullOps>;
  extract: ReadonlyArray<WorkerClient<ExtractOps>>;
}

type Extractor = WorkerClient<ExtractOps>;

/** A counting semaphore handing out idle extract workers. */
class WorkerSlots {
  private readonly idle: Extractor[];
  private readonly waiting: Array<(w: Extractor) => void> = [];
  constructor(workers: readonly Extractor[]) {
    this.idle = [...workers];
  }
  async run<T>(fn: (w: Extractor) => Promise<T>): Promise<T> {
    const worker = this.idle.pop() ?? (await new Promise<Extractor>((resolve) => this.waiting.push(resolve)));
    try {
      return await fn(worker);
    } finally {
      const next = this.waiting.shift();
      if (next) next(worker);
      else this.idle.push(worker);
    }
  }
}

export class Puller {
  private readonly images = new Map<string, Promise<ImageRecord>>();
  private readonly layers = new Map<string, Promise<string>>();
  private readonly bases = new Map<string, Promise<string>>();
  /** Layer leases taken while pulls run; released when no pull is running any more. */
  private pending: Array<() => void> = [];
  private active = 0;
  private readonly slots: WorkerSlots;

  constructor(
    readonly store: DockerStore,
    private readonly options: PullerOptions,
    private readonly workers: PullerWorkers,
  ) {
    this.slots = new WorkerSlots(workers.extract);
  }

  private get limits(): FetchLimits {
    return this.options.limits ?? DEFAULT_LIMITS;
  }

  /** Runs an Appc image job on an extract worker, in turn with the layers. */
  extractAci(job: AciJob): Promise<AciResult> {
    return this.slots.run((worker) => worker.call("aci", job));
  }

  /** Imports image `name` from one archive file (`ucr load`), whatever --docker_registry says. */
  load(file: string, name: string, opts: PullOptions = {}): Promise<ImageRecord> {
    return this.pull(name, { ...opts, force: true, file });
  }

  /** Pulls (or finds in the store) the image `name`; errors are PullError naming it. */
  async pull(name: string, opts: PullOptions & { file?: string } = {}): Promise<ImageRecord> {
    let ref: ImageReference;
    try {
      ref = parseReference(name);
    } catch (err) {
      throw new PullError(name, (err as Error).message, { cause: err });
    }
    const key = canonical(ref);
    // Held from the start, so GC spares what this pull finds in the store or is fetching.
    const releaseRef = this.store.leases.hold([`ref:${key}`]);
    let releaseLayers = () => {};
    try {
      let record: ImageRecord | undefined = opts.force ? undefined : this.store.image(key);
      if (record) {
        releaseLayers = this.store.leases.hold(record.layers.map((l) => `layer:${l}`));
      } else {
        let running = this.images.get(key);
        if (!running) {
          running = this.doPull(ref, key, opts).catch((err: unknown) => {
            if (err instanceof PullError) throw err;
            throw new PullError(name, (err as Error).message, { cause: err });
          });
          this.images.set(key, running);
          running.finally(() => this.images.delete(key)).catch(() => {});
        }
        record = await running;
        releaseLayers = this.store.leases.hold(record.layers.map((l) => `layer:${l}`));
      }
      this.store.touch(record);
      if (opts.keep) {
        const layers = releaseLayers;
        opts.keep(() => {
          layers();
          releaseRef();
        });
        return record;
      }
      releaseLayers();
      releaseRef();
      return record;
    } catch (err) {
      releaseLayers();
      releaseRef();
      throw err;
    }
  }

  private async doPull(ref: ImageReference, key: string, opts: PullOptions & { file?: string }): Promise<ImageRecord> {
    this.active++;
    try {
      return await this.pullOnce(ref, key, opts);
    } finally {
      // The record (or its absence) now speaks for these layers; the caller holds its own lease.
      if (--this.active === 0) {
        const held = this.pending;
        this.pending = [];
        for (const release of held) release();
      }
    }
  }

  private async pullOnce(ref: ImageReference, key: string, opts: PullOptions & { file?: string }): Promise<ImageRecord> {
    const resolved = opts.file
      ? await this.workers.pull.call("archive", {
          file: opts.file,
          name: ref.original,
          allowForeignPlatform: this.options.allowForeignPlatform ?? false,
        })
      : await this.resolve(ref, opts.dockerConfig);
    const total = resolved.layers.length;
    // Wait for every layer job to settle before reporting a failure, so no sibling is still
    // writing into staging when the caller hears the pull failed. Good layers stay stored.
    const settled = await Promise.allSettled(resolved.layers.map((layer, index) => this.layer(ref, layer, index, total, opts)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    const diffIds = settled.map((r) => (r as PromiseFulfilledResult<string>).value);

    let configText = resolved.configText;
    if (resolved.schema1 || resolved.layers.some((l) => !l.diffId)) {
      // No config blob carried the diff_ids (schema 1, legacy archives): record what we computed.
      const config = JSON.parse(configText) as { rootfs?: { type?: string; diff_ids?: string[] } };
      config.rootfs = { type: "layers", diff_ids: diffIds };
      configText = JSON.stringify(config);
    }
    const configDigest = this.store.writeConfig(configText);
    const now = new Date().toISOString();
    const record: ImageRecord = {
      reference: key,
      manifestDigest: resolved.manifestDigest,
      configDigest,
      layers: diffIds,
      layerSizes: resolved.layers.map((l) => l.size),
      source: resolved.source,
      pulledAt: now,
      lastUsedAt: now,
    };
    this.store.putImage(record);
    return record;
  }

  private async resolve(ref: ImageReference, dockerConfig: DockerConfig | undefined): Promise<ResolvedImage> {
    const registry = this.options.registry;
    const allowForeignPlatform = this.options.allowForeignPlatform ?? false;
    // A directory of archives serves names without a registry. A name that carries one
    // (127.0.0.1:5000/app:1) is pulled from that registry, unless the directory holds an
    // archive under exactly that name (the layout Mesos reads: <dir>/127.0.0.1:5000/app:1.tar).
    if (registry.kind === "directory" && (!ref.explicitDomain || archiveCandidates(registry.path, ref).some((c) => existsSync(c)))) {
      return this.workers.pull.call("archive", { dir: registry.path, name: ref.original, allowForeignPlatform });
    }
    const spec = await this.spec(ref, dockerConfig);
    return this.workers.pull.call("registry", {
      spec,
      reference: manifestReference(ref),
      what: ref.original,
      allowForeignPlatform,
    });
  }

  /** Which registry, which scheme, which repository path, which credentials. */
  private async spec(ref: ImageReference, dockerConfig = this.options.dockerConfig): Promise<RegistrySpec> {
    const registry = this.options.registry;
    let base: string;
    let host: string;
    if (ref.explicitDomain || registry.kind !== "url") {
      host = ref.domain === DOCKER_HUB ? DOCKER_HUB_REGISTRY : ref.domain;
      const allowHttp = isLoopbackHost(host) || this.options.insecureRegistries.includes(host);
      let probing = this.bases.get(host);
      if (!probing) {
        probing = ref.domain === DOCKER_HUB ? Promise.resolve(`https://${host}`) : probeBase(host, allowHttp, this.limits);
        this.bases.set(host, probing);
        probing.catch(() => this.bases.delete(host));
      }
      base = await probing;
    } else {
      base = registry.url.origin;
      host = registry.url.host;
    }
    const isHub = host === DOCKER_HUB_REGISTRY || host.endsWith(".docker.io") || host === DOCKER_HUB;
    const credentials = lookupCredentials(dockerConfig, isHub ? DOCKER_HUB : host);
    return {
      base,
      repository: remotePath(ref, isHub),
      ...(credentials ? { credentials } : {}),
      insecure: this.options.insecureRegistries,
      limits: this.limits,
    };
  }

  /** One layer: from the store if there, else joined to or started as a download. */
  private async layer(ref: ImageReference, layer: ResolvedLayer, index: number, total: number, opts: PullOptions): Promise<string> {
    const emit = opts.onEvent ?? (() => {});
    const id = layer.diffId ?? layer.digest ?? `${layer.file?.path}:${layer.member}`;
    const known =
      (layer.diffId && this.store.hasLayer(layer.diffId) && layer.diffId) || (layer.digest && this.store.diffIdFor(layer.digest));
    if (known) {
      // Until the record exists nothing names this layer: hold it through the pull.
      const release = this.store.leases.hold([`layer:${known}`]);
      this.pending.push(release);
      emit({ kind: "layer", index, total, id, state: "cached", size: layer.size });
      return known;
    }
    const shared = this.layers.get(id);
    if (shared) {
      emit({ kind: "layer", index, total, id, state: "shared", size: layer.size });
      return shared;
    }
    const work = this.slots.run(async (worker) => {
      // Someone may have finished it while we waited for a worker.
      const done =
        (layer.diffId && this.store.hasLayer(layer.diffId) && layer.diffId) || (layer.digest && this.store.diffIdFor(layer.digest));
      if (done) return done;
      emit({ kind: "layer", index, total, id, state: "start", size: layer.size });
      const started = performance.now();
      const staging = this.store.newStaging();
      const job: LayerJob = {
        source: layer.file
          ? { kind: "file", ...layer.file }
          : {
              kind: "registry",
              spec: await this.spec(ref, opts.dockerConfig),
              digest: layer.digest!,
              ...(layer.size ? { size: layer.size } : {}),
            },
        staging,
        expectDigest: layer.digest,
        expectDiffId: layer.diffId,
        maxBytes: this.options.maxLayerSize,
        what: `layer ${layer.digest ?? layer.member ?? id}`,
      };
      const result = await worker.call("layer", job, {
        onProgress: (p) => emit({ kind: "progress", index, id, bytes: p.bytes, size: layer.size }),
      });
      this.store.commitLayer(staging, {
        diffId: result.diffId,
        digests: [...new Set([result.digest, ...(layer.digest ? [layer.digest] : [])])],
        tarBytes: result.tarBytes,
        entries: result.entries,
        whiteouts: result.whiteouts,
        opaques: result.opaques,
        createdAt: new Date().toISOString(),
      });
      this.pending.push(this.store.leases.hold([`layer:${result.diffId}`]));
      emit({ kind: "layer-done", index, id, bytes: result.compressedBytes, ms: performance.now() - started });
      return result.diffId;
    });
    this.layers.set(id, work);
    try {
      return await work;
    } finally {
      this.layers.delete(id);
    }
  }
}
