// Files replaced atomically: readers (and a writer killed at any instruction) see the old or
// the new content, never a part. Used by the image store (durable: fsync'd) and for runtime state.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Writes `data` to a temporary file beside `path` and renames it over `path`. `sync: false`
 * skips the fsyncs of file and directory: still atomic for readers and for a killed writer,
 * just not durable across a crash of the host. On failure (ENOSPC, EROFS, ...) no temporary
 * file is left behind and `path` is as it was.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, { sync = true } = {}): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w", 0o644);
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.byteLength) off += writeSync(fd, buf, off);
    if (sync) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    try {
      if (fd !== undefined) closeSync(fd);
      rmSync(tmp, { force: true });
    } catch {
      // the original error is the one worth reporting
    }
    throw err;
  }
  if (sync) syncDir(dirname(path));
}

/** fsync of a directory: a rename or a new name in it survives a crash of the host. */
export function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
