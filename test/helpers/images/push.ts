// Pushing test images to registries: skopeo for images, plain HTTP for what skopeo cannot push (indexes).
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { tempDir } from "../agent.ts";
import { type Descriptor, foreignArch, MT, type Platform, runAsync } from "./basics.ts";
import { addImage, findManifest, loadImage, readBlob, sha256 } from "./layout.ts";
import { packTar } from "./bad-layers.ts";

export interface PushOptions {
  /** "user:password" */
  creds?: string;
  /**
   * oci keeps the layout's manifest (but skopeo gzips uncompressed layers, which changes
   * it: use `exact` to keep those); v2s2 and v2s1 convert (v2s1 needs a schema1 registry).
   */
  format?: "oci" | "v2s2" | "v2s1";
  /** The tag inside the layout (default: the only one). */
  srcTag?: string;
  /**
   * Push the layout's exact bytes over HTTP instead of with skopeo: plain-tar layers stay
   * plain, and corrupt images (wrong diff_id, truncated gzip) go up as they are.
   */
  exact?: boolean;
}

/** Push one image; returns the manifest digest the registry stored. */
export async function pushImage(layoutDir: string, ref: string, opts: PushOptions = {}): Promise<string> {
  const srcTag = opts.srcTag ?? findManifest(layoutDir).annotations?.["org.opencontainers.image.ref.name"] ?? "latest";
  if (opts.exact) {
    if (opts.format && opts.format !== "oci") throw new Error("pushImage: exact pushes the layout as it is (oci)");
    return pushExact(layoutDir, ref, srcTag, opts.creds);
  }
  const digestFile = join(tempDir("ucr-push-"), "digest");
  try {
    await runAsync([
      "skopeo",
      "--insecure-policy",
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      ...(opts.creds ? ["--dest-creds", opts.creds] : ["--dest-no-creds"]),
      ...(opts.format ? ["--format", opts.format] : []),
      "--digestfile",
      digestFile,
      `oci:${layoutDir}:${srcTag}`,
      `docker://${ref}`,
    ]);
    return readFileSync(digestFile, "utf8").trim();
  } finally {
    rmSync(dirname(digestFile), { recursive: true, force: true });
  }
}

/** Split "host:port/name:tag" (or "@sha256:...") into its parts. */
function parseRef(ref: string): { host: string; name: string; reference: string } {
  const slash = ref.indexOf("/");
  if (slash < 0) throw new Error(`reference ${ref} has no registry host`);
  const host = ref.slice(0, slash);
  let rest = ref.slice(slash + 1);
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon >= 0) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  return { host, name: rest, reference };
}

/**
 * A minimal Docker registry client: answers Basic and Bearer challenges with `creds` and
 * keeps the Authorization it got, so a run of requests costs one token round trip.
 */
class RegistryClient {
  private authorization: string | undefined;
  constructor(
    readonly base: string,
    readonly creds?: string,
    /** Scope asked for when a Bearer challenge names none (e.g. for /v2/). */
    readonly scope?: string,
  ) {}

  async fetch(pathOrUrl: string, init: RequestInit = {}): Promise<Response> {
    const url = pathOrUrl.startsWith("http") ? pathOrUrl : `${this.base}${pathOrUrl}`;
    // A streamed body cannot be sent twice; buffer it so a 401 can be retried.
    const body = init.body instanceof ReadableStream ? new Uint8Array(await new Response(init.body).arrayBuffer()) : init.body;
    const attempt = (authorization?: string) => {
      const headers = new Headers(init.headers);
      if (authorization) headers.set("Authorization", authorization);
      return fetch(url, { ...init, body, headers, redirect: "manual" });
    };
    const first = await attempt(this.authorization);
    if (first.status !== 401) return first;
    const challenge = first.headers.get("www-authenticate") ?? "";
    await first.arrayBuffer();
    const basic = this.creds ? `Basic ${Buffer.from(this.creds).toString("base64")}` : undefined;
    if (/^basic/i.test(challenge)) {
      this.authorization = basic;
    } else if (/^bearer/i.test(challenge)) {
      const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] ?? "", m[2] ?? ""]));
      const realm = new URL(params.realm ?? "");
      if (params.service) realm.searchParams.set("service", params.service);
      const scope = params.scope ?? this.scope;
      if (scope) for (const sc of scope.split(" ")) realm.searchParams.append("scope", sc);
      const tr = await fetch(realm, { headers: basic ? { Authorization: basic } : {} });
      if (!tr.ok) throw new Error(`token request ${realm} failed: ${tr.status} ${await tr.text()}`);
      const tj = (await tr.json()) as { token?: string; access_token?: string };
      this.authorization = `Bearer ${tj.token ?? tj.access_token ?? ""}`;
    } else {
      return first;
    }
    return attempt(this.authorization);
  }
}

/** One request with credentials, for tests that need a single call (see RegistryClient). */
export async function registryFetch(url: string, init: RequestInit & { creds?: string; scope?: string } = {}): Promise<Response> {
  const { creds, scope, ...rest } = init;
  return new RegistryClient(new URL(url).origin, creds, scope).fetch(url, rest);
}

async function pushExact(layoutDir: string, ref: string, srcTag: string, creds?: string): Promise<string> {
  const { host, name, reference } = parseRef(ref);
  // Ask for push on the first challenge so the token covers the whole upload.
  const client = new RegistryClient(`http://${host}`, creds, `repository:${name}:pull,push`);
  const desc = findManifest(layoutDir, srcTag);
  const manifestBytes = readBlob(layoutDir, desc.digest);
  let blobs: Descriptor[] = [];
  try {
    const m = JSON.parse(manifestBytes.toString("utf8")) as { config?: Descriptor; layers?: Descriptor[] };
    blobs = [...(m.config ? [m.config] : []), ...(m.layers ?? [])];
  } catch {
    // Not JSON: the registry will refuse the manifest, which is the caller's business.
  }
  for (const b of blobs) {
    const head = await client.fetch(`/v2/${name}/blobs/${b.digest}`, { method: "HEAD" });
    if (head.status === 200) continue;
    const start = await client.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
    await start.arrayBuffer();
    const location = start.headers.get("location");
    if (start.status !== 202 || !location) throw new Error(`blob upload start for ${name}: ${start.status}`);
    const put = new URL(location, `http://${host}`);
    put.searchParams.set("digest", b.digest);
    const data = readBlob(layoutDir, b.digest);
    const done = await client.fetch(put.toString(), {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(data.byteLength) },
      body: data,
    });
    if (done.status !== 201) throw new Error(`blob upload ${b.digest}: ${done.status} ${await done.text()}`);
  }
  const r = await client.fetch(`/v2/${name}/manifests/${reference}`, {
    method: "PUT",
    headers: { "Content-Type": desc.mediaType },
    body: manifestBytes,
  });
  if (r.status !== 201) throw new Error(`manifest PUT ${ref}: ${r.status} ${await r.text()}`);
  return r.headers.get("docker-content-digest") ?? desc.digest;
}

export interface PushIndexOptions {
  /** "127.0.0.1:PORT" */
  registry: string;
  /** Repository name, e.g. "multi". */
  name: string;
  tag: string;
  /** Layout holding the real image for this machine's architecture. */
  layoutDir: string;
  srcTag?: string;
  /** OCI image index (default) or Docker manifest list. */
  kind?: "oci" | "docker";
  creds?: string;
  /** Fake platforms to add (default: linux/<foreignArch()>); each gets a tiny stub image. */
  extraPlatforms?: Platform[];
}

export interface PushedIndex {
  digest: string;
  size: number;
  mediaType: string;
  body: string;
  /** The host-arch image's manifest digest, as listed in the index. */
  hostDigest: string;
  manifests: Descriptor[];
}

/**
 * A multi-platform index: each platform's image pushed under `<tag>-<arch>` (the registry
 * refuses an index that names manifests it does not have), then the index PUT by hand.
 */
export async function pushIndex(opts: PushIndexOptions): Promise<PushedIndex> {
  const kind = opts.kind ?? "oci";
  const format = kind === "oci" ? "oci" : "v2s2";
  const manifestType = kind === "oci" ? MT.ociManifest : MT.dockerManifest;
  const base = `/v2/${opts.name}`;
  const client = new RegistryClient(`http://${opts.registry}`, opts.creds, `repository:${opts.name}:pull,push`);
  const describe = async (digest: string, platform: Platform): Promise<Descriptor> => {
    const r = await client.fetch(`${base}/manifests/${digest}`, { headers: { Accept: manifestType } });
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (!r.ok) throw new Error(`GET manifest ${digest}: ${r.status}`);
    return { mediaType: manifestType, digest, size: bytes.byteLength, platform };
  };
  const src = loadImage(opts.layoutDir, opts.srcTag);
  const hostPlatform: Platform = { architecture: src.configJson.architecture, os: src.configJson.os };
  const hostDigest = await pushImage(opts.layoutDir, `${opts.registry}/${opts.name}:${opts.tag}-${hostPlatform.architecture}`, {
    creds: opts.creds,
    format,
    srcTag: src.tag,
  });
  const manifests: Descriptor[] = [await describe(hostDigest, hostPlatform)];
  const stubDir = tempDir("ucr-stub-");
  try {
    for (const p of opts.extraPlatforms ?? [{ architecture: foreignArch(), os: "linux" }]) {
      const stubTag = `${p.os}-${p.architecture}${p.variant ? `-${p.variant}` : ""}`;
      const tar = await packTar([{ name: "ARCH", content: `${p.architecture}\n` }]);
      addImage(stubDir, {
        tag: stubTag,
        layers: [{ tar, compression: "gzip", createdBy: "stub" }],
        config: { Cmd: ["/ARCH"] },
        architecture: p.architecture,
        os: p.os,
        ...(p.variant ? { variant: p.variant } : {}),
      });
      const d = await pushImage(stubDir, `${opts.registry}/${opts.name}:${opts.tag}-${stubTag}`, {
        creds: opts.creds,
        format,
        srcTag: stubTag,
      });
      manifests.push(await describe(d, p));
    }
  } finally {
    rmSync(stubDir, { recursive: true, force: true });
  }
  const mediaType = kind === "oci" ? MT.ociIndex : MT.dockerList;
  const body = JSON.stringify({ schemaVersion: 2, mediaType, manifests }, null, 2);
  const put = await client.fetch(`${base}/manifests/${opts.tag}`, {
    method: "PUT",
    headers: { "Content-Type": mediaType },
    body,
  });
  if (put.status !== 201) throw new Error(`PUT index: ${put.status} ${await put.text()}`);
  return { digest: sha256(body), size: Buffer.byteLength(body), mediaType, body, hostDigest, manifests };
}
