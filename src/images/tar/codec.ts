// The tar header codec (POSIX ustar, GNU and v7 headers, PAX records): one 512-byte block in,
// a header out. Names and link targets stay bytes (latin1 strings, one char per byte) so any
// name survives; numbers are octal or base-256; the checksum is verified. Used by the layer
// reader (tar/reader.ts) and by the archive index (archive.ts).
import { errorOfKind } from "../../errors.ts";

export class TarFormatError extends errorOfKind("invalid") {}

type TarType =
  | "file"
  | "link"
  | "symlink"
  | "character-device"
  | "block-device"
  | "directory"
  | "fifo"
  | "contiguous-file"
  | "pax-header"
  | "pax-global-header"
  | "gnu-long-path"
  | "gnu-long-link-path";

export interface TarHeader {
  /** The entry's name as bytes (latin1 string); PAX `path` and GNU long names applied by the reader. */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Modification time: whole seconds and nanoseconds (PAX keeps sub-second precision). */
  mtime: [number, number];
  /** The entry type, or the raw type flag (one character) for a type ucr does not handle. */
  type: TarType | { unknown: string };
  linkname: string;
  devmajor: number;
  devminor: number;
  /** PAX records that applied to this entry (keys and values as bytes). */
  pax: Record<string, string> | null;
}

const TYPES: Record<string, TarType> = {
  "0": "file",
  "\0": "file",
  "1": "link",
  "2": "symlink",
  "3": "character-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
  "7": "contiguous-file",
  x: "pax-header",
  g: "pax-global-header",
  L: "gnu-long-path",
  K: "gnu-long-link-path",
};

/** Largest uid/gid ucr accepts: 2^32-1 is the kernel's "no change" (-1), so it is refused. */
export const MAX_ID = 0xfffffffe;

/** Bytes up to the first NUL in `buf[start, end)`, as a latin1 string. */
function field(buf: Buffer, start: number, end: number): string {
  let stop = start;
  while (stop < end && buf[stop] !== 0) stop++;
  return buf.toString("latin1", start, stop);
}

/** An octal field (spaces and NULs around it allowed) or a base-256 one (first byte 0x80). */
function numeric(buf: Buffer, start: number, end: number, what: string): number {
  const first = buf[start]!;
  if (first & 0x80) {
    if (first === 0xff) throw new TarFormatError(`Invalid tar header: negative ${what}`);
    let n = first & 0x7f;
    for (let i = start + 1; i < end; i++) {
      n = n * 256 + buf[i]!;
      if (n > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`Invalid tar header: ${what} is too large`);
    }
    return n;
  }
  let i = start;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) i++;
  let n = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`Invalid tar header: ${what} is not an octal number`);
    n = n * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    if (buf[i] !== 0x20 && buf[i] !== 0) throw new TarFormatError(`Invalid tar header: ${what} is not an octal number`);
  }
  return digits === 0 ? 0 : n;
}

function isZero(block: Uint8Array): boolean {
  for (let i = 0; i < 512; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Decodes one header block; null for a block of zeros (end-of-archive padding). Throws
 * TarFormatError for a bad checksum or malformed numbers.
 */
export function decodeHeader(block: Buffer): TarHeader | null {
  if (block.length < 512) throw new TarFormatError("Invalid tar header: short block");
  if (isZero(block)) return null;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  const stored = numeric(block, 148, 156, "checksum");
  // Some old tars summed signed bytes; both are accepted, as GNU tar and Go do.
  if (stored !== unsigned && stored !== signed) throw new TarFormatError("Invalid tar header: bad checksum");

  const flag = String.fromCharCode(block[156]!);
  const magic = field(block, 257, 263);
  const version = block.toString("latin1", 263, 265);
  const ustar = magic === "ustar" && (version === "00" || version === "\0\0");
  const gnu = magic === "ustar " && version === " \0";
  let name = field(block, 0, 100);
  // The ustar prefix; GNU headers keep access and change times in that place instead.
  if (ustar) {
    const prefix = field(block, 345, 500);
    if (prefix) name = `${prefix}/${name}`;
  }
  let type: TarHeader["type"] = TYPES[flag] ?? { unknown: flag };
  // Pre-POSIX tars marked directories only by a trailing slash.
  if (type === "file" && !ustar && !gnu && name.endsWith("/")) type = "directory";
  return {
    name,
    mode: numeric(block, 100, 108, "mode"),
    uid: numeric(block, 108, 116, "uid"),
    gid: numeric(block, 116, 124, "gid"),
    size: numeric(block, 124, 136, "size"),
    mtime: [numeric(block, 136, 148, "mtime"), 0],
    type,
    linkname: field(block, 157, 257),
    devmajor: ustar || gnu ? numeric(block, 329, 337, "devmajor") : 0,
    devminor: ustar || gnu ? numeric(block, 337, 345, "devminor") : 0,
    pax: null,
  };
}

/**
 * Parses PAX extended header records ("<len> <key>=<value>\n"); keys and values are kept as
 * bytes (latin1 strings), since paths and xattr values need not be UTF-8. Strict: a record
 * that does not parse makes the whole header invalid, as in GNU tar and Go.
 */
export function parsePax(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < buf.length) {
    let len = 0;
    let i = pos;
    while (i < buf.length && buf[i]! >= 0x30 && buf[i]! <= 0x39 && i - pos < 12) len = len * 10 + (buf[i++]! - 0x30);
    if (i === pos || buf[i] !== 0x20 || len <= i - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      // GNU tar pads a PAX block with NULs after the last record.
      if (buf.subarray(pos).every((b) => b === 0)) break;
      throw new TarFormatError(`Invalid tar header: malformed PAX record at byte ${pos}`);
    }
    const start = i + 1;
    const end = pos + len - 1;
    let eq = start;
    while (eq < end && buf[eq] !== 0x3d) eq++;
    if (eq === start || eq === end) throw new TarFormatError(`Invalid tar header: malformed PAX record at byte ${pos}`);
    out[buf.toString("latin1", start, eq)] = buf.toString("latin1", eq + 1, end);
    pos += len;
  }
  return out;
}

/** A PAX decimal integer (size, uid, gid) or undefined if absent; throws if malformed. */
export function paxInteger(value: string | undefined, key: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value) || Number(value) > max)
    throw new TarFormatError(`Invalid tar header: PAX ${key} '${value}' is not a valid number`);
  return Number(value);
}

/** A PAX time ("1700000000.123456789", possibly negative) as [seconds, nanoseconds]. */
export function paxTime(value: string, key: string): [number, number] {
  const m = /^(-?)(\d{1,15})(?:\.(\d{0,30}))?$/.exec(value);
  if (!m) throw new TarFormatError(`Invalid tar header: PAX ${key} '${value}' is not a time`);
  let sec = Number(m[2]);
  let nsec = Number((m[3] ?? "").slice(0, 9).padEnd(9, "0"));
  if (m[1] === "-") {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return [sec, nsec];
}

/** A name as bytes, shown in a message (invalid UTF-8 shows as U+FFFD there, and only there). */
export function shown(name: string): string {
  return Buffer.from(name, "latin1").toString("utf8");
}
