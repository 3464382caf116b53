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

/** Writes `data` to `path` atomically; on failure (ENOSPC, EROFS, ...) no temporary file is left behind. */
export function writeStateFile(path: string, data: string): void {
  writeFileAtomic(path, data, { sync: false });
}

/** The size of a rewritable state file: one page, which one write() replaces whole. */
export const STATE_PAGE = 4096;

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
  const page = Buffer.alloc(STATE_PAGE, 0x20);
  bytes.copy(page);
  page[STATE_PAGE - 1] = 0x0a;
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
