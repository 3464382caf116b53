// Regular files of a layer, written in batches by write workers (src/workers/write.ts) so
// file creation overlaps across threads. The extract worker decides what goes where and in
// which order; a job names its parent by a directory descriptor (process-wide, so a write
// thread can use it) that the extract worker keeps open until the batch is done.
import { closeSync, writeSync } from "node:fs";
import {
  EEXIST,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_WRONLY,
  S_IFDIR,
  S_IFMT,
  fail,
  fchmod,
  fchown,
  fsetxattr,
  openat,
  statxat,
  unlinkat,
  futimens,
} from "../../ffi/fs-at.ts";
import { removeAt } from "../../util/tree.ts";
import { startWorker } from "../../threads/pool.ts";
import type { WorkerClient } from "../../threads/rpc.ts";
import { workerOf } from "../../threads/workers.ts";

export interface FileJob {
  /** The parent directory's descriptor (see the module comment). */
  dirfd: number;
  /** The file's name in it, as bytes (latin1 string). */
  name: string;
  /** The entry as the layer named it, for messages. */
  shown: string;
  data: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  mtime: [number, number];
  chown: boolean;
  chmod: boolean;
  /** Names (latin1 strings) and values. */
  xattrs: Array<[string, Uint8Array]>;
}

export interface WriteBatch {
  files: FileJob[];
}

const FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

/** Creates the file for `job`, replacing what is there (a later entry of a name wins, as with tar -x). */
export function createFile(job: FileJob): number {
  let fd = openat(job.dirfd, job.name, FLAGS, job.mode & 0o777);
  if (fd === -EEXIST) {
    const st = statxat(job.dirfd, job.name);
    if (typeof st !== "number" && (st.mode & S_IFMT) === S_IFDIR) removeAt(job.dirfd, job.name, job.shown);
    else {
      const r = unlinkat(job.dirfd, job.name);
      if (r < 0) throw fail("unlinkat", r, job.shown);
    }
    fd = openat(job.dirfd, job.name, FLAGS, job.mode & 0o777);
  }
  if (fd < 0) throw fail("openat", fd, job.shown);
  return fd;
}

/** Owner, mode, xattrs and mtime of a written file; closes it. */
export function finishFile(fd: number, job: FileJob): void {
  try {
    let r = 0;
    if (job.chown && (r = fchown(fd, job.uid, job.gid)) < 0) throw fail("fchown", r, job.shown);
    // After chown, which clears setuid/setgid.
    if (job.chmod && (r = fchmod(fd, job.mode)) < 0) throw fail("fchmod", r, job.shown);
    for (const [name, value] of job.xattrs) {
      if ((r = fsetxattr(fd, name, value)) < 0) throw fail("fsetxattr", r, `${job.shown}, ${name}`);
    }
    if ((r = futimens(fd, job.mtime)) < 0) throw fail("futimens", r, job.shown);
  } finally {
    closeSync(fd);
  }
}

/** Writes one file whose data is in `job.data`. */
function writeFile(job: FileJob): void {
  try {
    const fd = createFile(job);
    let ok = false;
    try {
      let off = 0;
      while (off < job.data.byteLength) off += writeSync(fd, job.data, off);
      ok = true;
    } finally {
      if (ok) finishFile(fd, job);
      else closeSync(fd);
    }
  } catch (err) {
    throw new Error(`entry '${job.shown}': ${(err as Error).message}`);
  }
}

export function writeFileBatch(batch: WriteBatch): void {
  for (const job of batch.files) writeFile(job);
}

/** The write worker's operation: workers/write.ts serves it, WriterPool calls it. */
export interface WriteOps {
  write(batch: WriteBatch): void;
}

export const WRITE_WORKER = workerOf<WriteOps>("write");

/** A few write workers shared by the layers an extract worker unpacks; each batch to the least busy. */
export class WriterPool {
  private readonly clients: Array<WorkerClient<WriteOps>> = [];

  constructor(readonly size: number) {}

  /** Sends a batch to the least busy writer; resolves when its files are on disk. */
  async write(files: FileJob[]): Promise<void> {
    if (this.clients.length === 0) {
      for (let i = 0; i < this.size; i++) {
        const client = startWorker(WRITE_WORKER);
        client.unref();
        this.clients.push(client);
      }
    }
    const target = this.clients.reduce((a, b) => (b.busy < a.busy ? b : a));
    // The file contents move to the writer (not copied).
    await target.call("write", { files }, { transfer: files.map((f) => f.data.buffer as ArrayBuffer) });
  }
}
