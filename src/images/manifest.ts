// Image manifests and configs as registries and archives carry them: Docker schema 1
// (signed or not), schema 2 and manifest lists, OCI manifests and indexes. Parsed with
// valibot; anything else is refused with the media type named.
import * as v from "valibot";
import { sha256 } from "./digest.ts";
import { validateDigest } from "./reference.ts";
import { errorOfKind } from "../errors.ts";

const MT = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
} as const;

/** What we ask registries for, best first. */
export const MANIFEST_ACCEPT = [
  MT.ociIndex,
  MT.dockerList,
  MT.ociManifest,
  MT.dockerManifest,
  MT.dockerSchema1Signed,
  MT.dockerSchema1,
].join(", ");

const LAYER_TYPES = new Set([
  "application/vnd.docker.image.rootfs.diff.tar.gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.oci.image.layer.v1.tar+gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
]);

export class ManifestError extends errorOfKind("invalid") {}

const Digest = v.pipe(
  v.string(),
  v.check((d) => validateDigest(d) === null, "must be a digest like sha256:<64 hex>"),
);

const DescriptorSchema = v.looseObject({
  mediaType: v.optional(v.string()),
  digest: Digest,
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
  urls: v.optional(v.array(v.string())),
  platform: v.optional(
    v.looseObject({
      architecture: v.string(),
      os: v.string(),
      variant: v.optional(v.string()),
    }),
  ),
  annotations: v.optional(v.record(v.string(), v.string())),
});
export type Descriptor = v.InferOutput<typeof DescriptorSchema>;

const ImageManifestSchema = v.looseObject({
  schemaVersion: v.literal(2),
  mediaType: v.optional(v.string()),
  config: DescriptorSchema,
  layers: v.array(DescriptorSchema),
});
type ImageManifest = v.InferOutput<typeof ImageManifestSchema>;

const IndexSchema = v.looseObject({
  schemaVersion: v.literal(2),
  mediaType: v.optional(v.string()),
  manifests: v.array(DescriptorSchema),
});
export type ImageIndex = v.InferOutput<typeof IndexSchema>;

const Schema1Schema = v.looseObject({
  schemaVersion: v.literal(1),
  name: v.optional(v.string()),
  tag: v.optional(v.string()),
  architecture: v.optional(v.string()),
  fsLayers: v.pipe(v.array(v.looseObject({ blobSum: Digest })), v.minLength(1, "must list at least one layer")),
  history: v.array(v.looseObject({ v1Compatibility: v.string() })),
  signatures: v.optional(v.array(v.looseObject({ protected: v.string() }))),
});

const V1CompatibilitySchema = v.looseObject({
  id: v.string(),
  parent: v.optional(v.string()),
  throwaway: v.optional(v.boolean()),
  config: v.optional(v.nullable(v.looseObject({}))),
  container_config: v.optional(v.nullable(v.looseObject({}))),
  architecture: v.optional(v.string()),
  os: v.optional(v.string()),
  created: v.optional(v.string()),
});

const StringList = v.optional(v.nullable(v.array(v.string())));

/** The parts of an image config (Docker/OCI) that ucr uses; everything else is kept as is. */
const ImageConfigSchema = v.looseObject({
  architecture: v.optional(v.string()),
  os: v.optional(v.string()),
  variant: v.optional(v.string()),
  created: v.optional(v.string()),
  config: v.optional(
    v.nullable(
      v.looseObject({
        Entrypoint: StringList,
        Cmd: StringList,
        Env: StringList,
        WorkingDir: v.optional(v.nullable(v.string())),
        User: v.optional(v.nullable(v.string())),
      }),
    ),
  ),
  rootfs: v.optional(
    v.looseObject({
      type: v.optional(v.string()),
      diff_ids: v.optional(v.array(Digest), []),
    }),
  ),
});
export type ImageConfig = v.InferOutput<typeof ImageConfigSchema>;

export type ParsedManifest =
  | { kind: "index"; mediaType: string; index: ImageIndex }
  | { kind: "image"; mediaType: string; manifest: ImageManifest }
  | { kind: "schema1"; mediaType: string; layers: Schema1Layer[]; config: ImageConfig; v1: unknown[] };

interface Schema1Layer {
  /** The compressed blob digest (fsLayers[].blobSum). */
  digest: string;
  /** The v1 layer id, kept so duplicates can be dropped as Mesos does. */
  v1Id: string;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ManifestError(`${what} is not JSON: ${(err as Error).message}`);
  }
}

function check<S extends v.GenericSchema>(schema: S, value: unknown, what: string): v.InferOutput<S> {
  const r = v.safeParse(schema, value);
  if (!r.success) {
    const issue = r.issues[0];
    const path = (issue.path ?? []).map((p) => String(p.key)).join(".");
    throw new ManifestError(`${what} is malformed${path ? ` at ${path}` : ""}: ${issue.message}`);
  }
  return r.output;
}

const GENERIC_TYPES = new Set(["", "application/json", "text/plain", "application/octet-stream"]);

/**
 * Parses a manifest. `contentType` is what the registry said; a generic one (application/json,
 * text/plain, absent) is resolved from the body as Docker does. After CVE-2021-41190 a document
 * must say one thing: one that is both an index and an image manifest, or whose `mediaType`
 * contradicts the Content-Type (or, fetched through an index, the descriptor), is refused.
 */
export function parseManifest(text: string, contentType: string | undefined, what = "manifest", expectMediaType?: string): ParsedManifest {
  const json = parseJson(text, what);
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ManifestError(`${what} is not a JSON object`);
  const obj = json as Record<string, unknown>;
  if (obj.mediaType !== undefined && typeof obj.mediaType !== "string") {
    throw new ManifestError(`${what} has a mediaType that is not a string`);
  }
  const bodyType = obj.mediaType as string | undefined;
  const index = "manifests" in obj;
  const image = "layers" in obj || "config" in obj;
  const schema1 = "fsLayers" in obj;
  if ([index, image, schema1].filter(Boolean).length > 1) {
    const parts = [
      index && "'manifests' (an index)",
      image && "'config'/'layers' (an image manifest)",
      schema1 && "'fsLayers' (schema 1)",
    ].filter(Boolean);
    throw new ManifestError(`${what} is ambiguous: it has ${parts.join(" and ")}; refused, as distribution does since CVE-2021-41190`);
  }
  let mt = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (!GENERIC_TYPES.has(mt) && bodyType !== undefined && bodyType !== mt) {
    throw new ManifestError(`${what}: its mediaType '${bodyType}' contradicts the Content-Type '${mt}' it was served with`);
  }
  if (GENERIC_TYPES.has(mt)) {
    if (obj.schemaVersion === 1) mt = MT.dockerSchema1;
    else if (bodyType !== undefined) mt = bodyType;
    else if (index) mt = MT.ociIndex;
    else if (image) mt = MT.ociManifest;
    else throw new ManifestError(`${what} has no media type and is not a known manifest shape`);
  }
  if (expectMediaType && !sameKind(expectMediaType, mt)) {
    throw new ManifestError(`${what}: its descriptor says '${expectMediaType}' but it is '${mt}'`);
  }
  switch (mt) {
    case MT.ociIndex:
    case MT.dockerList:
      if (!index) throw new ManifestError(`${what} is served as an index ('${mt}') but has no 'manifests'`);
      return { kind: "index", mediaType: mt, index: check(IndexSchema, obj, what) };
    case MT.ociManifest:
    case MT.dockerManifest: {
      if (!image) throw new ManifestError(`${what} is served as an image manifest ('${mt}') but has no 'config' or 'layers'`);
      const manifest = check(ImageManifestSchema, obj, what);
      const configType = manifest.config.mediaType ?? MT.ociConfig;
      if (configType !== MT.dockerConfig && configType !== MT.ociConfig) {
        throw new ManifestError(`${what} is not a container image: its config has media type '${configType}'`);
      }
      for (const layer of manifest.layers) {
        const lt = layer.mediaType ?? "application/vnd.oci.image.layer.v1.tar";
        if (!LAYER_TYPES.has(lt)) throw new ManifestError(`${what} has layer ${layer.digest} of unknown media type '${lt}'`);
      }
      return { kind: "image", mediaType: mt, manifest };
    }
    case MT.dockerSchema1:
    case MT.dockerSchema1Signed:
      if (!schema1) throw new ManifestError(`${what} is served as schema 1 ('${mt}') but has no 'fsLayers'`);
      return parseSchema1(obj, mt, what);
    default:
      throw new ManifestError(`${what} has unsupported media type '${mt}'`);
  }
}

/** Signed and unsigned schema 1 are one kind; every other type must match exactly. */
function sameKind(a: string, b: string): boolean {
  const s1 = (t: string) => t === MT.dockerSchema1 || t === MT.dockerSchema1Signed;
  return a === b || (s1(a) && s1(b));
}

/**
 * Schema 1: layers and v1 histories are listed child first. Reverse to base first and drop
 * duplicate v1 ids (reference 3.2); the runtime config is the leaf's `config`.
 */
function parseSchema1(obj: Record<string, unknown>, mt: string, what: string): ParsedManifest {
  const m = check(Schema1Schema, obj, what);
  if (m.history.length !== m.fsLayers.length) {
    throw new ManifestError(`${what} (schema 1) has ${m.fsLayers.length} layers but ${m.history.length} history entries`);
  }
  const v1 = m.history.map((h, i) =>
    check(V1CompatibilitySchema, parseJson(h.v1Compatibility, `${what} history[${i}]`), `${what} history[${i}]`),
  );
  const seen = new Set<string>();
  const layers: Schema1Layer[] = [];
  const v1BaseFirst: unknown[] = [];
  for (let i = m.fsLayers.length - 1; i >= 0; i--) {
    const id = v1[i]!.id;
    if (seen.has(id)) continue;
    seen.add(id);
    layers.push({ digest: m.fsLayers[i]!.blobSum, v1Id: id });
    v1BaseFirst.push(v1[i]);
  }
  const leaf = v1[0]!;
  const config = check(
    ImageConfigSchema,
    {
      architecture: leaf.architecture ?? m.architecture,
      os: leaf.os ?? "linux",
      created: leaf.created,
      config: leaf.config ?? leaf.container_config ?? {},
      rootfs: { type: "layers", diff_ids: [] },
    },
    `${what} leaf config`,
  );
  return { kind: "schema1", mediaType: mt, layers, config, v1: v1BaseFirst };
}

/**
 * The digest a registry gives a manifest. For a signed schema 1 manifest that is the
 * digest of the payload without the JWS signatures (the protected header says where the
 * payload ends and what its tail was).
 */
export function manifestDigest(bytes: Uint8Array, mediaType: string): string {
  if (mediaType !== MT.dockerSchema1Signed && mediaType !== MT.dockerSchema1) return sha256(bytes);
  let header: { formatLength?: unknown; formatTail?: unknown };
  try {
    const obj = JSON.parse(Buffer.from(bytes).toString("utf8")) as { signatures?: Array<{ protected?: unknown }> };
    const sig = obj.signatures?.[0];
    if (!sig || typeof sig.protected !== "string") return sha256(bytes);
    header = JSON.parse(Buffer.from(sig.protected, "base64url").toString("utf8")) as typeof header;
  } catch {
    return sha256(bytes); // not signed JSON: parsing it later says what is wrong
  }
  const length = header.formatLength;
  const lengthOk = typeof length === "number" && Number.isSafeInteger(length) && length >= 0 && length <= bytes.length;
  if (!lengthOk || typeof header.formatTail !== "string") {
    return sha256(bytes);
  }
  const payload = Buffer.concat([Buffer.from(bytes).subarray(0, length), Buffer.from(header.formatTail, "base64url")]);
  return sha256(payload);
}

export function parseImageConfig(text: string, what = "image config"): ImageConfig {
  return check(ImageConfigSchema, parseJson(text, what), what);
}

// --- platform ---------------------------------------------------------------------------

/** This machine as OCI names it: node's arch names differ from GOARCH. */
export function hostPlatform(): { os: string; architecture: string; variant?: string } {
  const arch: Record<string, string> = {
    x64: "amd64",
    arm64: "arm64",
    arm: "arm",
    ia32: "386",
    ppc64: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
  };
  const architecture = arch[process.arch] ?? process.arch;
  const variant = architecture === "arm64" ? "v8" : undefined;
  return { os: "linux", architecture, variant };
}

/**
 * Refuses an image built for another OS or architecture than this machine (what it does not
 * say is not checked): it would fail at exec, or run under emulation nobody asked for.
 */
export function checkPlatform(
  config: { os?: string; architecture?: string },
  what: string,
  allowForeign: boolean,
  want = hostPlatform(),
): void {
  if (allowForeign) return;
  const osOk = !config.os || config.os === want.os;
  const archOk = !config.architecture || config.architecture === want.architecture;
  if (osOk && archOk) return;
  throw new ManifestError(
    `${what} is built for ${config.os ?? "?"}/${config.architecture ?? "?"}, not for this machine (${want.os}/${want.architecture}); ` +
      "pull an image for this platform, or start ucr with --docker_allow_foreign_platform to run it anyway",
  );
}

/** Picks the manifest for linux on this architecture from an index, variant aware. */
export function selectPlatform(index: ImageIndex, what: string, want = hostPlatform()): Descriptor {
  const candidates = index.manifests.filter((m) => m.platform?.os === want.os && m.platform.architecture === want.architecture);
  const byVariant =
    candidates.find((m) => m.platform?.variant === want.variant) ??
    candidates.find((m) => m.platform?.variant === undefined || m.platform.variant === "") ??
    candidates[0];
  if (!byVariant) {
    const have = index.manifests
      .map((m) => (m.platform ? [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join("/") : "unknown"))
      .join(", ");
    throw new ManifestError(
      `${what} has no image for ${[want.os, want.architecture, want.variant].filter(Boolean).join("/")} (it has: ${have || "nothing"})`,
    );
  }
  return byVariant;
}
