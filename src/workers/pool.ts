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

export function startWorker(name: WorkerName): WorkerClient {
  return new WorkerClient(name, new Worker(workerUrl(name)));
}
