// Regular files of a layer, written in batches by write workers (src/workers/write.ts) so
// file creation overlaps across threads. The extract worker decides what goes where and in
// which order; a batch only holds files whose paths nothing else is touching meanwhile.
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, lstatSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { lsetxattr } from "../ffi/libc.ts";
import { isCompiled } from "../version.ts";

export interface FileJob {
  path: string;
  data: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  chown: boolean;
  chmod: boolean;
  xattrs: Array<[string, Uint8Array]>;
}

export interface WriteBatch {
  id: number;
  files: FileJob[];
}

const FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Creates the file for `job`, replacing what is there (a later entry of a name wins, as with tar -x). */
export function createFile(job: FileJob): number {
  try {
    return openSync(job.path, FLAGS, job.mode & 0o777);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    if (lstatSync(job.path).isDirectory()) rmSync(job.path, { recursive: true, force: true });
    else unlinkSync(job.path);
    return openSync(job.path, FLAGS, job.mode & 0o777);
  }
}

/** Owner, mode, xattrs and mtime of a written file; closes it. */
export function finishFile(fd: number, job: FileJob): void {
  try {
    if (job.chown) fchownSync(fd, job.uid, job.gid);
    if (job.chmod) fchmodSync(fd, job.mode); // after chown, which clears setuid/setgid
    for (const [name, value] of job.xattrs) lsetxattr(job.path, name, value);
    futimesSync(fd, job.mtime, job.mtime);
  } finally {
    closeSync(fd);
  }
}

/** Writes one file whose data is in `job.data`. */
export function writeFile(job: FileJob, entry: string): void {
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
    throw new Error(`entry '${entry}': ${(err as Error).message}`);
  }
}

export function writeFileBatch(batch: WriteBatch): void {
  for (const job of batch.files) writeFile(job, job.path);
}

/** A few write workers shared by the layers an extract worker unpacks. */
export class WriterPool {
  private readonly workers: Worker[] = [];
  private readonly busy: number[] = [];
  private readonly waiters = new Map<number, { resolve: () => void; reject: (e: Error) => void; worker: number }>();
  private nextId = 1;

  constructor(readonly size: number) {}

  private start(): void {
    if (this.workers.length > 0) return;
    const url = isCompiled() ? "/$bunfs/root/workers/write.ts" : new URL("../workers/write.ts", import.meta.url).href;
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(url);
      w.onmessage = (event: MessageEvent<{ id: number; error?: string }>) => {
        const waiter = this.waiters.get(event.data.id);
        if (!waiter) return;
        this.waiters.delete(event.data.id);
        this.busy[waiter.worker]!--;
        if (event.data.error) waiter.reject(new Error(event.data.error));
        else waiter.resolve();
      };
      w.onerror = (e) => {
        for (const [id, waiter] of this.waiters) {
          if (waiter.worker === i) {
            this.waiters.delete(id);
            waiter.reject(new Error(`write worker failed: ${e.message}`));
          }
        }
      };
      w.unref();
      this.workers.push(w);
      this.busy.push(0);
    }
  }

  /** Sends a batch to the least busy writer; resolves when its files are on disk. */
  write(files: FileJob[]): Promise<void> {
    this.start();
    let target = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.busy[i]! < this.busy[target]!) target = i;
    const id = this.nextId++;
    this.busy[target]!++;
    const transfer = files.map((f) => f.data.buffer as ArrayBuffer);
    return new Promise<void>((resolve, reject) => {
      this.waiters.set(id, { resolve, reject, worker: target });
      this.workers[target]!.postMessage({ id, files } satisfies WriteBatch, transfer);
    });
  }

  get inFlight(): number {
    return this.waiters.size;
  }
}
