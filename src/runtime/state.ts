// Files of a container's runtime state (`<runtime_dir>/containers/<id>/`): the launch spec,
// the checkpoint, the pid and the wait status.
//
// They are replaced atomically (a new file renamed over the old), so an agent, launcher or
// init stage killed at any moment leaves either the old or the new content, never a torn
// one. They are not fsync'd: that would only protect them from a crash of the whole host,
// and such a crash also ends every process they describe. Mesos keeps this state in
// /var/run (tmpfs, gone at boot) for that reason; where the runtime dir is on a disk, each
// checkpoint records the boot ID, so a restarted agent knows those containers died with the
// host, and a file the crash left empty is an unreadable checkpoint, reported and cleaned up.
// On ext4, fsync of file and directory cost ~0.5 ms per file here, four files per launch.
// (Written here, not with the image store's writeFileAtomic: the init stage writes these, and
// must not load image code and valibot with it.)
import { closeSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/** Writes `data` to `path` atomically; on failure (ENOSPC, EROFS, ...) no temporary file is left behind. */
export function writeStateFile(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w", 0o644);
    const buf = Buffer.from(data);
    let off = 0;
    while (off < buf.byteLength) off += writeSync(fd, buf, off);
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
}
