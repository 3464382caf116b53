// One layer, fetched and unpacked inside an extract worker: from a registry blob (resumed
// on dropped connections) or from a byte range of a local archive. On any failure the
// staging directory is removed before the error goes back, so nothing half-written stays.
import { mkdirSync, statfsSync } from "node:fs";
import { removeTree } from "../util/tree.ts";
import type { RpcContext } from "../threads/rpc.ts";
import { RegistryClient, RestartRequired, type RegistrySpec } from "./registry.ts";
import { WriterPool } from "./layer/file-writer.ts";
import { unpackLayer, type UnpackResult } from "./layer/pipeline.ts";
import { workerOf } from "../threads/workers.ts";
import type { AciJob, AciResult } from "./appc.ts";

type LayerSource =
  | { kind: "registry"; spec: RegistrySpec; digest: string; size?: number }
  | { kind: "file"; path: string; offset: number; length: number };

export interface LayerJob {
  source: LayerSource;
  /** A directory of its own under the store's staging/; the tree goes to `<staging>/rootfs`. */
  staging: string;
  expectDigest?: string;
  expectDiffId?: string;
  maxBytes: number;
  what: string;
}

/** Bytes of the blob (or ACI) read so far. */
export interface LayerProgress {
  bytes: number;
}

/** The extract worker's operations: workers/extract.ts serves them, the puller calls them. */
export interface ExtractOps {
  layer(job: LayerJob, ctx: RpcContext<LayerProgress>): Promise<UnpackResult>;
  aci(job: AciJob, ctx: RpcContext<LayerProgress>): Promise<AciResult>;
}

export const EXTRACT_WORKER = workerOf<ExtractOps>("extract");

const clients = new Map<string, RegistryClient>();

/** Two write threads per extract worker: file creation overlaps well across threads. */
const writers = new WriterPool(2);

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/**
 * On tmpfs creating a file costs a few microseconds, less than handing it to another
 * thread; on disk filesystems (ext4 here: ~250 µs each) the write threads pay off.
 */
function wantWriters(dir: string): boolean {
  try {
    const type = statfsSync(dir).type;
    return type !== TMPFS_MAGIC && type !== RAMFS_MAGIC;
  } catch {
    return true;
  }
}

/** One client per repository and credentials, so a token is fetched once per worker. */
function clientFor(spec: RegistrySpec): RegistryClient {
  const key = JSON.stringify(spec);
  let client = clients.get(key);
  if (!client) {
    client = new RegistryClient(spec);
    clients.set(key, client);
  }
  return client;
}

function open(source: LayerSource): AsyncIterable<Uint8Array> {
  if (source.kind === "registry") return clientFor(source.spec).blob(source.digest, source.size);
  const file = Bun.file(source.path).slice(source.offset, source.offset + source.length);
  return file.stream() as unknown as AsyncIterable<Uint8Array>;
}

export async function runLayerJob(job: LayerJob, ctx: RpcContext<LayerProgress>): Promise<UnpackResult> {
  const rootfs = `${job.staging}/rootfs`;
  try {
    for (let attempt = 0; ; attempt++) {
      removeTree(rootfs);
      mkdirSync(rootfs, { recursive: true });
      try {
        return await unpackLayer(open(job.source), rootfs, {
          maxBytes: job.maxBytes,
          expectDigest: job.expectDigest,
          expectDiffId: job.expectDiffId,
          what: job.what,
          writers: wantWriters(job.staging) ? writers : undefined,
          onProgress: (bytes) => ctx.progress({ bytes } satisfies LayerProgress),
        });
      } catch (err) {
        // A registry that cannot resume gets one more try from the first byte.
        if (err instanceof RestartRequired && attempt === 0) continue;
        throw err;
      }
    }
  } catch (err) {
    removeTree(job.staging);
    throw err;
  }
}
