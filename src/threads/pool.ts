// Starts worker threads (threads/workers.ts names them). In the compiled binary the worker
// entry points are embedded under /$bunfs/root (scripts/build.ts embeds every entry of the
// table); from source they are the .ts files under src/workers/.
import { isCompiled } from "../util/compiled.ts";
import { WorkerClient, type Operations } from "./rpc.ts";
import { WORKERS, type WorkerHandle, type WorkerName } from "./workers.ts";

function workerUrl(name: WorkerName): string {
  if (isCompiled()) return `/$bunfs/root/${WORKERS[name].entry}`;
  return new URL(`../${WORKERS[name].entry}`, import.meta.url).href;
}

/** A worker thread started now (for short-lived commands: `ucr pull`, `ucr load`). */
export function startWorker<Ops extends Operations<Ops>>(worker: WorkerHandle<Ops>): WorkerClient<Ops> {
  return new WorkerClient<Ops>(worker.name, new Worker(workerUrl(worker.name)));
}

/**
 * A worker whose thread starts when first needed and stops after `idleStopMs` without
 * calls (the agent's: an idle agent holds no worker threads).
 */
export function lazyWorker<Ops extends Operations<Ops>>(
  worker: WorkerHandle<Ops>,
  label: string,
  idleStopMs: number,
  onStart?: (label: string) => void,
): WorkerClient<Ops> {
  const client = new WorkerClient<Ops>(label, () => new Worker(workerUrl(worker.name)), idleStopMs);
  if (onStart) client.onStart = () => onStart(label);
  return client;
}

/**
 * Workers that are used together start together: when one starts (a pull's first call to
 * the pull worker), the others start beside it, so the extract workers are up by the time
 * the manifest is resolved, as when all were started with the agent.
 */
export function startTogether(clients: ReadonlyArray<{ onStart: (() => void) | undefined; start(): void }>): void {
  for (const c of clients) {
    const own = c.onStart;
    c.onStart = () => {
      own?.();
      for (const other of clients) other.start();
    };
  }
}
