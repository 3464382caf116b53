// The worker threads ucr has, in one table: the build embeds each entry in the binary, the
// pool loads it from there, and the agent and the CLI start them by name. A WorkerHandle
// ties a name to the operations its worker serves, so both ends of a call are typed alike.

export const WORKERS = {
  pull: { entry: "workers/pull.ts", does: "resolves images: registry manifests and configs, archive indexes" },
  extract: { entry: "workers/extract.ts", does: "fetches, hashes, decompresses and unpacks layers and ACIs" },
  write: { entry: "workers/write.ts", does: "creates a layer's regular files for an extract worker" },
  // Its entry is workers/gc.ts (the design card's gc worker): image GC's deletions and measures are most of its work.
  disk: { entry: "workers/gc.ts", does: "measures and deletes trees (image GC), copies layers, warms cgroup locks" },
  setup: {
    entry: "workers/setup.ts",
    does: "the launcher's second setup lane: sets up a forked container while the launcher sets up another",
  },
} as const;

export type WorkerName = keyof typeof WORKERS;

/** A worker by name, with the operations it serves as a type (`Ops` exists for the compiler only). */
export interface WorkerHandle<Ops> {
  readonly name: WorkerName;
  readonly ops?: Ops;
}

export function workerOf<Ops>(name: WorkerName): WorkerHandle<Ops> {
  return { name };
}
