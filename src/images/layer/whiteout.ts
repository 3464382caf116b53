// Whiteouts, converted from the layer format (AUFS-style `.wh.<name>` files and the
// `.wh..wh..opq` marker) to what overlayfs reads: a 0/0 character device in place of the
// removed name, and trusted.overlay.opaque=y on a directory that hides what is below it.
import { S_IFCHR, fail, fsetxattr, mknodat } from "../../ffi/fs-at.ts";
import { shown } from "../tar/codec.ts";

const PREFIX = ".wh.";
const OPAQUE = ".wh..wh..opq";
const OPAQUE_XATTR = "trusted.overlay.opaque";

export type WhiteoutKind =
  /** The directory holding the marker hides everything below it. */
  | { kind: "opaque" }
  /** `name` is removed. */
  | { kind: "whiteout"; name: string }
  /** AUFS bookkeeping (.wh..wh.plnk and such): nothing to do. */
  | { kind: "meta" };

/** What a layer entry's base name means, if it is a whiteout; null for an ordinary name. */
export function whiteoutOf(base: string): WhiteoutKind | null | { kind: "invalid" } {
  if (!base.startsWith(PREFIX)) return null;
  if (base === OPAQUE) return { kind: "opaque" };
  if (base.startsWith(`${PREFIX}${PREFIX}`)) return { kind: "meta" };
  const name = base.slice(PREFIX.length);
  if (name === "" || name === "." || name === "..") return { kind: "invalid" };
  return { kind: "whiteout", name };
}

/** Marks the open directory `dirfd` opaque. */
export function markOpaque(dirfd: number, what: string): void {
  const r = fsetxattr(dirfd, OPAQUE_XATTR, Buffer.from("y"));
  if (r < 0) throw fail("fsetxattr", r, `${what}, ${OPAQUE_XATTR}`);
}

/** Puts an overlay whiteout at `name` in `dirfd` (the caller removed what was there). */
export function makeWhiteout(dirfd: number, name: string): void {
  const r = mknodat(dirfd, name, S_IFCHR, 0, 0);
  if (r < 0) throw fail("mknodat", r, shown(name));
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A path as a layer record keeps it (JSON): the text itself when its bytes are UTF-8 (nearly
 * always), else a NUL (never in a name) and the bytes in base64, so no name is ever mangled.
 */
export function encodeRecordPath(latin1: string): string {
  const bytes = Buffer.from(latin1, "latin1");
  try {
    return UTF8.decode(bytes);
  } catch {
    return `\0${bytes.toString("base64")}`;
  }
}

/** The bytes of a path from a layer record (see encodeRecordPath). */
export function decodeRecordPath(text: string): Buffer {
  return text.startsWith("\0") ? Buffer.from(text.slice(1), "base64") : Buffer.from(text, "utf8");
}
