// Walks a tar stream block by block and hands each entry to a callback, with its data as
// slices of the incoming chunks (no copy, no stream object per entry). Headers are decoded
// by tar-stream's codec (checksums, base-256 numbers, ustar prefixes, GNU); PAX records and
// GNU long names are applied here. tar-stream's own extractor costs ~13 us per entry in
// stream machinery, which dominated layers of many small files; this walk costs ~1 us.
import tarHeaders from "../../node_modules/tar-stream/headers.js";

export interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  type: string | null;
  linkname: string | null;
  devmajor: number;
  devminor: number;
  pax: Record<string, string> | null;
}

type Decode = (buf: Buffer, filenameEncoding: string, allowUnknownFormat: boolean) => TarHeader | null;
const decode = (tarHeaders as unknown as { decode: Decode }).decode;
// tar-stream's decodePax reads values as UTF-8, which mangles binary xattr values such as
// security.capability; xattr values are kept as latin1 (one char per byte) instead.
const XATTR_PREFIXES = ["SCHILY.xattr.", "LIBARCHIVE.xattr."];
function decodePax(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let rest = buf;
  while (rest.length > 0) {
    const space = rest.indexOf(32);
    if (space <= 0) break;
    const len = Number.parseInt(rest.subarray(0, space).toString("ascii"), 10);
    if (!(len > space + 1) || len > rest.length) break;
    const record = rest.subarray(space + 1, len - 1); // without the trailing newline
    const eq = record.indexOf(61);
    if (eq < 0) break;
    const key = record.subarray(0, eq).toString("utf8");
    const raw = record.subarray(eq + 1);
    result[key] = XATTR_PREFIXES.some((p) => key.startsWith(p)) ? raw.toString("latin1") : raw.toString("utf8");
    rest = rest.subarray(len);
  }
  return result;
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

/**
 * Reads entries from `source` until the end-of-archive marker (or the end of the stream)
 * and calls `onEntry` for each, in order. `data` must be consumed or abandoned before the
 * returned promise settles; what is left of it is skipped.
 */
export async function readTar(
  source: AsyncIterator<Buffer>,
  onEntry: (header: TarHeader, data: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  let buf: Buffer = Buffer.alloc(0);
  let pos = 0;

  /** Makes `n` bytes available at `pos`; false at a clean end of stream. */
  const fill = async (n: number): Promise<boolean> => {
    while (buf.length - pos < n) {
      const { value, done } = await source.next();
      if (done) return false;
      buf = pos < buf.length ? Buffer.concat([buf.subarray(pos), value]) : value;
      pos = 0;
    }
    return true;
  };

  /** The next `size` bytes, as slices of what arrives. */
  async function* take(size: number): AsyncGenerator<Buffer> {
    let left = size;
    while (left > 0) {
      if (pos >= buf.length) {
        const { value, done } = await source.next();
        if (done) throw new TarFormatError("Unexpected end of data: the archive ends inside an entry");
        buf = value;
        pos = 0;
      }
      const n = Math.min(left, buf.length - pos);
      const slice = buf.subarray(pos, pos + n);
      pos += n;
      left -= n;
      yield slice;
    }
  }

  const skip = async (size: number) => {
    for await (const _ of take(size)) void _;
  };
  const readAll = async (size: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const p of take(size)) parts.push(p);
    return Buffer.concat(parts);
  };
  const padding = (size: number) => (512 - (size % 512)) % 512;

  let globalPax: Record<string, string> = {};
  let pax: Record<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    if (!(await fill(512))) {
      if (pos === buf.length) return; // a stream that stops between entries: accepted like GNU tar does
      throw new TarFormatError("Unexpected end of data: the archive ends inside a header");
    }
    const block = buf.subarray(pos, pos + 512);
    pos += 512;
    const header = decode(block, "utf-8", false);
    if (header === null) {
      // A zero block. Two mark the end; the rest of the stream is padding.
      if (!(await fill(512))) return;
      const next = buf.subarray(pos, pos + 512);
      if (next.every((b) => b === 0)) return;
      continue;
    }
    switch (header.type) {
      case "pax-header":
        pax = { ...globalPax, ...decodePax(await readAll(header.size)) };
        await skip(padding(header.size));
        continue;
      case "pax-global-header":
        globalPax = { ...globalPax, ...decodePax(await readAll(header.size)) };
        await skip(padding(header.size));
        continue;
      case "gnu-long-path":
        longName = (await readAll(header.size)).toString("utf8").replace(/\0+$/, "");
        await skip(padding(header.size));
        continue;
      case "gnu-long-link-path":
        longLink = (await readAll(header.size)).toString("utf8").replace(/\0+$/, "");
        await skip(padding(header.size));
        continue;
    }
    const p = pax ?? (Object.keys(globalPax).length > 0 ? globalPax : undefined);
    if (longName !== undefined) header.name = longName;
    if (longLink !== undefined) header.linkname = longLink;
    if (p) {
      if (p.path !== undefined) header.name = p.path;
      if (p.linkpath !== undefined) header.linkname = p.linkpath;
      if (p.size !== undefined) header.size = Number.parseInt(p.size, 10);
      header.pax = p;
    }
    pax = undefined;
    longName = undefined;
    longLink = undefined;
    if (!Number.isSafeInteger(header.size) || header.size < 0) throw new TarFormatError(`Invalid tar header: entry '${header.name}' has a bad size`);
    // Only regular files carry data in the stream (a hard link's size is not data).
    const dataSize = header.type === "file" || header.type === "contiguous-file" || header.type === null ? header.size : 0;
    const body = take(dataSize);
    await onEntry(header, body);
    for await (const _ of body) void _; // what the callback left
    await skip(padding(dataSize));
  }
}
