// Tar archives no honest tool writes, byte by byte: names that are not UTF-8, PAX headers that
// claim 64 MiB, ids past 2^32-2, entries in any order. A writer of its own (ustar headers,
// PAX records, GNU long names) so the bytes are exactly what the test says. Also deep trees,
// made through directory handles, since their paths do not fit in PATH_MAX.
import { mkdirSync } from "node:fs";
import { AT_FDCWD, O_CREAT, O_DIRECTORY, O_NOFOLLOW, O_RDONLY, O_WRONLY, close, mkdirat, openat } from "../../src/ffi/fs-at.ts";
import { writeSync } from "node:fs";

export interface RawEntry {
  /** Bytes of the name (a string is taken as UTF-8). */
  name: string | Uint8Array;
  /** Type flag: "0" file, "1" hard link, "2" symlink, "3" char, "4" block, "5" dir, "6" fifo, "x" PAX, "g" global PAX, "L" long name. */
  type?: string;
  data?: string | Uint8Array;
  /** What the size field says (default: the data's length). */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string | Uint8Array;
  devmajor?: number;
  devminor?: number;
  /** PAX records for this entry (written as an "x" header before it). */
  pax?: Record<string, string | Uint8Array>;
}

const bytes = (v: string | Uint8Array) => (typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v));

function octal(buf: Buffer, offset: number, length: number, value: number): void {
  buf.write(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length, "ascii");
}

/** One ustar header block (names that do not fit are cut: use `pax` or an "L" entry). */
export function headerBlock(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  bytes(e.name).copy(h, 0, 0, 100);
  octal(h, 100, 8, e.mode ?? 0o644);
  octal(h, 108, 8, Math.min(e.uid ?? 0, 0o7777777));
  octal(h, 116, 8, Math.min(e.gid ?? 0, 0o7777777));
  const size = e.size ?? (e.data === undefined ? 0 : bytes(e.data).length);
  if (size > 0o77777777777) {
    // base-256, as GNU tar writes sizes past 8 GiB
    h[124] = 0x80;
    let n = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(n & 0xffn);
      n >>= 8n;
    }
  } else octal(h, 124, 12, size);
  octal(h, 136, 12, 1_700_000_000);
  h.write(e.type ?? "0", 156, 1, "ascii");
  if (e.linkname !== undefined) bytes(e.linkname).copy(h, 157, 0, 100);
  h.write("ustar\0", 257, 6, "ascii");
  h.write("00", 263, 2, "ascii");
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
  return h;
}

/** PAX records ("<len> key=value\n"), lengths counted right. */
export function paxData(records: Record<string, string | Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`, "latin1"), bytes(value), Buffer.from("\n")]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.concat([Buffer.from(String(len)), body]));
  }
  return Buffer.concat(parts);
}

function padded(data: Buffer): Buffer {
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([data, Buffer.alloc(pad)]);
}

/** A whole archive: each entry (with its PAX header first, if any), then two zero blocks. */
export function rawTar(entries: RawEntry[]): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    if (e.pax) {
      const data = paxData(e.pax);
      out.push(headerBlock({ name: "PaxHeaders/entry", type: "x", size: data.length }), padded(data));
    }
    out.push(headerBlock(e));
    if (e.data !== undefined) out.push(padded(bytes(e.data)));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

/**
 * A stream that starts with `head` and then produces `junk` bytes of filler on demand,
 * counting how many bytes the reader actually pulled (to prove it stopped early).
 */
export function countingStream(head: Buffer, junk: number): { stream: AsyncIterable<Uint8Array>; pulled(): number } {
  let pulled = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  async function* gen() {
    pulled += head.length;
    yield head;
    for (let left = junk; left > 0; left -= chunk.length) {
      const n = Math.min(left, chunk.length);
      pulled += n;
      yield chunk.subarray(0, n);
    }
  }
  return { stream: gen(), pulled: () => pulled };
}

/**
 * A chain of `depth` directories named `d` under `root` (made through directory handles:
 * the path outgrows PATH_MAX), a file every 1000 levels and `bottom` at the end.
 */
export function makeDeepTree(root: string, depth: number): void {
  mkdirSync(root, { recursive: true });
  let fd = openat(AT_FDCWD, root, O_RDONLY | O_DIRECTORY);
  for (let i = 0; i < depth; i++) {
    mkdirat(fd, "d", 0o755);
    if (i % 1000 === 0) {
      const f = openat(fd, `f${i}`, O_WRONLY | O_CREAT, 0o644);
      writeSync(f, `level ${i}\n`);
      close(f);
    }
    const next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    close(fd);
    fd = next;
  }
  const f = openat(fd, "bottom", O_WRONLY | O_CREAT, 0o644);
  writeSync(f, "the bottom\n");
  close(f);
  close(fd);
}
