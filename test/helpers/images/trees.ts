// Reference extraction (umoci) and tree comparison: what a rootfs holds, entry by entry.
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, type Stats } from "node:fs";
import { join } from "node:path";
import { isRoot, listXattrs, runAsync } from "./basics.ts";
import { sha256 } from "./layout.ts";
import { withoutZstd } from "./archives.ts";

/**
 * umoci's extraction of the image, for comparing ucr's against. umoci 0.4.7 cannot read
 * zstd layers, so those are recompressed to gzip in a scratch copy of the layout first
 * (diff_ids are of the uncompressed tar, so the tree is the same). Returns the rootfs path.
 */
export async function umociUnpack(layoutDir: string, tag: string, outDir: string): Promise<string> {
  const src = withoutZstd(layoutDir, tag);
  try {
    rmSync(outDir, { recursive: true, force: true });
    await runAsync(["umoci", "unpack", ...(isRoot ? [] : ["--rootless"]), "--image", `${src.dir}:${tag}`, outDir]);
  } finally {
    src.cleanup();
  }
  return join(outDir, "rootfs");
}

type EntryType = "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket";

export interface TreeEntry {
  /** "/" for the root, "/bin/sh" below it. */
  path: string;
  type: EntryType;
  /** Permission bits with setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  linkTarget?: string;
  rdev?: { major: number; minor: number };
  xattrs?: Record<string, string>;
  /** For a file with more than one link: the first path (sorted) of its hardlink group. */
  hardlinkGroup?: string;
  mtime?: number;
}

function typeOf(st: Stats): EntryType {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  return "socket";
}

/**
 * Every entry under rootDir, sorted by path, with what an extraction must preserve. Two
 * trees extracted from the same image should give deep-equal lists.
 */
export function treeManifest(rootDir: string, opts: { mtime?: boolean; ignoreXattrs?: RegExp } = {}): TreeEntry[] {
  const entries: TreeEntry[] = [];
  const inodes = new Map<string, string>();
  const walk = (rel: string): void => {
    const abs = rel === "/" ? rootDir : join(rootDir, rel);
    const st = lstatSync(abs);
    const type = typeOf(st);
    const e: TreeEntry = { path: rel, type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (type === "file") {
      e.size = st.size;
      e.sha256 = sha256(readFileSync(abs));
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const first = inodes.get(key);
        if (first === undefined) inodes.set(key, rel);
        e.hardlinkGroup = first ?? rel;
      }
    }
    if (type === "symlink") e.linkTarget = readlinkSync(abs);
    if (type === "char" || type === "block") {
      const r = st.rdev;
      // glibc's major()/minor(), in float arithmetic since dev_t is 64 bits.
      e.rdev = {
        major: (Math.floor(r / 2 ** 8) & 0xfff) | (Math.floor(r / 2 ** 32) & ~0xfff),
        minor: (r & 0xff) | (Math.floor(r / 2 ** 12) & ~0xff),
      };
    }
    const x = listXattrs(abs);
    for (const k of Object.keys(x)) if (opts.ignoreXattrs?.test(k)) delete x[k];
    if (Object.keys(x).length > 0) e.xattrs = x;
    if (opts.mtime) e.mtime = Math.floor(st.mtimeMs / 1000);
    entries.push(e);
    if (type === "dir") {
      for (const name of readdirSync(abs).sort()) walk(rel === "/" ? `/${name}` : `${rel}/${name}`);
    }
  };
  walk("/");
  // Groups are named by their first path in walk order, the same for any two trees.
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
