// Appc images by simple discovery (reference section 7): the ACI for name + labels is at
// <--appc_simple_discovery_uri_prefix>{name}-{version}-{os}-{arch}.aci (http(s) or a local
// directory), its ID is "sha512-" + the SHA-512 of its (uncompressed) tar, and it is kept
// under <--appc_store_dir>/images/<id>/{manifest,rootfs}. Dependencies are fetched depth
// first and become lower layers. Only the rootfs is used, as in Mesos.
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { gunzipSync } from "node:zlib";
import { hostPlatform } from "./manifest.ts";
import { unpackLayer } from "./layer/pipeline.ts";

export class AppcError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AppcError";
  }
}

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

export interface AppcOptions {
  prefix: string;
  storeDir: string;
  maxBytes: number;
}

const NAME = /^[a-z0-9]+([-._~/][a-z0-9]+)*$/;

/** The discovery URL Mesos builds: prefix + name-version-os-arch.aci. */
export function discoveryUrl(prefix: string, name: string, labels: Record<string, string>): string {
  const version = labels.version ?? "latest";
  const host = hostPlatform();
  const os = labels.os ?? host.os;
  const arch = labels.arch ?? host.architecture;
  return `${prefix}${name}-${version}-${os}-${arch}.aci`;
}

async function fetchTo(url: string, dest: string): Promise<void> {
  if (url.startsWith("/")) {
    if (!existsSync(url)) throw new AppcError(`no ACI at ${url}`);
    await Bun.write(dest, Bun.file(url));
    return;
  }
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new AppcError(`fetching ${url}: HTTP ${res.status}`);
  const out = createWriteStream(dest);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
}

export class AppcStore {
  private readonly byKey = new Map<string, Promise<AppcImage>>();
  constructor(private readonly opts: AppcOptions) {}

  private get imagesDir() {
    return join(this.opts.storeDir, "images");
  }

  /** Fetches (or finds) an image and its dependencies. */
  async get(name: string, labelList: Array<{ key: string; value?: string }>, id?: string, depth = 0): Promise<AppcImage> {
    if (depth > 16) throw new AppcError(`image ${name}: dependencies nest too deep (a cycle?)`);
    if (!NAME.test(name)) throw new AppcError(`'${name}' is not an Appc image name (lowercase AC names: letters, digits, -._~/)`);
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
    mkdirSync(this.imagesDir, { recursive: true });
    let imageId = id;
    if (!imageId || !existsSync(join(this.imagesDir, imageId, "manifest"))) {
      imageId = await this.download(name, labels, id);
    }
    const dir = join(this.imagesDir, imageId);
    let manifest;
    try {
      manifest = v.parse(ManifestSchema, JSON.parse(readFileSync(join(dir, "manifest"), "utf8")));
    } catch (err) {
      throw new AppcError(`image ${name}: its manifest is not a valid ImageManifest (${(err as Error).message})`);
    }
    const layers: string[] = [];
    for (const dep of manifest.dependencies) {
      const sub = await this.get(dep.imageName, dep.labels.map((l) => ({ key: l.name, value: l.value })), dep.imageID, depth + 1);
      layers.push(...sub.layers);
    }
    layers.push(join(dir, "rootfs"));
    return { id: imageId, layers: [...new Set(layers)] };
  }

  private async download(name: string, labels: Record<string, string>, wantId: string | undefined): Promise<string> {
    const url = discoveryUrl(this.opts.prefix, name, labels);
    const staging = join(this.opts.storeDir, "staging", `${process.pid}.${Math.random().toString(36).slice(2)}`);
    mkdirSync(staging, { recursive: true });
    try {
      const file = join(staging, "image.aci");
      await fetchTo(url, file);
      let tar: Uint8Array = new Uint8Array(await Bun.file(file).arrayBuffer());
      if (tar[0] === 0x1f && tar[1] === 0x8b) tar = gunzipSync(tar);
      const id = `sha512-${new Bun.CryptoHasher("sha512").update(tar).digest("hex")}`;
      if (wantId && wantId !== id) throw new AppcError(`image ${name} from ${url}: ID mismatch: expected ${wantId}, got ${id}`);
      const target = join(this.imagesDir, id);
      if (existsSync(join(target, "manifest"))) return id;
      const tree = join(staging, "tree");
      mkdirSync(tree);
      await unpackLayer(
        (async function* () {
          yield Buffer.from(tar);
        })(),
        tree,
        { maxBytes: this.opts.maxBytes, what: `ACI ${url}` },
      );
      if (!existsSync(join(tree, "manifest")) || !existsSync(join(tree, "rootfs"))) {
        throw new AppcError(`image ${name} from ${url}: not an ACI (it needs 'manifest' and 'rootfs/')`);
      }
      try {
        renameSync(tree, target);
      } catch (err) {
        if (!existsSync(join(target, "manifest"))) throw err;
      }
      return id;
    } catch (err) {
      if (err instanceof AppcError) throw err;
      throw new AppcError(`image ${name} from ${url}: ${(err as Error).message}`);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
}
