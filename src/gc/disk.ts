// Tree measurement and deletion for image GC and accounting. Run in the disk worker
// (src/workers/gc.ts): both walk whole trees and must stay off the server thread.
import { basename, dirname, relative, resolve, sep } from "node:path";
import { O_DIRECTORY, O_PATH, close } from "../ffi/libc.ts";
import { PathError, openDir, openInRoot } from "../runtime/inroot.ts";
import { removeAt, walkTree } from "../util/tree.ts";
import type { LayerWhiteouts } from "../provisioner/copy.ts";
import type { SpareKind } from "../provisioner/spares.ts";
import type { Backend } from "../config/flags.ts";
import { workerOf } from "../threads/workers.ts";

export interface DiskUsage {
  /** Bytes allocated on disk (st_blocks * 512), hard-linked files counted once. */
  bytes: number;
  /** Sum of file sizes (what `du --apparent-size` shows). */
  apparentBytes: number;
  entries: number;
}

/** The disk worker's operations: workers/gc.ts serves them; the agent and image GC call them. */
export interface DiskOps {
  du(args: { path: string }): DiskUsage;
  /** Deletes `path` if it lies strictly inside `within`. */
  remove(args: { path: string; within: string }): { removed: boolean };
  /** The copy backend's rootfs: `layers` (base first) applied onto `dest`. */
  copyLayers(args: { layers: string[]; dest: string; records: LayerWhiteouts[] }): { ok: true };
  /** Spare container directories made ahead of launches (provisioner/spares.ts). */
  makeSpares(args: { dir: string; kind: SpareKind; backend: Backend; count: number }): { ids: string[] };
  /** Takes the kernel's cgroup threadgroup lock once (see workers/gc.ts). */
  warmCgroups(args: { procs: string; pid: number }): { ok: boolean; error?: string };
}

export const DISK_WORKER = workerOf<DiskOps>("disk");

export function diskUsage(root: string): DiskUsage {
  const seen = new Set<string>();
  const usage: DiskUsage = { bytes: 0, apparentBytes: 0, entries: 0 };
  // Through directory handles (util/tree.ts): a layer may nest deeper than PATH_MAX allows.
  walkTree(resolve(root), (st) => {
    if (st.nlink > 1 && (st.mode & 0o170000) !== 0o040000) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    usage.entries++;
    usage.bytes += st.blocks * 512;
    usage.apparentBytes += st.size;
  });
  return usage;
}

/** Deletes `path` (recursively, never following symlinks) if it lies strictly inside `within`. */
export function removeTree(path: string, within: string): { removed: boolean } {
  const target = resolve(path);
  const root = resolve(within);
  const rel = relative(root, target);
  if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || resolve(root, rel) !== target) {
    throw new Error(`refusing to remove ${target}: it is not inside ${root}`);
  }
  // The directories between `within` and the target may have been written by a workload (a
  // nested container's sandbox is in its parent's): one that is a link does not lead to
  // the target, and nothing is removed through it.
  const rootFd = openDir(root);
  let parent;
  try {
    parent = openInRoot(rootFd, dirname(rel), { noLinks: true, flags: O_PATH | O_DIRECTORY }).fd;
  } catch (err) {
    if (err instanceof PathError) return { removed: false };
    throw err;
  } finally {
    close(rootFd);
  }
  try {
    // Not rmSync: on a tree 10,000 deep it takes minutes; this is linear (util/tree.ts).
    const name = basename(rel);
    return { removed: removeAt(parent, Buffer.from(name, "utf8").toString("latin1"), target) };
  } finally {
    close(parent);
  }
}
