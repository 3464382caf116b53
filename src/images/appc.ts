// Appc images by simple discovery (reference section 7): the ACI for name + labels is at
// <--appc_simple_discovery_uri_prefix>{name}-{version}-{os}-{arch}.aci (http(s) or a local
// directory), its ID is "sha512-" + the SHA-512 of its (uncompressed) tar, and it is kept
// under <--appc_store_dir>/images/<id>/{manifest,rootfs}. Dependencies are fetched depth
// first and become lower layers. Only the rootfs is used, as in Mesos. The store and its
// cache live on the agent's thread; fetching, hashing and untarring happen in an extract
// worker (runAciJob), streaming, with the same deadlines and bounds as Docker layers.
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import * as v from "valibot";
import type { RpcContext } from "../threads/rpc.ts";
import { ensurePrivateDir } from "../util/private-dir.ts";
import { removeTree } from "../util/tree.ts";
import { newStagingDir, removeDeadStaging } from "../util/staging.ts";
import { unpackLayer } from "./layer/pipeline.ts";
import { hostPlatform } from "./manifest.ts";
import { DEFAULT_LIMITS, Transfer, discard, type FetchLimits } from "./transfer.ts";
import { errorOfKind } from "../errors.ts";

class AppcError extends errorOfKind("invalid") {}

const ManifestSchema = v.looseObject({
  acKind: v.literal("ImageManifest", "must be an ImageManifest"),
  name: v.string(),
  labels: v.optional(v.array(v.looseObject({ name: v.string(), value: v.string() })), []),
  dependencies: v.optional(
    v.array(
      v.looseObject({
        imageName: v.string(),
        imageID: v.optional(v.string()),
        labels: v.optional(v.array(v.looseObject({ name: v.string(), value: v.string() })), []),
      }),
    ),
    [],
  ),
});

export interface AppcImage {
  id: string;
  /** Rootfs directories, dependencies first. */
  layers: string[];
}

/** One ACI to fetch and unpack, in an extract worker. */
export interface AciJob {
  /** http(s) URL or absolute path. */
  url: string;
  /** A directory of its own; the ACI's tree goes to `<staging>/tree`. */
  staging: string;
  maxBytes: number;
  limits: FetchLimits;
}

export interface AciResult {
  /** "sha512-<hex>" of the uncompressed tar. */
  id: string;
}

export interface AppcOptions {
  prefix: string;
  storeDir: string;
  maxBytes: number;
  limits?: FetchLimits;
  /** Runs an ACI job in an extract worker (the puller's). */
  run: (job: AciJob) => Promise<AciResult>;
}

const NAME = /^[a-z0-9]+([-._~/][a-z0-9]+)*$/;
const ID = /^sha512-[0-9a-f]{128}$/;
const MAX_MANIFEST_BYTES = 1024 * 1024;
const MAX_REDIRECTS = 5;

function isA(path: string, kind: "file" | "directory"): boolean {
  try {
    const st = lstatSync(path);
    return kind === "file" ? st.isFile() : st.isDirectory();
  } catch {
    return false;
  }
}

/** The discovery URL Mesos builds: prefix + name-version-os-arch.aci. */
function discoveryUrl(prefix: string, name: string, labels: Record<string, string>): string {
  const version = labels.version ?? "latest";
  const host = hostPlatform();
  const os = labels.os ?? host.os;
  const arch = labels.arch ?? host.architecture;
  return `${prefix}${name}-${version}-${os}-${arch}.aci`;
}

/** The ACI's bytes, from a local file or over http(s) (redirects only to http(s)), with deadlines. */
async function* aciStream(url: string, limits: FetchLimits): AsyncGenerator<Uint8Array> {
  if (url.startsWith("/")) {
    if (!existsSync(url)) throw new AppcError(`no ACI at ${url}`);
    yield* Bun.file(url).stream() as unknown as AsyncIterable<Uint8Array>;
    return;
  }
  const transfer = new Transfer(limits);
  try {
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      if (current.protocol !== "http:" && current.protocol !== "https:") {
        throw new AppcError(
          `fetching ${url}: refusing a redirect to scheme '${current.protocol.replace(/:$/, "")}'; ucr follows only http and https`,
        );
      }
      let res;
      try {
        res = await request(current, {
          method: "GET",
          headers: { "user-agent": "ucr" },
          signal: transfer.signal,
          headersTimeout: limits.stallMs,
          bodyTimeout: limits.stallMs,
        });
      } catch (err) {
        throw new AppcError(`fetching ${url}: ${transfer.why ?? (err as Error).message}`);
      }
      const location = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && typeof location === "string" && hop < MAX_REDIRECTS) {
        await discard(res.body);
        current = new URL(location, current);
        continue;
      }
      if (res.statusCode !== 200) {
        await discard(res.body);
        throw new AppcError(`fetching ${url}: HTTP ${res.statusCode}`);
      }
      try {
        for await (const chunk of res.body) {
          transfer.progress(chunk.byteLength);
          yield chunk;
        }
      } catch (err) {
        throw new AppcError(`fetching ${url}: ${transfer.why ?? (err as Error).message}`);
      }
      return;
    }
  } finally {
    transfer.done();
  }
}

/** In an extract worker: fetch, hash (sha512 of the tar) and unpack one ACI into `<staging>/tree`. */
export async function runAciJob(job: AciJob, ctx: RpcContext<{ bytes: number }>): Promise<AciResult> {
  const tree = join(job.staging, "tree");
  try {
    mkdirSync(tree, { recursive: true });
    const result = await unpackLayer(aciStream(job.url, job.limits), tree, {
      maxBytes: job.maxBytes,
      what: `ACI ${job.url}`,
      diffIdAlgorithm: "sha512",
      onProgress: (bytes) => ctx.progress({ bytes }),
    });
    return { id: `sha512-${result.diffId.slice("sha512:".length)}` };
  } catch (err) {
    removeTree(job.staging);
    throw err;
  }
}

export class AppcStore {
  private readonly byKey = new Map<string, Promise<AppcImage>>();
  constructor(private readonly opts: AppcOptions) {}

  private get imagesDir() {
    return join(this.opts.storeDir, "images");
  }

  get stagingDir() {
    return join(this.opts.storeDir, "staging");
  }

  /**
   * Removes staging left by processes that are gone (an agent killed mid-fetch); a live
   * process's (a `ucr` command or another agent on the same store) stays. Creates nothing:
   * an agent that never fetches an Appc image leaves --appc_store_dir alone.
   */
  init(): string[] {
    return removeDeadStaging(this.stagingDir);
  }

  /** Fetches (or finds) an image and its dependencies. */
  async get(name: string, labelList: Array<{ key: string; value?: string }>, id?: string, depth = 0): Promise<AppcImage> {
    if (depth > 16) throw new AppcError(`image ${name}: dependencies nest too deep (a cycle?)`);
    if (!NAME.test(name)) throw new AppcError(`'${name}' is not an Appc image name (lowercase AC names: letters, digits, -._~/)`);
    if (id !== undefined && !ID.test(id)) throw new AppcError(`image ${name}: '${id}' is not an image ID (sha512-<128 hex digits>)`);
    const labels = Object.fromEntries(labelList.map((l) => [l.key, l.value ?? ""]));
    const key = JSON.stringify([name, Object.entries(labels).sort(), id ?? ""]);
    let pending = this.byKey.get(key);
    if (!pending) {
      pending = this.fetch(name, labels, id, depth);
      this.byKey.set(key, pending);
      pending.catch(() => this.byKey.delete(key));
    }
    return pending;
  }

  private async fetch(name: string, labels: Record<string, string>, id: string | undefined, depth: number): Promise<AppcImage> {
    // Unpacked ACIs hold whatever setuid binaries they carry: only ucr may reach them.
    ensurePrivateDir(this.opts.storeDir, 0o700);
    mkdirSync(this.imagesDir, { recursive: true });
    let imageId = id;
    if (!imageId || !existsSync(join(this.imagesDir, imageId, "manifest"))) {
      imageId = await this.download(name, labels, id);
    }
    const dir = join(this.imagesDir, imageId);
    let manifest;
    try {
      // The ACI chose this file: its type and size are checked before it is read, on the agent's thread.
      const st = lstatSync(join(dir, "manifest"));
      if (!st.isFile()) throw new Error("it is not a regular file");
      if (st.size > MAX_MANIFEST_BYTES) throw new Error(`larger than ${MAX_MANIFEST_BYTES} bytes`);
      const text = readFileSync(join(dir, "manifest"));
      manifest = v.parse(ManifestSchema, JSON.parse(text.toString("utf8")));
    } catch (err) {
      throw new AppcError(`image ${name}: its manifest is not a valid ImageManifest (${(err as Error).message})`);
    }
    const layers: string[] = [];
    for (const dep of manifest.dependencies) {
      const sub = await this.get(
        dep.imageName,
        dep.labels.map((l) => ({ key: l.name, value: l.value })),
        dep.imageID,
        depth + 1,
      );
      layers.push(...sub.layers);
    }
    layers.push(join(dir, "rootfs"));
    return { id: imageId, layers: [...new Set(layers)] };
  }

  private async download(name: string, labels: Record<string, string>, wantId: string | undefined): Promise<string> {
    const url = discoveryUrl(this.opts.prefix, name, labels);
    const staging = newStagingDir(this.stagingDir);
    try {
      let id: string;
      try {
        ({ id } = await this.opts.run({ url, staging, maxBytes: this.opts.maxBytes, limits: this.opts.limits ?? DEFAULT_LIMITS }));
      } catch (err) {
        const e = err as Error;
        // Errors cross the worker boundary by name and message.
        throw new AppcError(e.name === "AppcError" ? e.message : `image ${name} from ${url}: ${e.message}`);
      }
      if (wantId && wantId !== id) throw new AppcError(`image ${name} from ${url}: ID mismatch: expected ${wantId}, got ${id}`);
      const target = join(this.imagesDir, id);
      if (existsSync(join(target, "manifest"))) return id;
      const tree = join(staging, "tree");
      // Not followed: an ACI whose rootfs is a symlink to / would hand a container the host's root.
      if (!isA(join(tree, "manifest"), "file") || !isA(join(tree, "rootfs"), "directory")) {
        throw new AppcError(`image ${name} from ${url}: not an ACI (it needs a 'manifest' file and a 'rootfs/' directory, not symlinks)`);
      }
      try {
        renameSync(tree, target);
      } catch (err) {
        if (!existsSync(join(target, "manifest"))) throw err;
      }
      return id;
    } finally {
      removeTree(staging);
    }
  }
}
