// Applying stored layers onto one tree, as overlayfs would show them (the copy backend's
// work): per layer, its opaque dirs are emptied and its whiteouts removed, everything of the
// tree that the layer replaces is removed (a file over a dir, a dir over a symlink), and then
// the layer is copied over with `cp -a`, which meets only directories to merge into. Every
// path in the tree is walked without following a symlink: what a lower layer put there (a
// symlink to /etc, say) can never redirect an upper layer's deletes or writes to the host.
import { AT_FDCWD, ENOENT, O_DIRECTORY, O_NOFOLLOW, O_RDONLY, S_IFDIR, S_IFMT, close, fail, openat, statxat } from "../ffi/fs-at.ts";
import { inode, listAt, openDir, removeAt } from "../util/tree.ts";
import { decodeRecordPath } from "../images/layer/whiteout.ts";
import { errorOfKind } from "../errors.ts";

class ApplyError extends errorOfKind("invalid") {}

export interface LayerWhiteouts {
  /** Paths as the layer record keeps them (see encodeRecordPath). */
  whiteouts: string[];
  opaques: string[];
}

function isDir(dirfd: number, name: string): boolean | undefined {
  const st = statxat(dirfd, name);
  if (st === -ENOENT) return undefined;
  if (typeof st === "number") throw fail("statx", st, name);
  return (st.mode & S_IFMT) === S_IFDIR;
}

/**
 * The directory holding `path` (bytes, "/"-separated) in the tree at `rootFd`, reached
 * without following any symlink; undefined if some component is missing or not a real
 * directory (then there is nothing at `path` to act on). The caller closes the descriptor.
 */
function parentNoFollow(rootFd: number, parts: string[]): number | undefined {
  let cur = openat(rootFd, ".", O_RDONLY | O_DIRECTORY);
  if (cur < 0) throw fail("openat", cur, ".");
  for (const part of parts.slice(0, -1)) {
    if (part === "" || part === ".") continue;
    const next = openat(cur, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    close(cur);
    if (next < 0) return undefined;
    cur = next;
  }
  return cur;
}

function splitRecord(path: string): string[] | undefined {
  const parts = decodeRecordPath(path)
    .toString("latin1")
    .split("/")
    .filter((p) => p !== "" && p !== ".");
  return parts.includes("..") ? undefined : parts;
}

/** Removes `path` from the tree (no symlink followed on the way). */
function removePath(rootFd: number, path: string): void {
  const parts = splitRecord(path);
  if (!parts || parts.length === 0) return;
  const parent = parentNoFollow(rootFd, parts);
  if (parent === undefined) return;
  try {
    removeAt(parent, parts[parts.length - 1]!);
  } finally {
    close(parent);
  }
}

/** Empties directory `path` of the tree, if it is a real directory there. */
function emptyDir(rootFd: number, path: string): void {
  const parts = splitRecord(path);
  if (!parts) return;
  const parent = parentNoFollow(rootFd, [...parts, "."]);
  if (parent === undefined) return;
  try {
    for (const name of listAt(parent)) removeAt(parent, name);
  } finally {
    close(parent);
  }
}

interface Frame {
  names: string[];
  next: number;
  layerIno: bigint;
  destIno: bigint;
  name: string;
}

/**
 * Removes from the tree everything the layer replaces: each name both have, unless both are
 * real directories (those merge, and are walked in turn). Two descriptors per tree at most.
 */
function removeReplaced(layerPath: string, destPath: string): void {
  let layer = openDir(AT_FDCWD, layerPath, layerPath);
  let dest = openDir(AT_FDCWD, destPath, destPath);
  const stack: Frame[] = [];
  let frame: Frame = { names: listAt(layer), next: 0, layerIno: inode(layer, layerPath), destIno: inode(dest, destPath), name: "" };
  try {
    for (;;) {
      let descended = false;
      while (frame.next < frame.names.length) {
        const name = frame.names[frame.next++]!;
        const there = isDir(dest, name);
        if (there === undefined) continue;
        if (there && isDir(layer, name)) {
          const l = openDir(layer, name, layerPath);
          const d = openat(dest, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
          if (d < 0) {
            close(l);
            throw fail("openat", d, destPath);
          }
          close(layer);
          close(dest);
          layer = l;
          dest = d;
          stack.push(frame);
          frame = { names: listAt(layer), next: 0, layerIno: inode(layer, layerPath), destIno: inode(dest, destPath), name };
          descended = true;
          break;
        }
        removeAt(dest, name);
      }
      if (descended) continue;
      const parent = stack.pop();
      if (!parent) break;
      const lu = openDir(layer, "..", layerPath);
      const du = openDir(dest, "..", destPath);
      const moved = inode(lu, layerPath) !== parent.layerIno || inode(du, destPath) !== parent.destIno;
      close(layer);
      close(dest);
      layer = lu;
      dest = du;
      if (moved) throw new ApplyError(`applying ${layerPath} onto ${destPath}: a directory moved while it was walked`);
      frame = parent;
    }
  } finally {
    close(layer);
    close(dest);
  }
}

/**
 * Copies `layers` (stored layer trees, base first) onto `dest` in order, whiteouts and
 * opaque directories applied from each layer's record.
 */
export function applyLayers(layers: string[], dest: string, records: LayerWhiteouts[]): void {
  layers.forEach((layer, i) => {
    const rec = records[i] ?? { whiteouts: [], opaques: [] };
    const root = openDir(AT_FDCWD, dest, dest);
    try {
      for (const o of rec.opaques) emptyDir(root, o);
      for (const w of rec.whiteouts) removePath(root, w);
    } finally {
      close(root);
    }
    removeReplaced(layer, dest);
    // GNU cp -a keeps owners, modes, times, hard links, xattrs and devices (Mesos uses it too).
    const cp = Bun.spawnSync(["cp", "-a", "--", `${layer}/.`, `${dest}/`], { stderr: "pipe" });
    if (cp.exitCode !== 0) throw new ApplyError(`copying layer ${layer}: ${cp.stderr.toString().trim()}`);
    // The layer's own whiteout devices came along; they only mark deletions.
    const after = openDir(AT_FDCWD, dest, dest);
    try {
      for (const w of rec.whiteouts) removePath(after, w);
    } finally {
      close(after);
    }
  });
}
