// GNU tar's PAX 1.0 sparse files (tar --sparse --format=posix): the entry's data starts with
// a map of regions, then holds each region's bytes in order; holes stay holes on disk.
// Older sparse formats (0.x, old GNU) are refused by the caller.
import { ftruncateSync, writeSync } from "node:fs";

/** A map longer than this is refused (it is read whole before any region is written). */
const MAX_SPARSE_MAP_BYTES = 1 << 20;

/** The sparse facts of a PAX header, or undefined if the entry is not sparse. */
export function sparseOf(
  pax: Record<string, string>,
  fail: (name: string, why: string) => never,
  raw: string,
): { name: string; realSize: number } | undefined {
  if (pax["GNU.sparse.major"] === undefined && pax["GNU.sparse.map"] === undefined && pax["GNU.sparse.offset"] === undefined) {
    return undefined;
  }
  if (pax["GNU.sparse.major"] !== "1" || pax["GNU.sparse.minor"] !== "0" || pax["GNU.sparse.name"] === undefined) {
    fail(pax["GNU.sparse.name"] ?? raw, "is a GNU sparse file in a format before 1.0, which ucr does not read");
  }
  const name = pax["GNU.sparse.name"];
  const realSize = Number(pax["GNU.sparse.realsize"]);
  if (!/^\d{1,16}$/.test(pax["GNU.sparse.realsize"] ?? "") || !Number.isSafeInteger(realSize)) {
    fail(name, "is a sparse file without a valid real size");
  }
  return { name, realSize };
}

/**
 * Writes a sparse entry's data to `fd`: the map ("count\n" then "offset\nsize\n" pairs,
 * padded to 512 bytes), then each region at its offset. The file gets its real size at the end.
 */
export async function writeSparse(fd: number, data: AsyncIterable<Buffer>, realSize: number, fail: (why: string) => never): Promise<void> {
  const it = data[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  let regions: Array<[number, number]> | undefined;
  let consumed = 0;
  while (!regions) {
    const lines = buf.toString("latin1").split("\n");
    const complete = lines.slice(0, -1);
    const count = complete.length > 0 ? Number(complete[0]) : Number.NaN;
    if (complete.length > 0 && (!Number.isSafeInteger(count) || count < 0 || count > 1_000_000)) fail("has a malformed sparse map");
    if (complete.length >= 1 + 2 * count) {
      regions = [];
      for (let i = 0; i < count; i++) {
        const off = Number(complete[1 + 2 * i]);
        const len = Number(complete[2 + 2 * i]);
        if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > realSize) {
          fail("has a sparse region outside the file");
        }
        regions.push([off, len]);
      }
      const mapBytes = complete.slice(0, 1 + 2 * count).reduce((n, l) => n + l.length + 1, 0);
      consumed = Math.ceil(mapBytes / 512) * 512;
      break;
    }
    if (buf.length > MAX_SPARSE_MAP_BYTES) fail(`has a sparse map longer than ${MAX_SPARSE_MAP_BYTES} bytes`);
    const { value, done } = await it.next();
    if (done) fail("ends inside its sparse map");
    buf = Buffer.concat([buf, value]);
  }
  while (buf.length < consumed) {
    const { value, done } = await it.next();
    if (done) fail("ends inside its sparse map");
    buf = Buffer.concat([buf, value]);
  }
  let rest: Buffer = buf.subarray(consumed);
  for (const [offset, length] of regions) {
    let written = 0;
    while (written < length) {
      if (rest.length === 0) {
        const { value, done } = await it.next();
        if (done) fail("ends inside a sparse region");
        rest = value;
        continue;
      }
      const n = Math.min(rest.length, length - written);
      let off = 0;
      while (off < n) off += writeSync(fd, rest, off, n - off, offset + written + off);
      written += n;
      rest = rest.subarray(n);
    }
  }
  for (;;) {
    const { done } = await it.next();
    if (done) break;
  }
  ftruncateSync(fd, realSize);
}
