// Files replaced atomically: readers (and a writer killed at any instruction) see the old or
// the new content, never a part. Used by the image store (durable: fsync'd) and for runtime state.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { EINVAL, ENOENT, ENOSYS, exchangeOrErrno, sysError } from "../ffi/libc.ts";

/**
 * Writes `data` to a temporary file beside `path` and renames it over `path`. `sync: false`
 * skips the fsyncs of file and directory: still atomic for readers and for a killed writer,
 * just not durable across a crash of the host. On failure (ENOSPC, EROFS, ...) no temporary
 * file is left behind and `path` is as it was.
 *
 * Without sync, an existing `path` is replaced by exchanging the two names and removing the
 * temporary name (now the old content) instead of renaming over it: ext4 (auto_da_alloc)
 * starts writing a file's data out when it is renamed over another, which blocked the agent's
 * thread for up to 0.5 ms per checkpoint here; an exchange does not. A writer killed between
 * the exchange and the removal leaves the old content under the temporary name.
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
    if (sync) renameSync(tmp, path);
    else replace(tmp, path);
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

/** Puts `tmp` in place of `path`: by exchange and removal if `path` exists, else by rename. */
function replace(tmp: string, path: string): void {
  const rc = exchangeOrErrno(tmp, path);
  if (rc === 0) {
    rmSync(tmp, { force: true });
    return;
  }
  if (rc === -ENOENT || rc === -EINVAL || rc === -ENOSYS) {
    renameSync(tmp, path);
    return;
  }
  throw sysError("renameat2", rc, `${tmp} <-> ${path}`);
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
