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
import { writeFileAtomic } from "../util/atomic-file.ts";

/** Writes `data` to `path` atomically; on failure (ENOSPC, EROFS, ...) no temporary file is left behind. */
export function writeStateFile(path: string, data: string): void {
  writeFileAtomic(path, data, { sync: false });
}
