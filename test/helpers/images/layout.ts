// OCI image layouts on disk: blobs, index, manifests; an image from layer tars and a config.
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type BuiltImage,
  type Compression,
  type ContainerConfig,
  CREATED,
  type Descriptor,
  haveZstd,
  hostArch,
  type ImageConfig,
  type LayerInfo,
  MT,
  run,
} from "./basics.ts";

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export function blobPath(layoutDir: string, digest: string): string {
  const [alg, hex] = digest.split(":");
  return join(layoutDir, "blobs", alg ?? "sha256", hex ?? "");
}

export function initLayout(dir: string): void {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  if (!existsSync(join(dir, "oci-layout"))) {
    writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  }
  if (!existsSync(join(dir, "index.json"))) {
    writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [] }));
  }
}

export function writeBlob(layoutDir: string, data: Uint8Array | string): { digest: string; size: number } {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const digest = sha256(bytes);
  writeFileSync(blobPath(layoutDir, digest), bytes);
  return { digest, size: bytes.byteLength };
}

export function readBlob(layoutDir: string, digest: string): Buffer {
  return readFileSync(blobPath(layoutDir, digest));
}

interface IndexJson {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

function readIndex(layoutDir: string): IndexJson {
  return JSON.parse(readFileSync(join(layoutDir, "index.json"), "utf8")) as IndexJson;
}

function writeIndex(layoutDir: string, index: IndexJson): void {
  writeFileSync(join(layoutDir, "index.json"), JSON.stringify(index));
}

/** Point `tag` in index.json at `desc`, replacing what the tag named before. */
export function tagManifest(layoutDir: string, tag: string, desc: Descriptor): void {
  const index = readIndex(layoutDir);
  index.manifests = index.manifests.filter((m) => m.annotations?.["org.opencontainers.image.ref.name"] !== tag);
  index.manifests.push({
    ...desc,
    annotations: { ...(desc.annotations ?? {}), "org.opencontainers.image.ref.name": tag },
  });
  writeIndex(layoutDir, index);
}

/** The index.json descriptor for `tag` (or the only one). */
export function findManifest(layoutDir: string, tag?: string): Descriptor {
  const index = readIndex(layoutDir);
  const found =
    tag === undefined
      ? index.manifests.length === 1
        ? index.manifests[0]
        : undefined
      : index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag);
  if (!found) throw new Error(`no manifest ${tag ?? "(only one)"} in ${layoutDir}/index.json`);
  return found;
}

/** Load an image (manifest, config, layers) back from a layout. */
export function loadImage(layoutDir: string, tag?: string): BuiltImage {
  const desc = findManifest(layoutDir, tag);
  const manifest = JSON.parse(readBlob(layoutDir, desc.digest).toString("utf8")) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const configJson = JSON.parse(readBlob(layoutDir, manifest.config.digest).toString("utf8")) as ImageConfig;
  return {
    dir: layoutDir,
    tag: desc.annotations?.["org.opencontainers.image.ref.name"] ?? tag ?? "",
    manifest: desc,
    config: manifest.config,
    configJson,
    layers: manifest.layers.map((l, i) => ({
      ...l,
      diffId: configJson.rootfs.diff_ids[i] ?? "",
      compression: l.mediaType.endsWith("zstd") ? "zstd" : l.mediaType.endsWith("gzip") ? "gzip" : "none",
    })),
  };
}

export function compress(tar: Uint8Array, c: Compression): Uint8Array {
  switch (c) {
    case "none":
      return tar;
    case "gzip":
      // Real gzip, -n so no name/mtime goes in the header and the bytes are reproducible.
      return run(["gzip", "-n", "-6", "-c"], { stdin: tar });
    case "zstd":
      if (!haveZstd) throw new Error("zstd is not installed (apt-get install zstd)");
      return run(["zstd", "-q", "-3", "-c"], { stdin: tar });
  }
}

export function decompress(data: Uint8Array, c: Compression): Uint8Array {
  switch (c) {
    case "none":
      return data;
    case "gzip":
      return run(["gzip", "-d", "-c"], { stdin: data });
    case "zstd":
      return run(["zstd", "-q", "-d", "-c"], { stdin: data });
  }
}

export function layerMediaType(c: Compression): string {
  return c === "gzip" ? MT.ociLayerGzip : c === "zstd" ? MT.ociLayerZstd : MT.ociLayerTar;
}

interface LayerInput {
  /** The uncompressed layer tar. */
  tar: Uint8Array;
  compression: Compression;
  createdBy?: string;
}

export interface ImageSpec {
  tag: string;
  layers: LayerInput[];
  config: ContainerConfig;
  architecture?: string;
  os?: string;
  variant?: string;
  /** Extra history entries marked empty_layer, appended after the layers'. */
  emptyHistory?: string[];
}

/** Write layers, config and manifest into the layout and tag it. */
export function addImage(layoutDir: string, spec: ImageSpec): BuiltImage {
  initLayout(layoutDir);
  const layers: LayerInfo[] = spec.layers.map((l) => {
    const blob = compress(l.tar, l.compression);
    const { digest, size } = writeBlob(layoutDir, blob);
    return { mediaType: layerMediaType(l.compression), digest, size, diffId: sha256(l.tar), compression: l.compression };
  });
  const configJson: ImageConfig = {
    created: CREATED,
    architecture: spec.architecture ?? hostArch(),
    os: spec.os ?? "linux",
    ...(spec.variant ? { variant: spec.variant } : {}),
    config: spec.config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: [
      ...spec.layers.map((l, i) => ({ created: CREATED, created_by: l.createdBy ?? `layer ${i}` })),
      ...(spec.emptyHistory ?? []).map((c) => ({ created: CREATED, created_by: c, empty_layer: true })),
    ],
  };
  const cfg = writeBlob(layoutDir, JSON.stringify(configJson));
  const config: Descriptor = { mediaType: MT.ociConfig, ...cfg };
  const manifestJson = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config,
    layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
  };
  const man = writeBlob(layoutDir, JSON.stringify(manifestJson));
  const manifest: Descriptor = {
    mediaType: MT.ociManifest,
    ...man,
    platform: {
      architecture: configJson.architecture,
      os: configJson.os,
      ...(spec.variant ? { variant: spec.variant } : {}),
    },
  };
  tagManifest(layoutDir, spec.tag, manifest);
  return { dir: layoutDir, tag: spec.tag, manifest, config, layers, configJson };
}
