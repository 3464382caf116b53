// Writes a layer's tar entries under its root, never outside it: every parent is resolved by
// the confined resolver at the moment of use and every entry is made with an *at call on its
// parent's descriptor (names stay bytes). Small regular files go to write threads in batches;
// the order rules (a later entry of a name wins, a hard link waits for its target) are kept here.
// Over 400 lines on purpose: those rules tie every entry type to the batches in flight, and
// split across files they would be harder to check than in one place.
import { closeSync, writeSync } from "node:fs";
import {
  ENOENT,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  EEXIST,
  fail as sysFail,
  fchmodat,
  fchownat,
  linkat,
  lsetxattrat,
  mkdirat,
  mknodat,
  statxat,
  symlinkat,
  unlinkat,
  utimensat,
} from "../../ffi/fs-at.ts";
import { removeAt } from "../../util/tree.ts";
import { shown, type TarHeader } from "../tar/codec.ts";
import { ConfinedRoot, ConfinementError, cleanKey, type DirHandle } from "./confined-root.ts";
import { createFile, finishFile, type FileJob, type WriterPool } from "./file-writer.ts";
import { sparseOf, writeSparse } from "./sparse.ts";
import { makeWhiteout, markOpaque, whiteoutOf } from "./whiteout.ts";
import { errorOfKind } from "../../errors.ts";

export class LayerError extends errorOfKind("invalid") {}

/** The process umask, read once (reading it means setting it, so set it straight back). */
const UMASK = (() => {
  const m = process.umask(0o022);
  process.umask(m);
  return m;
})();

/** Files up to this size go to the write threads; larger ones stream straight to disk. */
const SMALL_FILE = 1 << 20;
/** The first entries of a layer are written inline: small layers never start write threads. */
const INLINE_FIRST = 128;
const BATCH_FILES = 64;
const BATCH_BYTES = 4 << 20;

const EMPTY = new Uint8Array(0);

/**
 * Names kept for later (directory keys and deferred mtimes) past this many bytes make the
 * writer lean: it sets directory times at once and writes inline. A hostile layer of long
 * names cannot make the extract worker hold more than this (the tar itself may be 64 GB).
 */
const MAX_RETAINED_BYTES = 32 << 20;
/** Whiteout and opaque paths recorded for the store, at most this many bytes. */
const MAX_RECORDED_BYTES = 16 << 20;

function join(parent: string, base: string): string {
  return parent === "" ? base : `${parent}/${base}`;
}

interface Queued {
  job: FileJob;
  parent: DirHandle;
}

export class LayerWriter {
  entries = 0;
  /** Paths (resolved, "/"-separated, bytes as latin1) turned into overlay whiteouts, and opaque dirs. */
  readonly whiteouts: string[] = [];
  readonly opaques: string[] = [];
  private readonly root: ConfinedRoot;
  /** Directory mtimes, applied at the end since creating children changes them. */
  private readonly dirTimes = new Map<string, [number, number]>();
  /** Keys of the directories in the tree (a file entry replacing one must wait for writes inside it). */
  private readonly dirKeys = new Set<string>();

  /** Who files we create belong to before any chown: this process (root, for the agent). */
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;

  /** Small files queued for the write threads, and the keys not yet on disk. */
  private batch: Queued[] = [];
  private batchBytes = 0;
  private readonly pending = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private failure: Error | undefined;
  /** Bytes of names kept in dirKeys and dirTimes, and of whiteout records. */
  private retained = 0;
  private recorded = 0;
  /** Past MAX_RETAINED_BYTES: no more deferred work (see there). */
  private lean = false;

  constructor(
    rootPath: string,
    private readonly what: string,
    private readonly writers?: WriterPool,
  ) {
    this.root = new ConfinedRoot(rootPath);
    this.root.onCreate = (key) => this.keepDirKey(key);
  }

  private keepDirKey(key: string): void {
    if (this.lean || this.dirKeys.has(key)) return;
    this.dirKeys.add(key);
    this.retained += key.length;
  }

  /** Records a whiteout or opaque path for the store's layer record, bounded. */
  private record(list: string[], key: string, raw: string): void {
    this.recorded += key.length + 1;
    if (this.recorded > MAX_RECORDED_BYTES) this.fail(raw, `makes the layer record more than ${MAX_RECORDED_BYTES} bytes of whiteouts`);
    list.push(key);
  }

  /** Past the retention bound: finish what the write threads have, then work inline. */
  private async goLean(): Promise<void> {
    if (this.lean || this.retained <= MAX_RETAINED_BYTES) return;
    await this.drain();
    this.lean = true;
    this.dirKeys.clear();
  }

  private fail(name: string, why: string): never {
    throw new LayerError(`${this.what}: entry '${shown(name)}' ${why}`);
  }

  /** A syscall result check: errors name the entry. */
  private ok(r: number, call: string, raw: string): void {
    if (r < 0) this.fail(raw, `could not be written: ${sysFail(call, r, shown(raw)).message}`);
  }

  /** Sends the queued files off; keeps at most two batches per writer in flight. */
  private async flush(): Promise<void> {
    if (this.batch.length === 0 || !this.writers) return;
    const queued = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const sent = this.writers
      .write(queued.map((q) => q.job))
      .catch((err: Error) => {
        this.failure ??= err;
      })
      .finally(() => {
        for (const q of queued) {
          this.root.unpin(q.parent);
          this.pending.delete(join(q.parent.key, q.job.name));
        }
      });
    this.inflight.add(sent);
    void sent.then(() => this.inflight.delete(sent));
    while (this.inflight.size >= this.writers.size * 2) await Promise.race(this.inflight);
    if (this.failure) throw new LayerError(`${this.what}: ${this.failure.message}`);
  }

  /** Waits until every queued file is on disk (before touching one of their names). */
  private async drain(): Promise<void> {
    await this.flush();
    await Promise.all(this.inflight);
    this.pending.clear();
    if (this.failure) throw new LayerError(`${this.what}: ${this.failure.message}`);
  }

  /** After a failure: let writes in flight finish so nothing writes into a removed tree. */
  async settle(): Promise<void> {
    for (const q of this.batch) this.root.unpin(q.parent);
    this.batch = [];
    await Promise.all(this.inflight);
    this.root.close();
  }

  /** The parent directory of an entry, resolved (and created) inside the root. */
  private parentOf(key: string, raw: string, create: boolean): DirHandle | undefined {
    try {
      return this.root.dir(key, create);
    } catch (err) {
      if (err instanceof ConfinementError) this.fail(raw, err.reason);
      throw err;
    }
  }

  /** Removes what is at `base` in `parent` so an entry can take its place (a dir stays for a dir). */
  private async clear(parent: DirHandle, base: string, raw: string, keepDir: boolean): Promise<void> {
    const st = statxat(parent.fd, base);
    if (st === -ENOENT) return;
    if (typeof st === "number") return this.ok(st, "statx", raw);
    const type = st.mode & S_IFMT;
    if (type === S_IFDIR) {
      if (keepDir) return;
      await this.drain();
      removeAt(parent.fd, base, shown(raw));
      this.dirKeys.delete(join(parent.key, base));
      this.root.invalidate();
      return;
    }
    this.ok(unlinkat(parent.fd, base), "unlinkat", raw);
    if (type === S_IFLNK) this.root.invalidate();
  }

  async entry(header: TarHeader, data: AsyncIterable<Buffer>): Promise<void> {
    this.entries++;
    const raw = header.name;
    const pax = header.pax ?? {};
    const sparse = sparseOf(pax, (n, why) => this.fail(n, why), raw);
    const name = sparse?.name ?? raw;
    const clean = cleanKey(name);
    if ("problem" in clean) {
      this.fail(
        name,
        clean.problem === "absolute"
          ? "has an absolute path; layer entries must be relative"
          : "has a path with '..', which would escape the layer root",
      );
    }
    const type = header.type;
    if (clean.key === "") {
      // "./": the layer root itself; only its metadata can change.
      await skip(data);
      if (type === "directory") this.dirTimes.set("", header.mtime);
      return;
    }
    const slash = clean.key.lastIndexOf("/");
    const base = clean.key.slice(slash + 1);
    const parent = this.parentOf(slash < 0 ? "" : clean.key.slice(0, slash), name, true)!;
    // Held while the entry is made: replacing a directory forgets every cached handle, and a
    // closed descriptor's number may come back for another directory.
    this.root.pin(parent);
    try {
      await this.place(header, data, parent, base, name, sparse);
    } finally {
      this.root.unpin(parent);
    }
  }

  private async place(
    header: TarHeader,
    data: AsyncIterable<Buffer>,
    parent: DirHandle,
    base: string,
    name: string,
    sparse: { realSize: number } | undefined,
  ): Promise<void> {
    const type = header.type;
    const pax = header.pax ?? {};

    const wh = whiteoutOf(base);
    if (wh) {
      await skip(data);
      switch (wh.kind) {
        case "meta":
          return;
        case "invalid":
          return this.fail(name, "is a whiteout of nothing");
        case "opaque":
          markOpaque(parent.fd, shown(name));
          this.record(this.opaques, parent.key, name);
          return;
        case "whiteout":
          await this.clear(parent, wh.name, name, false);
          makeWhiteout(parent.fd, wh.name);
          this.record(this.whiteouts, join(parent.key, wh.name), name);
          return;
      }
    }

    const key = join(parent.key, base);
    if (this.pending.has(key)) await this.drain();
    const mode = header.mode & 0o7777;
    const { uid, gid, mtime } = header;
    const xattrs = xattrsOf(pax);

    if (type === "file" || type === "contiguous-file") {
      const special = (mode & 0o7000) !== 0;
      const job: FileJob = {
        dirfd: parent.fd,
        name: base,
        shown: shown(name),
        data: EMPTY,
        mode,
        uid,
        gid,
        mtime,
        // Every metadata syscall dirties the inode (and, on ext4, the journal): files are
        // created with their final mode, and chown/chmod happen only when they change something.
        chown: uid !== this.uid || gid !== this.gid || special,
        chmod: special || (mode & UMASK) !== 0,
        xattrs,
      };
      if (this.dirKeys.has(key)) await this.clear(parent, base, name, false);
      if (sparse || !this.writers || this.lean || header.size > SMALL_FILE || this.entries <= INLINE_FIRST) {
        // Large files (and everything without write threads) stream straight to disk.
        const fd = this.create(job);
        let ok = false;
        try {
          if (sparse) await writeSparse(fd, data, sparse.realSize, (why) => this.fail(name, why));
          else {
            for await (const chunk of data) {
              let off = 0;
              while (off < chunk.byteLength) off += writeSync(fd, chunk, off);
            }
          }
          ok = true;
        } finally {
          if (ok) this.complete(fd, job);
          else closeSync(fd);
        }
        return;
      }
      // A buffer of its own, so it can be handed to a write thread without copying again.
      job.data = header.size > 0 ? await collect(data, header.size) : new Uint8Array(0);
      this.root.pin(parent);
      this.pending.add(key);
      this.batch.push({ job, parent });
      this.batchBytes += header.size;
      if (this.batch.length >= BATCH_FILES || this.batchBytes >= BATCH_BYTES) await this.flush();
      return;
    }

    await skip(data);
    switch (type) {
      case "directory": {
        const st = statxat(parent.fd, base);
        if (typeof st !== "number" && (st.mode & S_IFMT) !== S_IFDIR) await this.clear(parent, base, name, false);
        const made = mkdirat(parent.fd, base, 0o755);
        if (made !== -EEXIST) this.ok(made, "mkdirat", name);
        this.keepDirKey(key);
        this.ok(fchownat(parent.fd, base, uid, gid), "fchownat", name);
        this.ok(fchmodat(parent.fd, base, mode), "fchmodat", name);
        // Lean: set now (its children may move it later); else once every entry is in.
        if (this.lean) this.ok(utimensat(parent.fd, base, mtime), "utimensat", name);
        else this.dirTimes.set(key, mtime);
        await this.goLean();
        break;
      }
      case "symlink": {
        if (!header.linkname) this.fail(name, "is a symlink without a target");
        await this.clear(parent, base, name, false);
        this.ok(symlinkat(header.linkname, parent.fd, base), "symlinkat", name);
        this.ok(fchownat(parent.fd, base, uid, gid), "fchownat", name);
        this.ok(utimensat(parent.fd, base, mtime), "utimensat", name);
        break;
      }
      case "link": {
        if (!header.linkname) this.fail(name, "is a hard link without a target");
        const target = cleanKey(header.linkname);
        if ("problem" in target) {
          this.fail(
            name,
            target.problem === "absolute"
              ? "has an absolute hard link target; layer entries must be relative"
              : "has a hard link target with '..', which would escape the layer root",
          );
        }
        if (target.key === "") this.fail(name, "is a hard link to the layer root");
        const tslash = target.key.lastIndexOf("/");
        const tbase = target.key.slice(tslash + 1);
        const tparent = this.parentOf(tslash < 0 ? "" : target.key.slice(0, tslash), name, false);
        const notHere = () => this.fail(name, `is a hard link to '${shown(header.linkname)}', which is not in this layer`);
        if (!tparent) return notHere();
        this.root.pin(tparent);
        try {
          await this.link(tparent, tbase, parent, base, name, header.linkname, notHere);
        } finally {
          this.root.unpin(tparent);
        }
        return;
      }
      case "character-device":
      case "block-device":
      case "fifo": {
        await this.clear(parent, base, name, false);
        const kind = type === "fifo" ? S_IFIFO : type === "character-device" ? S_IFCHR : S_IFBLK;
        this.ok(mknodat(parent.fd, base, kind | 0o600, header.devmajor, header.devminor), "mknodat", name);
        this.ok(fchownat(parent.fd, base, uid, gid), "fchownat", name);
        this.ok(fchmodat(parent.fd, base, mode), "fchmodat", name);
        this.ok(utimensat(parent.fd, base, mtime), "utimensat", name);
        break;
      }
      default:
        this.fail(name, `has an unsupported tar type (${typeof type === "string" ? type : `'${type.unknown}'`})`);
    }
    for (const [xname, value] of xattrs) this.ok(lsetxattrat(parent.fd, base, xname, value), `lsetxattr ${shown(xname)}`, name);
  }

  /** A hard link at `base` in `parent` to `tbase` in `tparent` (both inside the root, both held). */
  private async link(
    tparent: DirHandle,
    tbase: string,
    parent: DirHandle,
    base: string,
    name: string,
    linkname: string,
    notHere: () => never,
  ): Promise<void> {
    const tkey = join(tparent.key, tbase);
    if (this.pending.has(tkey)) await this.drain();
    const st = statxat(tparent.fd, tbase);
    if (st === -ENOENT) return notHere();
    if (typeof st === "number") return this.ok(st, "statx", name);
    if ((st.mode & S_IFMT) === S_IFDIR) this.fail(name, `is a hard link to directory '${shown(linkname)}'`);
    if (tkey === join(parent.key, base)) return;
    await this.clear(parent, base, name, false);
    // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink, never where it points.
    this.ok(linkat(tparent.fd, tbase, parent.fd, base), "linkat", name);
  }

  private create(job: FileJob): number {
    try {
      return createFile(job);
    } catch (err) {
      throw new LayerError(`${this.what}: entry '${job.shown}' could not be written: ${(err as Error).message}`);
    }
  }

  private complete(fd: number, job: FileJob): void {
    try {
      finishFile(fd, job);
    } catch (err) {
      throw new LayerError(`${this.what}: entry '${job.shown}' could not be written: ${(err as Error).message}`);
    }
  }

  /** Directory mtimes last, deepest first, since creating children changes them. */
  async finish(): Promise<void> {
    await this.drain();
    const dirs = [...this.dirTimes.entries()].sort((a, b) => b[0].length - a[0].length);
    for (const [key, mtime] of dirs) {
      if (key === "") {
        this.ok(utimensat(this.root.rootFd, ".", mtime), "utimensat", ".");
        continue;
      }
      const slash = key.lastIndexOf("/");
      let parent: DirHandle | undefined;
      try {
        parent = this.root.dir(slash < 0 ? "" : key.slice(0, slash), false);
      } catch (err) {
        // A later entry made a symlink of a parent: that directory is gone from the tree.
        if (err instanceof ConfinementError) continue;
        throw err;
      }
      if (!parent) continue;
      const base = key.slice(slash + 1);
      const st = statxat(parent.fd, base);
      if (typeof st === "number" || (st.mode & S_IFMT) !== S_IFDIR) continue; // replaced later in the layer
      this.ok(utimensat(parent.fd, base, mtime), "utimensat", key);
    }
    this.root.close();
  }
}

/**
 * xattrs a layer may set. trusted.* would let a layer steer overlayfs (only our own
 * opaque markers may), and security.selinux labels belong to the host that built it.
 */
function keepXattr(name: string): boolean {
  return !name.startsWith("trusted.") && name !== "security.selinux";
}

/** %XX escapes to bytes (LIBARCHIVE.xattr names); the result is a latin1 string. */
function percentDecode(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/** The xattrs a PAX header carries that a layer may set (see keepXattr); names and values are bytes. */
function xattrsOf(pax: Record<string, string>): Array<[string, Uint8Array]> {
  const out: Array<[string, Uint8Array]> = [];
  for (const [key, value] of Object.entries(pax)) {
    const schily = key.startsWith("SCHILY.xattr.");
    const libarchive = key.startsWith("LIBARCHIVE.xattr.");
    if (!schily && !libarchive) continue;
    const name = schily ? key.slice("SCHILY.xattr.".length) : percentDecode(key.slice("LIBARCHIVE.xattr.".length));
    if (!keepXattr(name)) continue;
    out.push([name, schily ? Buffer.from(value, "latin1") : Buffer.from(value, "base64")]);
  }
  return out;
}

/** An entry's data in one buffer of its own (the incoming chunks may be shared). */
async function collect(data: AsyncIterable<Buffer>, size: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let off = 0;
  for await (const chunk of data) {
    out.set(chunk.subarray(0, Math.max(0, size - off)), off);
    off += chunk.byteLength;
  }
  return out;
}

async function skip(data: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of data) void _;
}
