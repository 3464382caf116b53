// Malicious layers, written with tar-stream (GNU tar refuses to write these), and images of them.
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import * as tarStream from "tar-stream";
import { type BuiltImage, EPOCH } from "./basics.ts";
import { addImage } from "./layout.ts";
import { BUSYBOX_CONFIG, busyboxLayerTar } from "./layers.ts";

export type BadLayerKind =
  | "traversal"
  | "absolute"
  | "symlink-escape"
  | "symlink-escape-relative"
  | "hardlink-escape"
  | "hardlink-absolute";

export interface TarEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "fifo" | "character-device" | "block-device";
  content?: string | Uint8Array;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
  /** pax records, e.g. {"SCHILY.xattr.user.x": "v"}. */
  pax?: Record<string, string>;
}

type PackHeader = Parameters<ReturnType<typeof tarStream.pack>["entry"]>[0];

/** A tar written entry by entry, exactly as given (no path cleaning). */
export async function packTar(entries: TarEntry[]): Promise<Uint8Array> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const e of entries) {
    const type = e.type ?? "file";
    const body = e.content === undefined ? undefined : Buffer.from(e.content);
    const header: PackHeader & { pax?: Record<string, string> } = {
      name: e.name,
      type,
      mode: e.mode ?? (type === "directory" ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(EPOCH * 1000),
      size: type === "file" ? (body?.byteLength ?? 0) : 0,
    };
    if (e.linkname !== undefined) header.linkname = e.linkname;
    if (e.devmajor !== undefined) header.devmajor = e.devmajor;
    if (e.devminor !== undefined) header.devminor = e.devminor;
    if (e.pax) header.pax = e.pax;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === "file") pack.entry(header, body ?? Buffer.alloc(0), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return new Uint8Array(Buffer.concat(chunks));
}

/** The entries of the malicious layer for `kind` (after a harmless ok.txt). */
function badLayerEntries(kind: BadLayerKind): TarEntry[] {
  const ok: TarEntry = { name: "ok.txt", content: "ok\n" };
  switch (kind) {
    case "traversal":
      return [ok, { name: "../evil", content: "evil\n" }];
    case "absolute":
      return [ok, { name: "/etc/evil", content: "evil\n" }];
    case "symlink-escape":
      return [ok, { name: "esc", type: "symlink", linkname: "/tmp" }, { name: "esc/evil", content: "evil\n" }];
    case "symlink-escape-relative":
      return [ok, { name: "esc", type: "symlink", linkname: "../../../../../../.." }, { name: "esc/tmp/evil", content: "evil\n" }];
    case "hardlink-escape":
      return [ok, { name: "hl", type: "link", linkname: "../../etc/passwd" }];
    case "hardlink-absolute":
      return [ok, { name: "hl", type: "link", linkname: "/etc/passwd" }];
  }
}

/** busybox plus one malicious gzip layer of `kind`. */
export async function buildBadLayerImage(dir: string, kind: BadLayerKind, opts: { tag?: string } = {}): Promise<BuiltImage> {
  const bad = await packTar(badLayerEntries(kind));
  return addImage(dir, {
    tag: opts.tag ?? "latest",
    layers: [
      { tar: busyboxLayerTar(), compression: "gzip", createdBy: "busybox" },
      { tar: bad, compression: "gzip", createdBy: `bad: ${kind}` },
    ],
    config: BUSYBOX_CONFIG,
  });
}
