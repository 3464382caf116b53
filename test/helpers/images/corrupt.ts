// Corrupt images, at the OCI-layout level: digests, sizes, media types, platforms.
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { readFileSync, writeFileSync } from "node:fs";
import type { Descriptor, LayerInfo } from "./basics.ts";
import { blobPath, findManifest, loadImage, readBlob, sha256, tagManifest, writeBlob } from "./layout.ts";

export type Corruption =
  /** The top layer's blob no longer hashes to the digest it is stored (and recorded) under. */
  | "layer-digest"
  /** The manifest records a wrong size for the top layer. */
  | "layer-size"
  /** The top layer is cut in half; digest and size recorded for the cut bytes (so only decompression fails). */
  | "truncated-gzip"
  /** The config's last diff_id does not match the uncompressed top layer. */
  | "diff-id"
  /** The manifest blob is not JSON (index.json points at it with the right digest). */
  | "manifest-not-json"
  /** The manifest and its index.json descriptor carry a media type nobody knows. */
  | "unknown-media-type";

export const UNKNOWN_MEDIA_TYPE = "application/vnd.example.unknown.v1+json";

function rewriteManifest(layoutDir: string, tag: string, edit: (m: Record<string, unknown>) => void): Descriptor {
  const desc = findManifest(layoutDir, tag);
  const m = JSON.parse(readBlob(layoutDir, desc.digest).toString("utf8")) as Record<string, unknown>;
  edit(m);
  const blob = writeBlob(layoutDir, JSON.stringify(m));
  const next: Descriptor = { ...desc, ...blob };
  tagManifest(layoutDir, tag, next);
  return next;
}

/** Damage the image tagged `tag` in place; returns its (possibly new) manifest descriptor. */
export function corruptImage(layoutDir: string, kind: Corruption, tag = "latest"): Descriptor {
  const img = loadImage(layoutDir, tag);
  const top = img.layers[img.layers.length - 1];
  if (!top) throw new Error("image has no layers");
  const topIndex = img.layers.length - 1;
  switch (kind) {
    case "layer-digest": {
      const p = blobPath(layoutDir, top.digest);
      const b = readFileSync(p);
      const i = Math.floor(b.byteLength / 2);
      b[i] = (b[i] ?? 0) ^ 0xff;
      writeFileSync(p, b);
      return img.manifest;
    }
    case "layer-size":
      return rewriteManifest(layoutDir, tag, (m) => {
        const layers = m.layers as Descriptor[];
        const l = layers[topIndex];
        if (l) l.size += 1;
      });
    case "truncated-gzip": {
      const b = readBlob(layoutDir, top.digest);
      const cut = writeBlob(layoutDir, b.subarray(0, Math.floor(b.byteLength / 2)));
      return rewriteManifest(layoutDir, tag, (m) => {
        const layers = m.layers as Descriptor[];
        layers[topIndex] = { ...top, ...cut, mediaType: top.mediaType };
        delete (layers[topIndex] as Partial<LayerInfo>).diffId;
        delete (layers[topIndex] as Partial<LayerInfo>).compression;
      });
    }
    case "diff-id": {
      const cfg = { ...img.configJson, rootfs: { ...img.configJson.rootfs } };
      cfg.rootfs.diff_ids = [...cfg.rootfs.diff_ids];
      cfg.rootfs.diff_ids[topIndex] = sha256("not the layer");
      const blob = writeBlob(layoutDir, JSON.stringify(cfg));
      return rewriteManifest(layoutDir, tag, (m) => {
        m.config = { ...(m.config as Descriptor), ...blob };
      });
    }
    case "manifest-not-json": {
      const blob = writeBlob(layoutDir, "this is not a manifest {");
      const next: Descriptor = { ...img.manifest, ...blob };
      tagManifest(layoutDir, tag, next);
      return next;
    }
    case "unknown-media-type": {
      const next = rewriteManifest(layoutDir, tag, (m) => {
        m.mediaType = UNKNOWN_MEDIA_TYPE;
      });
      const withType: Descriptor = { ...next, mediaType: UNKNOWN_MEDIA_TYPE };
      tagManifest(layoutDir, tag, withType);
      return withType;
    }
  }
}
