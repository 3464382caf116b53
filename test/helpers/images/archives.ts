// Archives of test images: docker save, OCI archives, legacy layouts, recompressed variants.
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../agent.ts";
import { type BuiltImage, type Compression, type Descriptor, type LayerInfo, MT, run, runAsync } from "./basics.ts";
import { blobPath, compress, decompress, initLayout, layerMediaType, loadImage, readBlob, tagManifest, writeBlob } from "./layout.ts";

/** `docker save` as Docker <= 24 wrote it (manifest.json + <config>.json + layer tars), by skopeo. */
export async function saveArchive(
  layoutDir: string,
  outTar: string,
  ref: string,
  opts: { srcTag?: string; familiar?: boolean } = {},
): Promise<string> {
  const tag = opts.srcTag ?? loadImage(layoutDir).tag;
  rmSync(outTar, { force: true });
  // docker-archive has no zstd (skopeo: "zstd compression is not supported for docker images").
  const src = withoutZstd(layoutDir, tag);
  try {
    await runAsync(["skopeo", "--insecure-policy", "copy", "--quiet", `oci:${src.dir}:${tag}`, `docker-archive:${outTar}:${ref}`]);
  } finally {
    src.cleanup();
  }
  if (opts.familiar ?? true) familiarizeArchive(outTar);
  return outTar;
}

/** docker.io/library/x:t -> x:t, docker.io/o/x:t -> o/x:t: Docker's short names. */
function familiarName(name: string): string {
  return name.replace(/^docker\.io\/library\/(?=[^/]+$|[^/]+:)/, "").replace(/^docker\.io\//, "");
}

/**
 * skopeo writes fully-qualified names (docker.io/library/busybox:1) in manifest.json and
 * repositories; `docker save` writes busybox:1. Rewrite them so the archive reads like
 * Docker's (the rest of skopeo's layout is kept: <diffid>.tar with <id>/layer.tar symlinks).
 */
function familiarizeArchive(tarFile: string): void {
  const stage = tempDir("ucr-docker-archive-");
  try {
    run(["tar", "-xf", tarFile, "-C", stage]);
    const mf = join(stage, "manifest.json");
    const manifest = JSON.parse(readFileSync(mf, "utf8")) as Array<{ RepoTags?: string[] }>;
    for (const m of manifest) m.RepoTags = m.RepoTags?.map(familiarName);
    writeFileSync(mf, JSON.stringify(manifest));
    const rf = join(stage, "repositories");
    if (existsSync(rf)) {
      const repos = JSON.parse(readFileSync(rf, "utf8")) as Record<string, unknown>;
      writeFileSync(rf, JSON.stringify(Object.fromEntries(Object.entries(repos).map(([k, v]) => [familiarName(k), v]))));
    }
    gnuTarOf(stage, tarFile);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * Copy image `tag` into layout `destDir` (as `destTag`) with its layers recompressed by
 * `to`. The config is copied byte for byte: diff_ids are of the uncompressed tars, so they
 * still hold. Returns the new image.
 */
function recompressImage(
  layoutDir: string,
  tag: string,
  destDir: string,
  to: (layer: LayerInfo) => Compression,
  destTag = tag,
): BuiltImage {
  const img = loadImage(layoutDir, tag);
  initLayout(destDir);
  writeFileSync(blobPath(destDir, img.config.digest), readBlob(layoutDir, img.config.digest));
  const layers: LayerInfo[] = img.layers.map((l) => {
    const c = to(l);
    let data: Uint8Array = readBlob(layoutDir, l.digest);
    if (c !== l.compression) data = compress(decompress(data, l.compression), c);
    return { mediaType: layerMediaType(c), ...writeBlob(destDir, data), diffId: l.diffId, compression: c };
  });
  const manifestJson = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: img.config,
    layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
  };
  const manifest: Descriptor = { mediaType: MT.ociManifest, ...writeBlob(destDir, JSON.stringify(manifestJson)) };
  tagManifest(destDir, destTag, manifest);
  return { ...img, dir: destDir, tag: destTag, manifest, layers };
}

/** The layout itself, or a scratch copy with zstd layers as gzip (umoci 0.4.7, docker-archive). */
export function withoutZstd(layoutDir: string, tag: string): { dir: string; cleanup(): void } {
  const img = loadImage(layoutDir, tag);
  if (!img.layers.some((l) => l.compression === "zstd")) return { dir: layoutDir, cleanup() {} };
  const scratch = tempDir("ucr-nozstd-");
  recompressImage(layoutDir, tag, scratch, (l) => (l.compression === "zstd" ? "gzip" : l.compression));
  return { dir: scratch, cleanup: () => rmSync(scratch, { recursive: true, force: true }) };
}

function splitRef(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  return colon > slash ? { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { repo: ref, tag: "latest" };
}

/** docker.io/library/busybox:latest for busybox:latest, as containerd names images. */
function fullName(ref: string): string {
  const first = ref.split("/")[0] ?? "";
  const hasDomain = ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasDomain) return ref;
  return ref.includes("/") ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

function gnuTarOf(stage: string, outTar: string): void {
  rmSync(outTar, { force: true });
  run(["tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C", stage, "-cf", outTar, ...readdirSync(stage).sort()]);
}

/**
 * `docker save` as Docker 25+ writes it: an OCI layout (index.json naming the image by
 * io.containerd.image.name and ref.name) plus manifest.json and repositories for old loaders.
 * Layers are stored uncompressed, as Docker does, unless `uncompressed: false`.
 */
export function ociArchive(
  layoutDir: string,
  outTar: string,
  opts: { ref?: string; srcTag?: string; uncompressed?: boolean } = {},
): string {
  const src = loadImage(layoutDir, opts.srcTag);
  const ref = opts.ref ?? `ucr-test:${src.tag || "latest"}`;
  const { repo, tag } = splitRef(ref);
  const stage = tempDir("ucr-ociarchive-");
  try {
    const uncompressed = opts.uncompressed ?? true;
    const img = recompressImage(layoutDir, src.tag, stage, (l) => (uncompressed ? "none" : l.compression), tag);
    const desc: Descriptor = {
      mediaType: img.manifest.mediaType,
      digest: img.manifest.digest,
      size: img.manifest.size,
      annotations: { "io.containerd.image.name": fullName(ref), "org.opencontainers.image.ref.name": tag },
    };
    writeFileSync(join(stage, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [desc] }));
    const hex = (d: string) => `blobs/sha256/${d.slice("sha256:".length)}`;
    writeFileSync(
      join(stage, "manifest.json"),
      JSON.stringify([{ Config: hex(img.config.digest), RepoTags: [ref], Layers: img.layers.map((l) => hex(l.digest)) }]),
    );
    const top = img.configJson.rootfs.diff_ids[img.configJson.rootfs.diff_ids.length - 1] ?? "";
    writeFileSync(join(stage, "repositories"), JSON.stringify({ [repo]: { [tag]: top.replace("sha256:", "") } }));
    gnuTarOf(stage, outTar);
    return outTar;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * The legacy (pre-1.10) `docker save` layout: `repositories` and one `<id>/` directory per
 * layer with json, layer.tar and VERSION. `withManifest` adds manifest.json and
 * `<config>.json` as Docker 1.10 to 24 also did.
 */
export function legacyArchive(
  layoutDir: string,
  outTar: string,
  ref: string,
  opts: { srcTag?: string; withManifest?: boolean } = {},
): { ids: string[] } {
  const src = loadImage(layoutDir, opts.srcTag);
  const { repo, tag } = splitRef(ref);
  const stage = tempDir("ucr-legacy-");
  try {
    const ids: string[] = [];
    let parent = "";
    src.layers.forEach((l, i) => {
      // Docker's v1 ids were a chain over the layers; any stable unique hex works for a loader.
      const id = createHash("sha256").update(`${parent} ${l.diffId}`).digest("hex");
      const dir = join(stage, id);
      mkdirSync(dir);
      writeFileSync(join(dir, "VERSION"), "1.0");
      writeFileSync(join(dir, "layer.tar"), decompress(readBlob(layoutDir, l.digest), l.compression));
      const last = i === src.layers.length - 1;
      const json: Record<string, unknown> = {
        id,
        ...(parent ? { parent } : {}),
        created: src.configJson.created,
        container_config: { Cmd: [src.configJson.history.filter((h) => !h.empty_layer)[i]?.created_by ?? ""] },
        os: src.configJson.os,
        architecture: src.configJson.architecture,
        ...(last ? { config: src.configJson.config } : {}),
      };
      writeFileSync(join(dir, "json"), JSON.stringify(json));
      ids.push(id);
      parent = id;
    });
    writeFileSync(join(stage, "repositories"), JSON.stringify({ [repo]: { [tag]: parent } }));
    if (opts.withManifest) {
      const cfgHex = src.config.digest.replace("sha256:", "");
      writeFileSync(join(stage, `${cfgHex}.json`), readBlob(layoutDir, src.config.digest));
      writeFileSync(
        join(stage, "manifest.json"),
        JSON.stringify([{ Config: `${cfgHex}.json`, RepoTags: [ref], Layers: ids.map((id) => `${id}/layer.tar`) }]),
      );
    }
    gnuTarOf(stage, outTar);
    return { ids };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Entry names of a tar file (GNU tar -t). */
export function tarList(tarFile: string): string[] {
  return new TextDecoder()
    .decode(run(["tar", "-tf", tarFile]))
    .split("\n")
    .filter((l) => l !== "");
}
