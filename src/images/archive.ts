// `docker save` archives read in place: the tar's members are indexed by seeking from
// header to header (no unpacking to a temporary directory), and each layer is later read
// straight from its byte range. Three layouts: manifest.json (docker save, skopeo
// docker-archive:), OCI (index.json + blobs, Docker 25+), and the legacy one Mesos reads
// (repositories + <id>/json + <id>/layer.tar). (Over 400 lines: the three layouts share the
// index and the bounds, and read best side by side.)
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { sha256 } from "./digest.ts";
import { ManifestError, parseImageConfig, parseManifest, selectPlatform, type ImageConfig } from "./manifest.ts";
import { canonical, familiar, parseReference, type ImageReference } from "./reference.ts";
import { decodeHeader, parsePax } from "./tar/codec.ts";
import { MAX_SPECIAL_BYTES } from "./tar/reader.ts";
import { errorOfKind } from "../errors.ts";

class ArchiveError extends errorOfKind("invalid") {}

interface Member {
  offset: number;
  size: number;
  /** For a symlink member (skopeo writes `<id>/layer.tar -> ../<digest>.tar`): its target. */
  link?: string;
}

/** Reads tar headers only, seeking over data: name → byte range of its content. */
function indexTar(path: string): Map<string, Member> {
  const members = new Map<string, Member>();
  const fd = openSync(path, "r");
  const size = statSync(path).size;
  const block = Buffer.alloc(512);
  let pos = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let zeros = 0;
  /** A special member's data, refused by its declared size before it is read. */
  const special = (at: number, length: number, what: string): Buffer => {
    if (length > MAX_SPECIAL_BYTES) {
      throw new ArchiveError(`${path}: ${what} at byte ${at} is ${length} bytes, more than the ${MAX_SPECIAL_BYTES} bytes ucr reads`);
    }
    const data = Buffer.alloc(length);
    if (readSync(fd, data, 0, length, at) !== length) throw new ArchiveError(`${path}: truncated (${what} at byte ${at})`);
    return data;
  };
  try {
    while (pos + 512 <= size) {
      if (readSync(fd, block, 0, 512, pos) !== 512) break;
      let header;
      try {
        header = decodeHeader(block);
      } catch (err) {
        throw new ArchiveError(`${path}: not a tar archive (${(err as Error).message} at byte ${pos})`);
      }
      if (header === null) {
        if (++zeros === 2) break;
        pos += 512;
        continue;
      }
      zeros = 0;
      const dataOffset = pos + 512;
      const next = dataOffset + Math.ceil(header.size / 512) * 512;
      if (next > size + 1024) throw new ArchiveError(`${path}: truncated (member at byte ${pos} runs past the end)`);
      const type = header.type;
      if (type === "gnu-long-path") {
        longName = special(dataOffset, header.size, "a GNU long name").toString("latin1").replace(/\0+$/, "");
      } else if (type === "pax-header") {
        try {
          paxPath = parsePax(special(dataOffset, header.size, "a PAX header")).path;
        } catch (err) {
          throw new ArchiveError(`${path}: ${(err as Error).message} (at byte ${pos})`);
        }
      } else if (type !== "pax-global-header" && type !== "gnu-long-link-path") {
        // Member names are compared as text (manifest.json names them in UTF-8).
        let name = Buffer.from(longName ?? paxPath ?? header.name, "latin1").toString("utf8");
        longName = undefined;
        paxPath = undefined;
        name = name.replace(/^(\.\/)+/, "");
        if (type === "file" || type === "contiguous-file") {
          if (dataOffset + header.size > size) {
            throw new ArchiveError(`${path}: truncated: '${name}' needs ${header.size} bytes but the file ends first`);
          }
          members.set(name, { offset: dataOffset, size: header.size });
        }
        if (type === "symlink") members.set(name, { offset: 0, size: 0, link: Buffer.from(header.linkname, "latin1").toString("utf8") });
      }
      const headerOnly = ["link", "symlink", "character-device", "block-device", "directory", "fifo"];
      const dataSize = typeof type === "string" && headerOnly.includes(type) ? 0 : header.size;
      pos = dataOffset + Math.ceil(dataSize / 512) * 512;
    }
  } finally {
    closeSync(fd);
  }
  return members;
}

interface ArchiveLayer {
  member: string;
  offset: number;
  size: number;
  /** Digest the member's bytes must have, where the layout names it (OCI blobs). */
  expectDigest?: string;
  /** diff_id from the image config, where there is one. */
  expectDiffId?: string;
}

export interface ArchiveImage {
  format: "docker-save" | "oci" | "legacy";
  /** The tag that matched inside the archive (or the only image). */
  matched: string;
  configText: string;
  config: ImageConfig;
  layers: ArchiveLayer[];
}

const SaveManifestSchema = v.array(
  v.looseObject({
    Config: v.string(),
    RepoTags: v.optional(v.nullable(v.array(v.string())), []),
    Layers: v.array(v.string()),
  }),
);

class ArchiveReader {
  readonly members: Map<string, Member>;
  private readonly fd: number;

  constructor(readonly path: string) {
    this.members = indexTar(path);
    this.fd = openSync(path, "r");
  }

  close(): void {
    closeSync(this.fd);
  }

  has(name: string): boolean {
    return this.members.has(name);
  }

  member(name: string, why: string): Member {
    let current = name.replace(/^(\.\/)+/, "");
    for (let hops = 0; hops < 8; hops++) {
      const m = this.members.get(current);
      if (!m) break;
      if (m.link === undefined) return m;
      // Resolve the link relative to the member's directory, staying inside the archive.
      const parts = current.split("/").slice(0, -1);
      for (const p of m.link.split("/")) {
        if (p === "" || p === ".") continue;
        if (p === "..") parts.pop();
        else parts.push(p);
      }
      current = parts.join("/");
    }
    throw new ArchiveError(`${this.path}: ${why} '${name}' is missing from the archive`);
  }

  text(name: string, why: string, max = 16 * 1024 * 1024): string {
    const m = this.member(name, why);
    if (m.size > max) throw new ArchiveError(`${this.path}: ${why} '${name}' is larger than ${max} bytes`);
    const buf = Buffer.alloc(m.size);
    readSync(this.fd, buf, 0, m.size, m.offset);
    return buf.toString("utf8");
  }

  json(name: string, why: string): unknown {
    const text = this.text(name, why);
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ArchiveError(`${this.path}: ${why} '${name}' is not JSON: ${(err as Error).message}`);
    }
  }
}

/** Does a tag written in an archive name the image we want? */
function matches(tag: string, want: ImageReference): boolean {
  try {
    return canonical(parseReference(tag)) === canonical(want);
  } catch {
    return false;
  }
}

/**
 * Reads the image `want` from an archive. `fileMatched` says the archive's file name
 * matched the image name; only then may a single-image archive serve it whatever its tag.
 */
export function readArchive(path: string, want: ImageReference, fileMatched: boolean): ArchiveImage {
  const reader = new ArchiveReader(path);
  try {
    if (reader.has("manifest.json")) return fromSaveManifest(reader, want, fileMatched);
    if (reader.has("index.json")) return fromOciLayout(reader, want, fileMatched);
    if (reader.has("repositories")) return fromLegacy(reader, want, fileMatched);
    throw new ArchiveError(`${path}: not a docker save or OCI archive (no manifest.json, index.json or repositories)`);
  } finally {
    reader.close();
  }
}

function pick<T>(
  entries: T[],
  tagsOf: (e: T) => string[],
  want: ImageReference,
  fileMatched: boolean,
  path: string,
): { entry: T; matched: string } {
  for (const e of entries) {
    const tag = tagsOf(e).find((t) => matches(t, want));
    if (tag) return { entry: e, matched: tag };
  }
  if (entries.length === 1 && fileMatched) return { entry: entries[0]!, matched: tagsOf(entries[0]!)[0] ?? "(untagged)" };
  const tags = entries.flatMap(tagsOf);
  throw new ArchiveError(
    `${path}: holds no image tagged ${familiar(want)} (it has: ${tags.length ? tags.join(", ") : `${entries.length} untagged image(s)`})`,
  );
}

function fromSaveManifest(reader: ArchiveReader, want: ImageReference, fileMatched: boolean): ArchiveImage {
  const parsed = v.safeParse(SaveManifestSchema, reader.json("manifest.json", "the manifest"));
  if (!parsed.success) throw new ArchiveError(`${reader.path}: manifest.json is malformed: ${parsed.issues[0].message}`);
  const { entry, matched } = pick(parsed.output, (e) => e.RepoTags ?? [], want, fileMatched, reader.path);
  const configText = reader.text(entry.Config, "image config");
  const config = parseImageConfig(configText, `${reader.path}: ${entry.Config}`);
  const configDigest = blobDigest(entry.Config);
  if (configDigest && sha256(configText) !== configDigest) {
    throw new ArchiveError(`${reader.path}: config ${entry.Config} does not match its digest`);
  }
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== entry.Layers.length) {
    throw new ArchiveError(`${reader.path}: the config lists ${diffIds.length} diff_ids for ${entry.Layers.length} layers`);
  }
  const layers = entry.Layers.map((name, i) => {
    const m = reader.member(name, "layer");
    return { member: name, offset: m.offset, size: m.size, expectDigest: blobDigest(name), expectDiffId: diffIds[i] };
  });
  return { format: "docker-save", matched, configText, config, layers };
}

/** "blobs/sha256/<hex>" names its digest; "<hex>.json" (docker save) does too. */
function blobDigest(member: string): string | undefined {
  const m = /^(?:blobs\/sha256\/)([a-f0-9]{64})$/.exec(member) ?? /^([a-f0-9]{64})\.json$/.exec(member);
  return m ? `sha256:${m[1]}` : undefined;
}

function fromOciLayout(reader: ArchiveReader, want: ImageReference, fileMatched: boolean): ArchiveImage {
  const blob = (desc: { digest: string; size: number }, why: string) => {
    const hex = desc.digest.replace(/^sha256:/, "");
    const member = reader.member(`blobs/sha256/${hex}`, why);
    if (member.size !== desc.size) {
      throw new ArchiveError(`${reader.path}: ${why} ${desc.digest} is ${member.size} bytes; its descriptor says ${desc.size}`);
    }
    const text = reader.text(`blobs/sha256/${hex}`, why);
    if (sha256(Buffer.from(text, "utf8")) !== desc.digest) {
      throw new ArchiveError(`${reader.path}: ${why} ${desc.digest} does not match its digest`);
    }
    return text;
  };
  const indexText = reader.text("index.json", "the OCI index");
  let parsedIndex;
  try {
    parsedIndex = parseManifest(indexText, "application/vnd.oci.image.index.v1+json", `${reader.path}: index.json`);
  } catch (err) {
    throw new ArchiveError((err as Error).message);
  }
  if (parsedIndex.kind !== "index") throw new ArchiveError(`${reader.path}: index.json is not an OCI index`);
  const nameOf = (d: { annotations?: Record<string, string> }) => {
    const a = d.annotations ?? {};
    const full = a["io.containerd.image.name"];
    const ref = a["org.opencontainers.image.ref.name"];
    return [full, ref && !ref.includes("/") && !ref.includes(":") ? undefined : ref].filter((x): x is string => !!x);
  };
  const { entry, matched } = pick(parsedIndex.index.manifests, nameOf, want, fileMatched, reader.path);
  let desc = entry;
  let parsed: ReturnType<typeof parseManifest>;
  for (let depth = 0; ; depth++) {
    try {
      parsed = parseManifest(blob(desc, "manifest"), desc.mediaType, `${reader.path}: manifest ${desc.digest}`);
    } catch (err) {
      if (err instanceof ManifestError) throw new ArchiveError(err.message);
      throw err;
    }
    if (parsed.kind === "index" && depth < 2) {
      desc = selectPlatform(parsed.index, `${reader.path}: index ${desc.digest}`);
      continue;
    }
    break;
  }
  if (parsed.kind !== "image") throw new ArchiveError(`${reader.path}: manifest ${desc.digest} is not an image manifest`);
  const configText = blob(parsed.manifest.config, "image config");
  const config = parseImageConfig(configText, `${reader.path}: config`);
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== parsed.manifest.layers.length) {
    throw new ArchiveError(`${reader.path}: the config lists ${diffIds.length} diff_ids for ${parsed.manifest.layers.length} layers`);
  }
  const layers = parsed.manifest.layers.map((l, i) => {
    const member = `blobs/sha256/${l.digest.replace(/^sha256:/, "")}`;
    const m = reader.member(member, "layer");
    if (m.size !== l.size) throw new ArchiveError(`${reader.path}: layer ${l.digest} is ${m.size} bytes; its descriptor says ${l.size}`);
    return { member, offset: m.offset, size: m.size, expectDigest: l.digest, expectDiffId: diffIds[i] };
  });
  return { format: "oci", matched, configText, config, layers };
}

const LegacyJsonSchema = v.looseObject({
  id: v.optional(v.string()),
  parent: v.optional(v.nullable(v.string())),
  config: v.optional(v.nullable(v.looseObject({}))),
  container_config: v.optional(v.nullable(v.looseObject({}))),
  architecture: v.optional(v.string()),
  os: v.optional(v.string()),
  created: v.optional(v.string()),
});

function fromLegacy(reader: ArchiveReader, want: ImageReference, fileMatched: boolean): ArchiveImage {
  const repos = reader.json("repositories", "the repositories file");
  if (typeof repos !== "object" || repos === null) throw new ArchiveError(`${reader.path}: 'repositories' is not a JSON object`);
  const tagged: Array<{ tag: string; id: string }> = [];
  for (const [repo, tags] of Object.entries(repos as Record<string, unknown>)) {
    if (typeof tags !== "object" || tags === null) continue;
    for (const [tag, id] of Object.entries(tags as Record<string, unknown>)) {
      if (typeof id === "string") tagged.push({ tag: `${repo}:${tag}`, id });
    }
  }
  const { entry, matched } = pick(tagged, (e) => [e.tag], want, fileMatched, reader.path);
  const chain: Array<v.InferOutput<typeof LegacyJsonSchema>> = [];
  const ids: string[] = [];
  let id: string | null | undefined = entry.id;
  while (id) {
    const current: string = id;
    if (!/^[a-f0-9]{64}$/.test(current)) throw new ArchiveError(`${reader.path}: layer id '${id}' is malformed`);
    if (ids.includes(current)) throw new ArchiveError(`${reader.path}: layer ${id} is its own ancestor`);
    const layerJson = v.safeParse(LegacyJsonSchema, reader.json(`${current}/json`, "layer metadata"));
    if (!layerJson.success) throw new ArchiveError(`${reader.path}: ${current}/json is malformed: ${layerJson.issues[0].message}`);
    const parent: string | null | undefined = layerJson.output.parent;
    chain.push(layerJson.output);
    ids.push(current);
    id = parent;
  }
  ids.reverse();
  const top = chain[0]!;
  const configText = JSON.stringify({
    // Not defaulted: what the archive does not say is not checked against this machine.
    architecture: top.architecture,
    os: top.os,
    created: top.created,
    config: top.config ?? top.container_config ?? {},
    rootfs: { type: "layers", diff_ids: [] },
  });
  const layers = ids.map((layerId) => {
    const member = `${layerId}/layer.tar`;
    const m = reader.member(member, "layer");
    return { member, offset: m.offset, size: m.size };
  });
  return { format: "legacy", matched, configText, config: parseImageConfig(configText), layers };
}

/**
 * Archive file names to try for an image in a directory: the name as written (what Mesos
 * looks for), then the spellings an operator would naturally use.
 */
export function archiveCandidates(dir: string, ref: ImageReference): string[] {
  const names = new Set<string>([ref.original]);
  const short = familiar(ref);
  names.add(short);
  if (!ref.digest && (ref.tag ?? "latest") === "latest") names.add(short.replace(/:latest$/, ""));
  names.add(canonical(ref));
  if (ref.implicitLibrary) {
    names.add(`${ref.path}${ref.digest ? `@${ref.digest}` : `:${ref.tag}`}`);
    if (!ref.digest && ref.tag === "latest") names.add(ref.path);
  }
  return [...names].map((n) => join(dir, `${n}.tar`));
}

export function findArchive(dir: string, ref: ImageReference): string {
  const candidates = archiveCandidates(dir, ref);
  for (const c of candidates) if (existsSync(c)) return c;
  throw new ArchiveError(`Failed to find archive for image '${ref.original}' (tried ${candidates.join(", ")})`);
}

/** Every image name an archive carries (RepoTags, OCI name annotations, legacy repositories). */
export function archiveTags(path: string): string[] {
  const reader = new ArchiveReader(path);
  try {
    if (reader.has("manifest.json")) {
      const parsed = v.safeParse(SaveManifestSchema, reader.json("manifest.json", "the manifest"));
      if (!parsed.success) throw new ArchiveError(`${path}: manifest.json is malformed: ${parsed.issues[0].message}`);
      return parsed.output.flatMap((e) => e.RepoTags ?? []);
    }
    if (reader.has("index.json")) {
      const index = reader.json("index.json", "the OCI index") as { manifests?: Array<{ annotations?: Record<string, string> }> };
      return (index.manifests ?? []).flatMap((m) => {
        const a = m.annotations ?? {};
        const name = a["io.containerd.image.name"] ?? a["org.opencontainers.image.ref.name"];
        return name && (name.includes("/") || name.includes(":")) ? [name] : [];
      });
    }
    if (reader.has("repositories")) {
      const repos = reader.json("repositories", "the repositories file") as Record<string, Record<string, string>>;
      return Object.entries(repos).flatMap(([repo, tags]) => Object.keys(tags).map((t) => `${repo}:${t}`));
    }
    throw new ArchiveError(`${path}: not a docker save or OCI archive (no manifest.json, index.json or repositories)`);
  } finally {
    reader.close();
  }
}
