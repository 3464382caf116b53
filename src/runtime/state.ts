// Files of a container's runtime state (`<runtime_dir>/containers/<id>/`): the launch spec,
// the checkpoint, the pid and the wait status.
//
// They are replaced atomically (a new file put in place of the old; a checkpoint, once it
// exists, rewritten in place as one page by one write()), so an agent, launcher or init
// stage killed at any moment leaves either the old or the new content, never a torn one.
// They are not fsync'd: that would only protect them from a crash of the whole host, and such
// a crash also ends every process they describe. Mesos keeps this state in
// /var/run (tmpfs, gone at boot) for that reason; where the runtime dir is on a disk, each
// checkpoint records the boot ID, so a restarted agent knows those containers died with the
// host, and a file the crash left empty is an unreadable checkpoint, reported and cleaned up.
// On ext4, fsync of file and directory cost ~0.5 ms per file here, four files per launch.
import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";
import { writeFileAtomic } from "../util/atomic-file.ts";

/** The size of a rewritable state file: one page, which one write() replaces whole. */
export const STATE_PAGE = 4096;

/**
 * Writes `data` to `path` atomically; on failure (ENOSPC, EROFS, ...) no temporary file is left
 * behind. An existing empty file (made ahead by a spare runtime dir, provisioner/spares.ts) is
 * filled in place when `data` fits one page: one write() a killed writer does not leave
 * half-done, readers see nothing or all of it, and no new inode is made.
 */
export function writeStateFile(path: string, data: string): void {
  const bytes = Buffer.from(data);
  if (bytes.length <= STATE_PAGE && fillEmpty(path, bytes)) return;
  writeFileAtomic(path, bytes, { sync: false });
}

/** Writes `bytes` into `path` if it is an empty regular file (not a link); false if it is not. */
function fillEmpty(path: string, bytes: Buffer): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch {
    return false;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size !== 0) return false;
    const n = writeSync(fd, bytes, 0, bytes.length, 0);
    if (n !== bytes.length) throw new Error(`${path}: wrote ${n} of ${bytes.length} bytes`);
    return true;
  } finally {
    closeSync(fd);
  }
}

/** A checkpoint page made ahead (a spare runtime dir): blanks and a newline, no checkpoint yet. */
export function blankPage(): Buffer {
  const page = Buffer.alloc(STATE_PAGE, 0x20);
  page[STATE_PAGE - 1] = 0x0a;
  return page;
}

/** Whether `text` is a blank page as blankPage() makes it (a checkpoint not yet written). */
export function isBlankPage(text: string): boolean {
  return text.length === STATE_PAGE && text.trim() === "";
}

/**
 * Writes `data` (JSON, or any text that ignores trailing blanks) to `path` as one page padded
 * with spaces, overwriting an existing page-sized file in place instead of making a new one:
 * one write() into the file's one page cache page, which a killed writer does not leave
 * half-done (the kernel checks for a fatal signal before copying a page, not during). On
 * ext4 a new file and the exchange of two names cost ~0.1-0.5 ms each here, and the agent
 * writes a container's checkpoint four times per launch on the thread that serves every
 * launch. The first write, text of a page or more, and a file of another size (from an older
 * ucr) go by writeStateFile.
 */
export function rewriteStateFile(path: string, data: string): void {
  const bytes = Buffer.from(data);
  if (bytes.length >= STATE_PAGE) {
    writeStateFile(path, data);
    return;
  }
  const page = blankPage();
  bytes.copy(page);
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  try {
    if (fd !== undefined && fstatSync(fd).size === STATE_PAGE) {
      const n = writeSync(fd, page, 0, STATE_PAGE, 0);
      if (n !== STATE_PAGE) throw new Error(`${path}: wrote ${n} of ${STATE_PAGE} bytes`);
      return;
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  writeFileAtomic(path, page, { sync: false });
}
