// Image garbage collection for the Docker store: mark what containers (running or exited
// but not removed, nested ones and image volumes included), exclusions and leases (pulls
// and launches in flight) need; sweep image records first, then layers and configs no
// remaining image uses. Marking happens on the agent's thread (it is set arithmetic);
// trees are measured and deleted in the disk worker.
import { readdirSync, renameSync, statfsSync } from "node:fs";
import { join } from "node:path";
import type { Image } from "../mesos/messages.ts";
import { canonical, parseReference } from "../images/reference.ts";
import type { DockerStore, ImageRecord } from "../images/store.ts";
import { log } from "../log.ts";
import type { WorkerClient } from "../threads/rpc.ts";
import type { DiskOps } from "./disk.ts";
import { invalid, precondition } from "../errors.ts";

/**
 * What a live container needs kept: its image references, and the layer ids its rootfs
 * and image volumes are made of (kept whatever record a tag names now); `accountable:
 * false` if we cannot tell (old checkpoint).
 */
export interface ImageUser {
  key: string;
  images: string[];
  layers: string[];
  accountable: boolean;
}

export interface GcResult {
  removedImages: string[];
  removedLayers: number;
  removedConfigs: number;
  bytesFreed: number;
  ms: number;
  /** Of `ms`, the time the agent's own thread was busy (the rest is waiting on the disk worker). */
  threadMs: number;
}

export interface GcMetrics {
  runs: number;
  bytesFreed: number;
  lastDurationMs: number;
  lastError?: string;
}

export class ImageCollector {
  readonly metrics: GcMetrics = { runs: 0, bytesFreed: 0, lastDurationMs: 0 };
  private running: Promise<GcResult> | undefined;
  private pause: () => void = () => {};
  private resume: () => void = () => {};

  constructor(
    private readonly store: DockerStore,
    private readonly gc: WorkerClient<DiskOps>,
    private readonly users: () => ImageUser[],
  ) {}

  /** Normalised references of DOCKER exclusions; APPC ones do not concern this store. */
  static exclusions(images: readonly Image[]): Set<string> {
    const out = new Set<string>();
    for (const img of images) {
      if (img.type !== "DOCKER" || !img.docker) continue;
      try {
        out.add(canonical(parseReference(img.docker.name)));
      } catch (err) {
        throw invalid(`Failed to prune images: ${(err as Error).message}`, err);
      }
    }
    return out;
  }

  /**
   * Removes what a prior run left in gc/ (an agent killed mid-sweep). Queued like a prune,
   * so a prune never races it over gc/; done by `rm` processes rather than the disk worker,
   * whose queue launches, removals and GET_CONTAINERS' disk accounting share: a tree of
   * many gigabytes must hold none of them up.
   */
  cleanLeftovers(): Promise<number> {
    const run = (this.running ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .then(async () => {
        const dir = join(this.store.root, "gc");
        const failed: string[] = [];
        let removed = 0;
        for (const name of readdirSync(dir)) {
          // Names from readdir: one component, inside gc/ by construction.
          const rm = Bun.spawn(["rm", "-rf", "--one-file-system", "--", join(dir, name)], { stdout: "ignore", stderr: "pipe" });
          const err = await new Response(rm.stderr).text();
          if ((await rm.exited) === 0) removed++;
          else failed.push(`${name}: ${err.trim().split("\n")[0] ?? `rm exited ${rm.exitCode}`}`);
        }
        if (failed.length > 0) throw new Error(`removed ${removed}, but not ${failed.join("; ")}`);
        return removed;
      });
    this.running = run.then(
      () => EMPTY_RESULT,
      () => EMPTY_RESULT,
    );
    return run;
  }

  /**
   * Everything unused goes (PRUNE_IMAGES), or, with `enough`, least recently used images
   * first until `enough()` says the disk has room again (automatic GC).
   */
  prune(excluded: Set<string>, enough?: () => boolean): Promise<GcResult> {
    // One at a time: a second request waits for the first and then runs on what is left.
    const run = (this.running ?? Promise.resolve(undefined as unknown as GcResult))
      .catch(() => undefined)
      .then(() => this.sweep(excluded, enough));
    this.running = run;
    return run;
  }

  private retained(excluded: Set<string>): { refs: Set<string>; layers: Set<string> } {
    const refs = new Set(excluded);
    const layers = new Set<string>();
    for (const user of this.users()) {
      if (!user.accountable) {
        throw precondition(
          `Failed to prune images: container ${user.key} was checkpointed without the images it uses (an older agent); remove it before pruning`,
        );
      }
      for (const ref of user.images) refs.add(ref);
      for (const layer of user.layers) layers.add(layer);
    }
    for (const key of this.store.leases.keys()) {
      if (key.startsWith("ref:")) refs.add(key.slice(4));
      if (key.startsWith("layer:")) layers.add(key.slice(6));
    }
    return { refs, layers };
  }

  private async sweep(excluded: Set<string>, enough?: () => boolean): Promise<GcResult> {
    // A `ucr pull` in another process holds the store lock shared: wait for it, politely.
    let unlock = this.store.tryLockExclusive();
    for (let waited = 0; !unlock; waited += 50) {
      if (waited > 600_000) throw precondition("Failed to prune images: another process has held the image store for 10 minutes");
      await Bun.sleep(50);
      unlock = this.store.tryLockExclusive();
    }
    try {
      return await this.sweepLocked(excluded, enough);
    } finally {
      unlock();
    }
  }

  private async sweepLocked(excluded: Set<string>, enough?: () => boolean): Promise<GcResult> {
    const started = performance.now();
    const result: GcResult = { removedImages: [], removedLayers: 0, removedConfigs: 0, bytesFreed: 0, ms: 0, threadMs: 0 };
    let busySince = performance.now();
    const pause = () => (result.threadMs += performance.now() - busySince);
    const resume = () => (busySince = performance.now());
    this.pause = pause;
    this.resume = resume;
    try {
      const { refs, layers: leased } = this.retained(excluded);
      const records = this.store.images();
      const victims = records.filter((r) => !refs.has(r.reference)).sort((a, b) => Date.parse(a.lastUsedAt) - Date.parse(b.lastUsedAt));
      let kept: ImageRecord[] = records.filter((r) => refs.has(r.reference));
      if (!enough) {
        for (const v of victims) this.store.removeImage(v.reference);
        result.removedImages.push(...victims.map((v) => v.reference));
        await this.sweepLayers(kept, leased, result);
      } else {
        // Least recently used first, and only as much as needed.
        const remaining = [...victims];
        while (remaining.length > 0 && !enough()) {
          const v = remaining.shift()!;
          this.store.removeImage(v.reference);
          result.removedImages.push(v.reference);
          await this.sweepLayers([...kept, ...remaining], leased, result);
        }
        kept = [...kept, ...remaining];
      }
      pause();
      result.ms = performance.now() - started;
      this.metrics.runs++;
      this.metrics.bytesFreed += result.bytesFreed;
      this.metrics.lastDurationMs = result.ms;
      delete this.metrics.lastError;
      log.info(
        `image gc: removed ${result.removedImages.length} image(s)${result.removedImages.length ? ` (${result.removedImages.join(", ")})` : ""}, ${result.removedLayers} layer(s), ${result.removedConfigs} config(s); freed ${result.bytesFreed} bytes in ${result.ms.toFixed(0)}ms (${result.threadMs.toFixed(1)}ms on the agent's thread)`,
      );
      return result;
    } catch (err) {
      this.metrics.lastError = (err as Error).message;
      throw err;
    }
  }

  /**
   * Layers and configs no kept record uses (and no lease or container holds): renamed into
   * gc/, then deleted.
   */
  private async sweepLayers(kept: ImageRecord[], leased: Set<string>, result: GcResult): Promise<void> {
    const usedLayers = new Set(leased);
    const usedConfigs = new Set<string>();
    for (const r of kept) {
      for (const l of r.layers) usedLayers.add(l);
      usedConfigs.add(r.configDigest);
    }
    // Leases may have been taken, and containers launched, since marking: check again.
    for (const key of this.store.leases.keys()) if (key.startsWith("layer:")) usedLayers.add(key.slice(6));
    for (const user of this.users()) for (const layer of user.layers) usedLayers.add(layer);
    const gcDir = join(this.store.root, "gc");
    const doomed: string[] = [];
    for (const layer of this.store.layerIds()) {
      if (usedLayers.has(layer)) continue;
      // A rename is atomic: the layer is gone from the store before any byte is deleted.
      const target = join(gcDir, `${layer.slice("sha256:".length)}.${Date.now()}`);
      renameSync(this.store.layerDir(layer), target);
      doomed.push(target);
      result.removedLayers++;
    }
    for (const digest of this.store.configDigests()) {
      if (usedConfigs.has(digest)) continue;
      this.store.removeConfig(digest);
      result.removedConfigs++;
    }
    this.pause();
    const freed = await Promise.all(
      doomed.map(async (path) => {
        const { bytes } = await this.gc.call("du", { path });
        await this.gc.call("remove", { path, within: gcDir });
        return bytes;
      }),
    );
    this.resume();
    result.bytesFreed += freed.reduce((a, b) => a + b, 0);
  }
}

const EMPTY_RESULT: GcResult = { removedImages: [], removedLayers: 0, removedConfigs: 0, bytesFreed: 0, ms: 0, threadMs: 0 };

/** Fraction of the filesystem under `dir` in use, as Mesos computes it. */
export function diskUsage(dir: string): number {
  const st = statfsSync(dir);
  return st.blocks === 0 ? 0 : (st.blocks - st.bfree) / st.blocks;
}
