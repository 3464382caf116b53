// From an image name to what must be fetched: the manifest (through an index to this
// platform), the config and the layer list, from a registry or from an archive. Runs in
// the pull worker; the results are plain data for the puller on the main thread.
import { findArchive, readArchive } from "./archive.ts";
import { ManifestError, checkPlatform, parseImageConfig, parseManifest, selectPlatform } from "./manifest.ts";
import { parseReference } from "./reference.ts";
import { RegistryClient, type RegistrySpec } from "./registry.ts";
import { workerOf } from "../threads/workers.ts";

export interface ResolvedLayer {
  /** Compressed digest in the registry, or undefined for archive members without one. */
  digest?: string;
  size: number;
  diffId?: string;
  /** For archives: where the layer's bytes are, and the member's name. */
  file?: { path: string; offset: number; length: number };
  member?: string;
}

export interface ResolvedImage {
  manifestDigest?: string;
  configText: string;
  layers: ResolvedLayer[];
  /** A registry URL, or the archive path it came from. */
  source: string;
  /** For schema 1 (no config blob), the config was synthesised from the leaf's v1 JSON. */
  schema1: boolean;
}

export interface RegistryResolveJob {
  spec: RegistrySpec;
  /** Tag or digest to ask for. */
  reference: string;
  what: string;
  /** --docker_allow_foreign_platform */
  allowForeignPlatform?: boolean;
}

export async function resolveFromRegistry(job: RegistryResolveJob): Promise<ResolvedImage> {
  const client = new RegistryClient(job.spec);
  let fetched = await client.manifest(job.reference);
  let parsed = parseManifest(fetched.text, fetched.mediaType, `${job.what}: manifest`);
  if (parsed.kind === "index") {
    const chosen = selectPlatform(parsed.index, `${job.what}: index ${fetched.digest}`);
    fetched = await client.manifest(chosen.digest, { size: chosen.size });
    parsed = parseManifest(fetched.text, fetched.mediaType, `${job.what}: manifest ${chosen.digest}`, chosen.mediaType);
    if (parsed.kind === "index") throw new ManifestError(`${job.what}: index ${chosen.digest} points at another index`);
  }
  const source = `${job.spec.base}/${job.spec.repository}`;
  if (parsed.kind === "schema1") {
    checkPlatform(parsed.config, `${job.what}: image`, job.allowForeignPlatform ?? false);
    return {
      manifestDigest: fetched.digest,
      configText: JSON.stringify(parsed.config),
      layers: parsed.layers.map((l) => ({ digest: l.digest, size: 0 })),
      source,
      schema1: true,
    };
  }
  const manifest = parsed.manifest;
  const configText = await client.blobText(manifest.config.digest, manifest.config.size);
  const config = parseImageConfig(configText, `${job.what}: config ${manifest.config.digest}`);
  checkPlatform(config, `${job.what}: image`, job.allowForeignPlatform ?? false);
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new ManifestError(`${job.what}: the config lists ${diffIds.length} diff_ids for ${manifest.layers.length} layers`);
  }
  return {
    manifestDigest: fetched.digest,
    configText,
    layers: manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffId: diffIds[i] })),
    source,
    schema1: false,
  };
}

export interface ArchiveResolveJob {
  /** A directory of archives (the image's file is looked up there) or one archive file. */
  dir?: string;
  file?: string;
  name: string;
  /** --docker_allow_foreign_platform */
  allowForeignPlatform?: boolean;
}

export function resolveFromArchive(job: ArchiveResolveJob): ResolvedImage {
  const ref = parseReference(job.name);
  const path = job.file ?? findArchive(job.dir!, ref);
  const image = readArchive(path, ref, job.file === undefined);
  checkPlatform(image.config, `${path}: image ${image.matched}`, job.allowForeignPlatform ?? false);
  return {
    configText: image.configText,
    layers: image.layers.map((l) => ({
      digest: l.expectDigest,
      size: l.size,
      diffId: l.expectDiffId,
      file: { path, offset: l.offset, length: l.size },
      member: l.member,
    })),
    source: path,
    schema1: false,
  };
}

/** The pull worker's operations: workers/pull.ts serves them, the puller calls them. */
export interface PullOps {
  registry(job: RegistryResolveJob): Promise<ResolvedImage>;
  archive(job: ArchiveResolveJob): ResolvedImage;
}

export const PULL_WORKER = workerOf<PullOps>("pull");
