// What a directory's filesystem says of it, read with the system's own tools (not ucr's code):
// ext4's inodes per block group, and whether a directory carries ext4's "top directory" flag.
import { readFileSync, statfsSync } from "node:fs";
import { basename } from "node:path";

const EXT4_SUPER_MAGIC = 0xef53;

/**
 * For a path on ext4 whose /proc/fs/ext4/<dev>/mb_groups is readable (root): its inodes per
 * block group (statfs's f_files is the superblock's inode count, mb_groups has a line per group).
 * Undefined elsewhere.
 */
export function ext4Geometry(path: string): { inodesPerGroup: number } | undefined {
  const fs = statfsSync(path);
  if (fs.type !== EXT4_SUPER_MAGIC) return undefined;
  const source = Bun.spawnSync(["findmnt", "-no", "SOURCE", "-T", path]).stdout.toString().trim();
  if (!source.startsWith("/dev/")) return undefined;
  let groups: number;
  try {
    groups = readFileSync(`/proc/fs/ext4/${basename(source)}/mb_groups`, "utf8")
      .split("\n")
      .filter((l) => /^#\d+\s*:/.test(l)).length;
  } catch {
    return undefined;
  }
  if (groups === 0 || fs.files % groups !== 0) return undefined;
  return { inodesPerGroup: fs.files / groups };
}

/** Whether `lsattr -d` shows the T (top of directory hierarchies) flag on `path`. */
export function hasTopdirFlag(path: string): boolean {
  const r = Bun.spawnSync(["lsattr", "-d", path]);
  if (r.exitCode !== 0) throw new Error(`lsattr -d ${path}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString().split(/\s+/)[0]!.includes("T");
}
