// The Docker image store under --docker_store_dir: layers by diff_id (shared by every
// image), configs by digest, one record per image reference, and a staging area. Every
// piece of metadata is written atomically (temp file, fsync, rename); a layer appears only
// by renaming a complete staging directory into place.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { digestHex, sha256 } from "./digest.ts";
import { parseImageConfig, type ImageConfig } from "./manifest.ts";
import { LOCK_EX, LOCK_NB, LOCK_SH, flock } from "../ffi/libc.ts";
import { describePrivateDir, ensurePrivateDir } from "../util/private-dir.ts";
import { removeTree } from "../util/tree.ts";
import { newStagingDir, removeDeadStaging } from "../util/staging.ts";
import { syncDir, writeFileAtomic } from "../util/atomic-file.ts";

const LayerRecordSchema = v.looseObject({
  diffId: v.string(),
  /** Compressed digests this layer arrived as (a registry's gzip, an archive's plain tar). */
  digests: v.array(v.string()),
  tarBytes: v.number(),
  entries: v.number(),
  whiteouts: v.array(v.string()),
  opaques: v.array(v.string()),
  createdAt: v.string(),
});
export type LayerRecord = v.InferOutput<typeof LayerRecordSchema>;

const ImageRecordSchema = v.looseObject({
  /** Canonical reference: "docker.io/library/alpine:latest". */
  reference: v.string(),
  manifestDigest: v.optional(v.string()),
  configDigest: v.string(),
  /** diff_ids, base layer first. */
  layers: v.array(v.string()),
  /** Compressed size per layer as fetched (0 when unknown). */
  layerSizes: v.optional(v.array(v.number()), []),
  /** Where it came from: a registry URL or an archive path. */
  source: v.string(),
  pulledAt: v.string(),
  lastUsedAt: v.string(),
});
export type ImageRecord = v.InferOutput<typeof ImageRecordSchema>;

/**
 * Reference counts that keep images and layers from image GC while something is about to
 * use them: a pull holds them from its start, a container from its launch until it is
 * removed. All of it lives on the agent's one JS thread, so taking a lease and GC's
 * decision never interleave.
 */
class Leases {
  private readonly counts = new Map<string, number>();
  hold(keys: Iterable<string>): () => void {
    const held = [...keys];
    for (const k of held) this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of held) {
        const n = (this.counts.get(k) ?? 1) - 1;
        if (n <= 0) this.counts.delete(k);
        else this.counts.set(k, n);
      }
    };
  }
  has(key: string): boolean {
    return this.counts.has(key);
  }
  keys(): string[] {
    return [...this.counts.keys()];
  }
}

export class DockerStore {
  /** Image references ("ref:<canonical>") and layers ("layer:<diff_id>") in use. */
  readonly leases = new Leases();

  constructor(readonly root: string) {}

  get layersDir() {
    return join(this.root, "layers");
  }
  get stagingDir() {
    return join(this.root, "staging");
  }

  /**
   * Pulls in other processes (`ucr pull` beside a running agent) hold the store's lock
   * shared; the agent's GC sweeps only while it holds it exclusively. (The agent's own
   * pulls are covered by leases instead.) Returns the release function.
   */
  lockShared(): () => void {
    const fd = openSync(join(this.root, "lock"), "a", 0o644);
    flock(fd, LOCK_SH);
    return () => closeSync(fd);
  }

  /** Tries the exclusive lock without waiting; undefined while another process pulls. */
  tryLockExclusive(): (() => void) | undefined {
    const fd = openSync(join(this.root, "lock"), "a", 0o644);
    if (!flock(fd, LOCK_EX | LOCK_NB)) {
      closeSync(fd);
      return undefined;
    }
    return () => closeSync(fd);
  }

  /**
   * Creates the layout (the root 0700: unpacked layers hold setuid binaries no other user may
   * reach), tightens a root left looser, and removes staging left by processes that are gone.
   */
  init(): { removedStaging: string[]; note?: string } {
    const root = ensurePrivateDir(this.root, 0o700);
    const note = describePrivateDir("docker_store_dir", this.root, root, 0o700);
    for (const d of ["layers", "configs", "images", "digests", "staging", "gc"]) mkdirSync(join(this.root, d), { recursive: true });
    const removedStaging = removeDeadStaging(this.stagingDir);
    for (const d of ["configs", "images", "digests"]) {
      for (const name of readdirSync(join(this.root, d))) {
        if (name.includes(".tmp-")) rmSync(join(this.root, d, name), { force: true });
      }
    }
    return { removedStaging, ...(note ? { note } : {}) };
  }

  /** A fresh staging directory owned by this process. */
  newStaging(): string {
    return newStagingDir(this.stagingDir);
  }

  layerDir(diffId: string): string {
    return join(this.layersDir, digestHex(diffId));
  }

  /** The unpacked tree of a layer (overlay-form whiteouts). */
  layerRootfs(diffId: string): string {
    return join(this.layerDir(diffId), "rootfs");
  }

  hasLayer(diffId: string): boolean {
    return existsSync(join(this.layerDir(diffId), "layer.json"));
  }

  layer(diffId: string): LayerRecord | undefined {
    try {
      return v.parse(LayerRecordSchema, JSON.parse(readFileSync(join(this.layerDir(diffId), "layer.json"), "utf8")));
    } catch {
      return undefined;
    }
  }

  /** The diff_id a compressed blob unpacked to before, if any (skips its download). */
  diffIdFor(digest: string): string | undefined {
    try {
      const diffId = readFileSync(join(this.root, "digests", digestHex(digest)), "utf8").trim();
      return this.hasLayer(diffId) ? diffId : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Moves a finished staging directory (holding `rootfs/`) into place as the layer.
   * If another pull committed the same layer first, ours is discarded.
   */
  commitLayer(staging: string, record: LayerRecord): void {
    writeFileAtomic(join(staging, "layer.json"), `${JSON.stringify(record)}\n`);
    const target = this.layerDir(record.diffId);
    try {
      renameSync(staging, target);
      syncDir(this.layersDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      removeTree(staging);
    }
    for (const digest of record.digests) {
      if (digest !== record.diffId) writeFileAtomic(join(this.root, "digests", digestHex(digest)), record.diffId);
    }
  }

  writeConfig(text: string): string {
    const digest = sha256(text);
    const path = join(this.root, "configs", `${digestHex(digest)}.json`);
    if (!existsSync(path)) writeFileAtomic(path, text);
    return digest;
  }

  configText(digest: string): string {
    return readFileSync(join(this.root, "configs", `${digestHex(digest)}.json`), "utf8");
  }

  config(digest: string): ImageConfig {
    return parseImageConfig(this.configText(digest), `config ${digest}`);
  }

  private imagePath(reference: string): string {
    return join(this.root, "images", `${digestHex(sha256(reference))}.json`);
  }

  /** The record for a canonical reference, if it and everything it needs are present. */
  image(reference: string): ImageRecord | undefined {
    let record: ImageRecord;
    try {
      record = v.parse(ImageRecordSchema, JSON.parse(readFileSync(this.imagePath(reference), "utf8")));
    } catch {
      return undefined;
    }
    if (record.reference !== reference) return undefined;
    if (!record.layers.every((l) => this.hasLayer(l))) return undefined;
    if (!existsSync(join(this.root, "configs", `${digestHex(record.configDigest)}.json`))) return undefined;
    return record;
  }

  /** Records that an image was just used (for least-recently-used GC). */
  touch(record: ImageRecord): void {
    // A minute is fine enough for least-recently-used, and spares a write (and two fsyncs)
    // on every launch.
    if (Date.now() - Date.parse(record.lastUsedAt) > 60_000) {
      this.putImage({ ...record, lastUsedAt: new Date().toISOString() });
    }
  }

  removeImage(reference: string): void {
    rmSync(this.imagePath(reference), { force: true });
  }

  /** Every layer directory present (diff_ids), complete or not. */
  layerIds(): string[] {
    return readdirSync(this.layersDir)
      .filter((n) => /^[a-f0-9]{64}$/.test(n))
      .map((n) => `sha256:${n}`);
  }

  /** Config digests stored. */
  configDigests(): string[] {
    return readdirSync(join(this.root, "configs"))
      .filter((n) => /^[a-f0-9]{64}\.json$/.test(n))
      .map((n) => `sha256:${n.slice(0, 64)}`);
  }

  removeConfig(digest: string): void {
    rmSync(join(this.root, "configs", `${digestHex(digest)}.json`), { force: true });
  }

  putImage(record: ImageRecord): void {
    writeFileAtomic(this.imagePath(record.reference), `${JSON.stringify(record, null, 1)}\n`);
  }

  images(): ImageRecord[] {
    const out: ImageRecord[] = [];
    for (const name of readdirSync(join(this.root, "images"))) {
      if (!name.endsWith(".json")) continue;
      try {
        out.push(v.parse(ImageRecordSchema, JSON.parse(readFileSync(join(this.root, "images", name), "utf8"))));
      } catch {
        // an unreadable record is skipped here; GC reports and removes it
      }
    }
    return out.sort((a, b) => a.reference.localeCompare(b.reference));
  }
}
