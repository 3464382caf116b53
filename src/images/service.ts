// Wiring for the image provisioner: the store under --docker_store_dir, the pull worker and
// a few extract workers, and the puller over them. Used by the agent and the CLI commands.
import { availableParallelism } from "node:os";
import type { Flags } from "../config/flags.ts";
import { startWorker } from "../threads/pool.ts";
import type { WorkerClient } from "../threads/rpc.ts";
import { AppcStore } from "./appc.ts";
import { Puller, type PullerWorkers } from "./puller.ts";
import { EXTRACT_WORKER, type ExtractOps } from "./layer-job.ts";
import { PULL_WORKER, type PullOps } from "./resolve.ts";
import { DockerStore } from "./store.ts";
import type { FetchLimits } from "./transfer.ts";

/** The download deadlines the flags ask for (durations are in nanoseconds there). */
function fetchLimits(flags: Pick<Flags, "fetcher_stall_timeout" | "image_fetch_timeout">): FetchLimits {
  return { stallMs: flags.fetcher_stall_timeout / 1e6, totalMs: flags.image_fetch_timeout / 1e6 };
}

/** Layers unpack in parallel up to this many (gunzip and file creation are CPU-bound). */
export function extractWorkerCount(): number {
  return Math.max(2, Math.min(4, availableParallelism()));
}

export interface ImageService {
  store: DockerStore;
  puller: Puller;
  /** Appc images by simple discovery, fetched through the same extract workers. */
  appc: AppcStore;
  workers: Array<WorkerClient<PullOps> | WorkerClient<ExtractOps>>;
  removedStaging: string[];
  /** The same for --appc_store_dir. */
  removedAppcStaging: string[];
  /** What start-up changed that the log should say (a store directory's mode tightened). */
  notes: string[];
  stop(): void;
}

export function startImageService(flags: Flags, workers?: PullerWorkers): ImageService {
  const store = new DockerStore(flags.docker_store_dir);
  const { removedStaging, note } = store.init();
  const pool = workers ?? {
    pull: startWorker(PULL_WORKER),
    extract: Array.from({ length: extractWorkerCount() }, () => startWorker(EXTRACT_WORKER)),
  };
  const puller = new Puller(
    store,
    {
      registry: flags.docker_registry,
      dockerConfig: flags.docker_config,
      insecureRegistries: flags.docker_insecure_registries,
      maxLayerSize: flags.docker_max_layer_size,
      limits: fetchLimits(flags),
      allowForeignPlatform: flags.docker_allow_foreign_platform,
    },
    pool,
  );
  const appc = new AppcStore({
    prefix: flags.appc_simple_discovery_uri_prefix,
    storeDir: flags.appc_store_dir,
    maxBytes: flags.docker_max_layer_size,
    limits: fetchLimits(flags),
    run: (job) => puller.extractAci(job),
  });
  const notes = note ? [note] : [];
  let removedAppcStaging: string[] = [];
  try {
    removedAppcStaging = appc.init();
  } catch (err) {
    // Not fatal: what is left only takes space, and the next start tries again.
    notes.push(`appc_store_dir: cannot remove the staging left by earlier runs in ${appc.stagingDir}: ${(err as Error).message}`);
  }
  const all = [pool.pull, ...pool.extract];
  return {
    store,
    puller,
    appc,
    workers: all,
    removedStaging,
    removedAppcStaging,
    notes,
    stop: () => {
      for (const w of all) w.terminate();
    },
  };
}
