// A Docker Registry HTTP API v2 / OCI distribution client on undici: the auth challenge
// (anonymous, Basic, Bearer tokens), manifests, and blobs streamed with retries and Range
// resume. Redirects are followed by hand so the registry's Authorization never reaches
// another host. Used by the pull worker (manifests) and the extract workers (blobs).
import { request } from "undici";
import type { Credentials } from "./credentials.ts";
import { DigestMismatchError, sha256 } from "./digest.ts";
import { MANIFEST_ACCEPT, manifestDigest } from "./manifest.ts";

/** Everything a worker needs to talk to one repository; plain data, so it crosses threads. */
export interface RegistrySpec {
  /** Scheme and authority: "https://registry-1.docker.io", "http://127.0.0.1:5000". */
  base: string;
  /** The repository path on that registry: "library/alpine". */
  repository: string;
  credentials?: Credentials;
}

export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

/** Raised when a resumed download cannot continue where it stopped (no Range support). */
export class RestartRequired extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RestartRequired";
  }
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Uint8Array> & { text(): Promise<string>; dump?(): Promise<void> };
  url: string;
}

const MAX_REDIRECTS = 5;
const RETRIES = 5;
const TRANSIENT = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

export function retryDelay(attempt: number): number {
  return Math.min(4000, 200 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
}

function header(h: Reply["headers"], name: string): string | undefined {
  const value = h[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

function isTransient(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e.code && TRANSIENT.has(e.code)) return true;
  return /socket|closed|reset|terminated|premature/i.test(e.message ?? "");
}

/** `Bearer realm="…",service="…",scope="…"` → scheme and parameters. */
export function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const space = value.indexOf(" ");
  const scheme = (space < 0 ? value : value.slice(0, space)).trim().toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (const m of (space < 0 ? "" : value.slice(space + 1)).matchAll(re)) {
    params[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? "").replace(/\\(.)/g, "$1");
  }
  return { scheme, params };
}

export class RegistryClient {
  private authorization: string | undefined;
  readonly host: string;

  constructor(
    readonly spec: RegistrySpec,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => Bun.sleep(ms),
  ) {
    this.host = new URL(spec.base).host;
    if (spec.credentials?.registryToken) this.authorization = `Bearer ${spec.credentials.registryToken}`;
  }

  private where(): string {
    return `${this.host}/${this.spec.repository}`;
  }

  /** One GET, following redirects; Authorization only to the registry's own host. */
  private async get(url: string, headers: Record<string, string>): Promise<Reply> {
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const target = new URL(current);
      const h: Record<string, string> = { "user-agent": "ucr", ...headers };
      if (this.authorization && target.host === this.host) h.authorization = this.authorization;
      const res = await request(current, { method: "GET", headers: h });
      const reply: Reply = { status: res.statusCode, headers: res.headers as Reply["headers"], body: res.body as Reply["body"], url: current };
      if ([301, 302, 303, 307, 308].includes(reply.status)) {
        const location = header(reply.headers, "location");
        await drain(reply);
        if (!location) throw new RegistryError(`${this.where()}: redirect ${reply.status} without a Location`, reply.status);
        current = new URL(location, current).href;
        continue;
      }
      return reply;
    }
    throw new RegistryError(`${this.where()}: more than ${MAX_REDIRECTS} redirects for ${url}`);
  }

  /**
   * GET with auth challenge handling and retries on 5xx, 429 and dropped connections.
   * Returns the final reply (any status but 401 after one authentication attempt).
   */
  private async send(path: string, headers: Record<string, string>, what: string): Promise<Reply> {
    const url = `${this.spec.base}${path}`;
    let authenticated = false;
    for (let attempt = 0; ; attempt++) {
      let reply: Reply;
      try {
        reply = await this.get(url, headers);
      } catch (err) {
        if (err instanceof RegistryError) throw err;
        if (attempt < RETRIES && isTransient(err)) {
          await this.sleep(retryDelay(attempt));
          continue;
        }
        throw new RegistryError(`${what}: cannot reach ${this.spec.base}: ${(err as Error).message}`);
      }
      if (reply.status === 401 && !authenticated) {
        const challenge = header(reply.headers, "www-authenticate");
        await drain(reply);
        await this.authenticate(challenge, what);
        authenticated = true;
        attempt--; // an auth round trip is not a failure
        continue;
      }
      if ((reply.status >= 500 || reply.status === 429) && attempt < RETRIES) {
        await drain(reply);
        await this.sleep(retryDelay(attempt));
        continue;
      }
      return reply;
    }
  }

  private async authenticate(challenge: string | undefined, what: string): Promise<void> {
    const creds = this.spec.credentials;
    if (!challenge) throw new RegistryError(`${what}: ${this.host} answered 401 without a WWW-Authenticate challenge`, 401);
    const { scheme, params } = parseChallenge(challenge);
    const basic =
      creds?.username !== undefined ? `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ""}`).toString("base64")}` : undefined;
    if (scheme === "basic") {
      if (!basic) {
        throw new RegistryError(`${what}: ${this.host} requires a user name and password; add them for ${this.host} to --docker_config`, 401);
      }
      this.authorization = basic;
      return;
    }
    if (scheme !== "bearer") throw new RegistryError(`${what}: ${this.host} asks for unsupported authentication '${scheme}'`, 401);
    const realm = params.realm;
    if (!realm) throw new RegistryError(`${what}: ${this.host}'s Bearer challenge has no realm`, 401);
    const tokenUrl = new URL(realm);
    if (params.service) tokenUrl.searchParams.set("service", params.service);
    tokenUrl.searchParams.set("scope", params.scope ?? `repository:${this.spec.repository}:pull`);
    const headers: Record<string, string> = { "user-agent": "ucr", accept: "application/json" };
    if (basic) headers.authorization = basic;
    let res;
    try {
      res = await request(tokenUrl.href, { method: "GET", headers });
    } catch (err) {
      throw new RegistryError(`${what}: cannot reach the token service ${tokenUrl.origin}: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      throw new RegistryError(
        `${what}: the token service ${tokenUrl.origin} refused ${basic ? "the credentials from --docker_config" : "anonymous access"} (HTTP ${res.statusCode}${text ? `: ${text.slice(0, 200)}` : ""})`,
        401,
      );
    }
    let token: string | undefined;
    try {
      const body = JSON.parse(text) as { token?: unknown; access_token?: unknown };
      token = typeof body.token === "string" && body.token ? body.token : typeof body.access_token === "string" ? body.access_token : undefined;
    } catch {
      // handled below
    }
    if (!token) throw new RegistryError(`${what}: the token service answered without a token or access_token`, 401);
    this.authorization = `Bearer ${token}`;
  }

  private async fail(reply: Reply, what: string): Promise<never> {
    const text = await reply.body.text().catch(() => "");
    let detail = "";
    try {
      const errors = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors ?? [];
      if (errors[0]) detail = `${errors[0].code ?? ""}${errors[0].message ? `: ${errors[0].message}` : ""}`;
    } catch {
      detail = text.slice(0, 200);
    }
    const code = detail.split(":")[0];
    if (reply.status === 401 || reply.status === 403) {
      throw new RegistryError(
        `${what}: ${this.host} denied access (HTTP ${reply.status}${detail ? ` ${detail}` : ""})${this.spec.credentials ? "" : "; add credentials for it to --docker_config"}`,
        reply.status,
        code,
      );
    }
    if (reply.status === 404) throw new RegistryError(`${what}: not found on ${this.host} (${detail || "HTTP 404"})`, 404, code);
    throw new RegistryError(`${what}: unexpected HTTP ${reply.status} from ${this.host}${detail ? ` (${detail})` : ""}`, reply.status, code);
  }

  /** Fetches a manifest by tag or digest; verifies the digest when the reference is one. */
  async manifest(reference: string): Promise<{ text: string; mediaType: string; digest: string }> {
    const what = `manifest ${this.where()}:${reference}`;
    const reply = await this.send(`/v2/${this.spec.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, what);
    if (reply.status !== 200) return this.fail(reply, what);
    const text = await reply.body.text();
    if (text.length > 4 * 1024 * 1024) throw new RegistryError(`${what}: manifest is larger than 4 MiB`);
    const mediaType = (header(reply.headers, "content-type") ?? "").split(";")[0]!.trim();
    const digest = manifestDigest(text, mediaType);
    if (reference.includes(":") && reference !== digest) throw new DigestMismatchError(what, reference, digest);
    return { text, mediaType, digest };
  }

  /** A small blob (an image config), read whole and verified against its digest. */
  async blobText(digest: string, maxBytes = 16 * 1024 * 1024): Promise<string> {
    const what = `blob ${this.where()}@${digest}`;
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of this.blob(digest)) {
      size += chunk.byteLength;
      if (size > maxBytes) throw new RegistryError(`${what}: larger than ${maxBytes} bytes`);
      chunks.push(chunk);
    }
    const data = Buffer.concat(chunks);
    const actual = sha256(data);
    if (actual !== digest) throw new DigestMismatchError(what, digest, actual);
    return data.toString("utf8");
  }

  /**
   * Streams a blob. A connection that drops mid-body is resumed with `Range: bytes=N-`
   * (up to RETRIES times); a registry that ignores Range makes this throw RestartRequired,
   * since the bytes already passed on cannot be taken back.
   */
  async *blob(digest: string, expectedSize?: number): AsyncGenerator<Uint8Array> {
    const what = `blob ${this.where()}@${digest}`;
    let offset = 0;
    let total = expectedSize;
    let interruptions = 0;
    for (;;) {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const reply = await this.send(`/v2/${this.spec.repository}/blobs/${digest}`, headers, what);
      if (offset > 0 && reply.status === 200) {
        await drain(reply);
        throw new RestartRequired(`${what}: the registry does not resume downloads (it ignored Range)`);
      }
      if (reply.status !== 200 && reply.status !== 206) return this.fail(reply, what);
      if (total === undefined && reply.status === 200) {
        const len = Number(header(reply.headers, "content-length"));
        if (Number.isFinite(len) && len >= 0) total = len;
      }
      try {
        for await (const chunk of reply.body) {
          offset += chunk.byteLength;
          yield chunk;
        }
      } catch (err) {
        if (!isTransient(err) || ++interruptions > RETRIES) {
          throw new RegistryError(`${what}: download failed after ${offset} bytes: ${(err as Error).message}`);
        }
        await this.sleep(retryDelay(interruptions));
        continue;
      }
      if (total !== undefined && offset < total) {
        if (++interruptions > RETRIES) {
          throw new RegistryError(`${what}: download stopped at ${offset} of ${total} bytes ${interruptions} times`);
        }
        await this.sleep(retryDelay(interruptions));
        continue;
      }
      return;
    }
  }
}

async function drain(reply: Reply): Promise<void> {
  try {
    if (reply.body.dump) await reply.body.dump();
    else for await (const _ of reply.body) void _;
  } catch {
    // the body is not needed; a broken one is no reason to fail
  }
}

/**
 * Finds the base URL for a registry named in an image: https, falling back to http only
 * for loopback hosts or those listed in --docker_insecure_registries.
 */
export async function probeBase(host: string, allowHttp: boolean): Promise<string> {
  const errors: string[] = [];
  for (const scheme of allowHttp ? ["https", "http"] : ["https"]) {
    const base = `${scheme}://${host}`;
    try {
      const res = await request(`${base}/v2/`, { method: "GET", headers: { "user-agent": "ucr" } });
      await res.body.dump?.();
      return base;
    } catch (err) {
      errors.push(`${scheme}: ${(err as Error).message}`);
    }
  }
  throw new RegistryError(
    `cannot reach registry ${host} (${errors.join("; ")})${allowHttp ? "" : `; if it serves plain http, add it to --docker_insecure_registries`}`,
  );
}

export function isLoopbackHost(host: string): boolean {
  const name = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}
