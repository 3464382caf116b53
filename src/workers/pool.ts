// Starts the named worker threads. In the compiled binary the worker entry points are
// embedded under /$bunfs/root (scripts/build.ts lists them as entry points); from source
// they are the .ts files beside this one.
import { isCompiled } from "../version.ts";
import { WorkerClient } from "./rpc.ts";

export const WORKER_NAMES = ["pull", "extract", "gc"] as const;
export type WorkerName = (typeof WORKER_NAMES)[number];

export function workerUrl(name: WorkerName): string {
  if (isCompiled()) return `/$bunfs/root/workers/${name}.ts`;
  return new URL(`./${name}.ts`, import.meta.url).href;
}

/** A worker thread started now (for short-lived commands: `ucr pull`, `ucr load`). */
export function startWorker(name: WorkerName): WorkerClient {
  return new WorkerClient(name, new Worker(workerUrl(name)));
}

/**
 * A worker whose thread starts when first needed and stops after `idleStopMs` without
 * calls (the agent's: an idle agent holds no worker threads).
 */
export function lazyWorker(name: WorkerName, label: string, idleStopMs: number, onStart?: (label: string) => void): WorkerClient {
  const client = new WorkerClient(label, () => new Worker(workerUrl(name)), idleStopMs);
  if (onStart) client.onStart = () => onStart(label);
  return client;
}

/**
 * Workers that are used together start together: when one starts (a pull's first call to
 * the pull worker), the others start beside it, so the extract workers are up by the time
 * the manifest is resolved, as when all were started with the agent.
 */
export function startTogether(clients: readonly WorkerClient[]): void {
  for (const c of clients) {
    const own = c.onStart;
    c.onStart = () => {
      own?.();
      for (const other of clients) other.start();
    };
  }
}
