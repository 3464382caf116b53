// A Docker Registry HTTP API v2 / OCI distribution client on undici: the auth challenge
// (anonymous, Basic, Bearer tokens), manifests, and blobs streamed with retries and Range
// resume. Registries and their token services are untrusted: redirects and realms are
// followed only over http(s), credentials go only to the host they belong to (and never over
// plain http to a host not allowed it), every body is bounded while it streams, every
// download has a stall and a total deadline. Used by the pull worker and the extract workers.
// Over 400 lines on purpose: auth, redirects, retries and bounds share one request path, and
// each rule about credentials is easier to trust read next to every place a request is made.
import { request } from "undici";
import type { Credentials } from "./credentials.ts";
import { DigestMismatchError } from "./digest.ts";
import { MANIFEST_ACCEPT, manifestDigest } from "./manifest.ts";
import { DEFAULT_LIMITS, Transfer, discard, readBounded, stallMessage, type FetchLimits } from "./transfer.ts";
import { UcrError, errorOfKind } from "../errors.ts";

/** Everything a worker needs to talk to one repository; plain data, so it crosses threads. */
export interface RegistrySpec {
  /** Scheme and authority: "https://registry-1.docker.io", "http://127.0.0.1:5000". */
  base: string;
  /** The repository path on that registry: "library/alpine". */
  repository: string;
  credentials?: Credentials;
  /** --docker_insecure_registries: hosts that may receive credentials over plain http. */
  insecure?: readonly string[];
  limits?: FetchLimits;
}

/** What a registry answered instead of the image (`status`: its HTTP status, `code`: its error code). */
class RegistryError extends UcrError {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super("invalid", message);
  }
}

/** Raised when a resumed download cannot continue where it stopped (no Range support). */
export class RestartRequired extends errorOfKind("unavailable") {}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Uint8Array>;
  url: string;
}

/** Manifests past this are refused (distribution's own limit). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Image configs past this are refused. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
/** Token service answers past this are refused (real ones are a few KiB). */
const MAX_TOKEN_BYTES = 1024 * 1024;
/** Of an error body, only this much is read, for the message. */
const MAX_ERROR_BYTES = 64 * 1024;

const MAX_REDIRECTS = 5;
const RETRIES = 5;
const TRANSIENT = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

function retryDelay(attempt: number): number {
  return Math.min(4000, 200 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
}

function header(h: Reply["headers"], name: string): string | undefined {
  const value = h[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

function contentLength(h: Reply["headers"]): number | undefined {
  const text = header(h, "content-length");
  if (text === undefined || !/^\d{1,16}$/.test(text)) return undefined;
  return Number(text);
}

function isTransient(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e.code && TRANSIENT.has(e.code)) return true;
  return /socket|closed|reset|terminated|premature/i.test(e.message ?? "");
}

/** A URL for a message: no query (it may carry a signed token) and no user info. */
function shownUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** `Bearer realm="…",service="…",scope="…"` → scheme and parameters. */
function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const space = value.indexOf(" ");
  const scheme = (space < 0 ? value : value.slice(0, space)).trim().toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (const m of (space < 0 ? "" : value.slice(space + 1)).matchAll(re)) {
    params[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? "").replace(/\\(.)/g, "$1");
  }
  return { scheme, params };
}

function hostname(host: string): string {
  return host
    .replace(/:\d+$/, "")
    .replace(/^\[|\]$/g, "")
    .toLowerCase();
}

export class RegistryClient {
  private authorization: string | undefined;
  readonly host: string;
  private readonly base: URL;
  private readonly limits: FetchLimits;

  constructor(
    readonly spec: RegistrySpec,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => Bun.sleep(ms),
  ) {
    this.base = new URL(spec.base);
    this.host = this.base.host;
    this.limits = spec.limits ?? DEFAULT_LIMITS;
    if (spec.credentials?.registryToken) this.authorization = `Bearer ${spec.credentials.registryToken}`;
  }

  private where(): string {
    return `${this.host}/${this.spec.repository}`;
  }

  /**
   * May credentials meant for the registry go to `url`? Over https to any host the registry
   * names (its token service usually lives elsewhere, as auth.docker.io does); over plain
   * http only to the registry's own host name, or to a host listed as insecure.
   */
  private credentialsMayGoTo(url: URL): boolean {
    if (url.protocol === "https:") return true;
    if (url.protocol !== "http:") return false;
    if (hostname(url.host) === hostname(this.host) && this.base.protocol === "http:") return true;
    return (this.spec.insecure ?? []).some((h) => h.toLowerCase() === url.host.toLowerCase() || h.toLowerCase() === hostname(url.host));
  }

  /** Refuses a URL a registry sent us (realm, redirect) unless it is http(s). */
  private checkScheme(url: URL, role: string, what: string): void {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new RegistryError(
        `${what}: ${this.host} sent a ${role} with scheme '${url.protocol.replace(/:$/, "")}' ` +
          `(${url.protocol}${url.host ? `//${url.host}` : ""}…); ucr follows only http and https`,
      );
    }
  }

  /** One GET, following redirects by hand; Authorization only to the registry's own host and scheme. */
  private async get(url: string, headers: Record<string, string>, transfer: Transfer, what: string): Promise<Reply> {
    let current = new URL(url);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const h: Record<string, string> = { "user-agent": "ucr", ...headers };
      const sameOrigin = current.host === this.host && (current.protocol === this.base.protocol || current.protocol === "https:");
      if (this.authorization && sameOrigin) h.authorization = this.authorization;
      const res = await request(current, {
        method: "GET",
        headers: h,
        signal: transfer.signal,
        headersTimeout: this.limits.stallMs,
        bodyTimeout: this.limits.stallMs,
      });
      const reply: Reply = {
        status: res.statusCode,
        headers: res.headers as Reply["headers"],
        body: res.body as Reply["body"],
        url: current.href,
      };
      if ([301, 302, 303, 307, 308].includes(reply.status)) {
        const location = header(reply.headers, "location");
        await drain(reply);
        if (!location) throw new RegistryError(`${what}: redirect ${reply.status} without a Location`, reply.status);
        let next: URL;
        try {
          next = new URL(location, current);
        } catch {
          throw new RegistryError(`${what}: redirect ${reply.status} to an invalid location`, reply.status);
        }
        this.checkScheme(next, "redirect", what);
        current = next;
        continue;
      }
      return reply;
    }
    throw new RegistryError(`${what}: more than ${MAX_REDIRECTS} redirects for ${shownUrl(new URL(url))}`);
  }

  /** Turns a failed request into the error to report: the deadline's reason when it fired. */
  private failure(err: unknown, transfer: Transfer, what: string, doing: string): Error {
    if (err instanceof RegistryError) return err;
    if (transfer.why) return new RegistryError(`${what}: ${transfer.why}`);
    const code = (err as { code?: string }).code;
    if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
      return new RegistryError(`${what}: ${stallMessage(this.limits)}`);
    }
    return new RegistryError(`${what}: ${doing ? `${doing}: ` : ""}${(err as Error).message}`);
  }

  /**
   * GET with auth challenge handling and retries on 5xx, 429 and dropped connections.
   * Returns the final reply (any status but 401 after one authentication attempt).
   */
  private async send(path: string, headers: Record<string, string>, what: string, transfer: Transfer): Promise<Reply> {
    const url = `${this.spec.base}${path}`;
    let authenticated = false;
    for (let attempt = 0; ; attempt++) {
      let reply: Reply;
      try {
        reply = await this.get(url, headers, transfer, what);
      } catch (err) {
        if (err instanceof RegistryError || transfer.why) throw this.failure(err, transfer, what, "");
        if (attempt < RETRIES && isTransient(err)) {
          await this.pause(transfer, retryDelay(attempt));
          continue;
        }
        throw this.failure(err, transfer, what, `cannot reach ${this.spec.base}`);
      }
      if (reply.status === 401 && !authenticated) {
        const challenge = header(reply.headers, "www-authenticate");
        await drain(reply);
        await this.authenticate(challenge, what, transfer);
        authenticated = true;
        attempt--; // an auth round trip is not a failure
        continue;
      }
      if ((reply.status >= 500 || reply.status === 429) && attempt < RETRIES) {
        await drain(reply);
        await this.pause(transfer, retryDelay(attempt));
        continue;
      }
      return reply;
    }
  }

  private async pause(transfer: Transfer, ms: number): Promise<void> {
    transfer.pause();
    await this.sleep(ms);
    transfer.resume();
    transfer.throwIfAborted("", (m) => new RegistryError(m));
  }

  private async authenticate(challenge: string | undefined, what: string, transfer: Transfer): Promise<void> {
    const creds = this.spec.credentials;
    if (!challenge) throw new RegistryError(`${what}: ${this.host} answered 401 without a WWW-Authenticate challenge`, 401);
    const { scheme, params } = parseChallenge(challenge);
    const basic =
      creds?.username !== undefined ? `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ""}`).toString("base64")}` : undefined;
    if (scheme === "basic") {
      if (!basic) {
        throw new RegistryError(
          `${what}: ${this.host} requires a user name and password; add them for ${this.host} to --docker_config`,
          401,
        );
      }
      this.authorization = basic;
      return;
    }
    if (scheme !== "bearer") throw new RegistryError(`${what}: ${this.host} asks for unsupported authentication '${scheme}'`, 401);
    const realm = params.realm;
    if (!realm) throw new RegistryError(`${what}: ${this.host}'s Bearer challenge has no realm`, 401);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(realm);
    } catch {
      throw new RegistryError(`${what}: ${this.host}'s Bearer challenge has an invalid realm`, 401);
    }
    this.checkScheme(tokenUrl, "token realm", what);
    if (params.service) tokenUrl.searchParams.set("service", params.service);
    tokenUrl.searchParams.set("scope", params.scope ?? `repository:${this.spec.repository}:pull`);
    const headers: Record<string, string> = { "user-agent": "ucr", accept: "application/json" };
    const sendBasic = basic !== undefined && this.credentialsMayGoTo(tokenUrl);
    if (sendBasic) headers.authorization = basic;
    const service = shownUrl(tokenUrl);
    let res;
    try {
      res = await request(tokenUrl, {
        method: "GET",
        headers,
        signal: transfer.signal,
        headersTimeout: this.limits.stallMs,
        bodyTimeout: this.limits.stallMs,
      });
    } catch (err) {
      throw this.failure(err, transfer, what, `cannot reach the token service ${service}`);
    }
    let body: Buffer;
    try {
      body = await readBounded(
        res.body,
        MAX_TOKEN_BYTES,
        () => new RegistryError(`${what}: the token service ${service} answered with more than ${MAX_TOKEN_BYTES} bytes`, 401),
        transfer,
        contentLength(res.headers as Reply["headers"]),
      );
    } catch (err) {
      throw this.failure(err, transfer, what, `reading the token service ${service}`);
    }
    const text = body.toString("utf8");
    if (res.statusCode !== 200) {
      const withheld =
        basic !== undefined && !sendBasic
          ? `; the credentials for ${this.host} were not sent to it: it is another host over plain http ` +
            "(list it in --docker_insecure_registries to allow that)"
          : "";
      throw new RegistryError(
        `${what}: the token service ${service} refused ${sendBasic ? "the credentials from --docker_config" : "anonymous access"} ` +
          `(HTTP ${res.statusCode}${text ? `: ${text.slice(0, 200)}` : ""})${withheld}`,
        401,
      );
    }
    let token: string | undefined;
    try {
      const parsed = JSON.parse(text) as { token?: unknown; access_token?: unknown };
      token =
        typeof parsed.token === "string" && parsed.token
          ? parsed.token
          : typeof parsed.access_token === "string"
            ? parsed.access_token
            : undefined;
    } catch {
      // handled below
    }
    if (!token) throw new RegistryError(`${what}: the token service answered without a token or access_token`, 401);
    if (/[\r\n]/.test(token)) throw new RegistryError(`${what}: the token service answered with a token that is not one line`, 401);
    this.authorization = `Bearer ${token}`;
  }

  private async fail(reply: Reply, what: string): Promise<never> {
    const raw = await readBounded(reply.body, MAX_ERROR_BYTES, () => new Error("too big")).catch(() => Buffer.alloc(0));
    const text = raw.toString("utf8");
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
    throw new RegistryError(
      `${what}: unexpected HTTP ${reply.status} from ${this.host}${detail ? ` (${detail})` : ""}`,
      reply.status,
      code,
    );
  }

  /**
   * Fetches a manifest by tag or digest, bounded while it streams. Fetched by digest from a
   * descriptor, `expect.size` is enforced (no more, no fewer bytes) and the digest verified.
   */
  async manifest(
    reference: string,
    expect: { size?: number } = {},
  ): Promise<{ text: string; bytes: Buffer; mediaType: string; digest: string }> {
    const what = `manifest ${this.where()}:${reference}`;
    const transfer = new Transfer(this.limits);
    try {
      const reply = await this.send(`/v2/${this.spec.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, what, transfer);
      if (reply.status !== 200) return await this.fail(reply, what);
      const cap = expect.size !== undefined ? Math.min(expect.size, MAX_MANIFEST_BYTES) : MAX_MANIFEST_BYTES;
      if (expect.size !== undefined && expect.size > MAX_MANIFEST_BYTES) {
        throw new RegistryError(`${what}: its descriptor says ${expect.size} bytes, more than the ${MAX_MANIFEST_BYTES} bytes ucr reads`);
      }
      let bytes: Buffer;
      try {
        bytes = await readBounded(
          reply.body,
          cap,
          () =>
            new RegistryError(
              expect.size !== undefined
                ? `${what}: the registry sent more than the ${expect.size} bytes its descriptor says`
                : `${what}: manifest is larger than ${MAX_MANIFEST_BYTES / 1024 / 1024} MiB`,
            ),
          transfer,
          contentLength(reply.headers),
        );
      } catch (err) {
        throw this.failure(err, transfer, what, "reading it");
      }
      if (expect.size !== undefined && bytes.length !== expect.size) {
        throw new RegistryError(`${what}: the registry sent ${bytes.length} bytes; its descriptor says ${expect.size}`);
      }
      const mediaType = (header(reply.headers, "content-type") ?? "").split(";")[0]!.trim();
      const digest = manifestDigest(bytes, mediaType);
      if (reference.includes(":") && reference !== digest) throw new DigestMismatchError(what, reference, digest);
      return { text: bytes.toString("utf8"), bytes, mediaType, digest };
    } finally {
      transfer.done();
    }
  }

  /** A small blob (an image config), read whole, its size and digest verified. */
  async blobText(digest: string, size?: number): Promise<string> {
    const what = `blob ${this.where()}@${digest}`;
    if (size !== undefined && size > MAX_CONFIG_BYTES) {
      throw new RegistryError(`${what}: its descriptor says ${size} bytes, more than the ${MAX_CONFIG_BYTES} bytes ucr reads for a config`);
    }
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.blob(digest, size, MAX_CONFIG_BYTES)) chunks.push(chunk);
    const data = Buffer.concat(chunks);
    const actual = `sha256:${new Bun.CryptoHasher("sha256").update(data).digest("hex")}`;
    if (actual !== digest) throw new DigestMismatchError(what, digest, actual);
    return data.toString("utf8");
  }

  /**
   * Streams a blob. `size` (the descriptor's) is enforced while it streams: a registry that
   * sends more fails at the first byte too many, one that sends fewer is resumed and then
   * fails. A connection that drops mid-body is resumed with `Range: bytes=N-` (up to RETRIES
   * times); a registry that ignores Range makes this throw RestartRequired, since the bytes
   * already passed on cannot be taken back.
   */
  async *blob(digest: string, size?: number, max = Number.MAX_SAFE_INTEGER): AsyncGenerator<Uint8Array> {
    const what = `blob ${this.where()}@${digest}`;
    const known = size !== undefined && size > 0 ? size : undefined;
    let offset = 0;
    let total = known;
    let interruptions = 0;
    const transfer = new Transfer(this.limits);
    try {
      for (;;) {
        const headers: Record<string, string> = {};
        if (offset > 0) headers.range = `bytes=${offset}-`;
        const reply = await this.send(`/v2/${this.spec.repository}/blobs/${digest}`, headers, what, transfer);
        if (offset > 0 && reply.status === 200) {
          await drain(reply);
          throw new RestartRequired(`${what}: the registry does not resume downloads (it ignored Range)`);
        }
        if (reply.status !== 200 && reply.status !== 206) return await this.fail(reply, what);
        const length = contentLength(reply.headers);
        if (reply.status === 200 && length !== undefined) {
          if (known !== undefined && length !== known) {
            await drain(reply);
            throw new RegistryError(`${what}: the registry says ${length} bytes; its descriptor says ${known}`);
          }
          total ??= length;
        }
        if (total !== undefined && total > max) {
          await drain(reply);
          throw new RegistryError(`${what}: ${total} bytes, more than the ${max} bytes ucr reads for it`);
        }
        try {
          for await (const chunk of reply.body) {
            offset += chunk.byteLength;
            transfer.progress(chunk.byteLength);
            if (known !== undefined && offset > known) {
              throw new RegistryError(`${what}: the registry sent more than the ${known} bytes its descriptor says`);
            }
            if (offset > max) throw new RegistryError(`${what}: more than the ${max} bytes ucr reads for it`);
            yield chunk;
          }
        } catch (err) {
          if (err instanceof RegistryError || transfer.why) throw this.failure(err, transfer, what, "");
          if (!isTransient(err) || ++interruptions > RETRIES) {
            throw this.failure(err, transfer, what, `download failed after ${offset} bytes`);
          }
          await this.pause(transfer, retryDelay(interruptions));
          continue;
        }
        if (total !== undefined && offset < total) {
          if (++interruptions > RETRIES) {
            throw new RegistryError(`${what}: download stopped at ${offset} of ${total} bytes ${interruptions} times`);
          }
          await this.pause(transfer, retryDelay(interruptions));
          continue;
        }
        return;
      }
    } finally {
      transfer.done();
    }
  }
}

function drain(reply: Reply): Promise<void> {
  return discard(reply.body);
}

/**
 * Finds the base URL for a registry named in an image: https, falling back to http only
 * for loopback hosts or those listed in --docker_insecure_registries.
 */
export async function probeBase(host: string, allowHttp: boolean, limits: FetchLimits = DEFAULT_LIMITS): Promise<string> {
  const errors: string[] = [];
  for (const scheme of allowHttp ? ["https", "http"] : ["https"]) {
    const base = `${scheme}://${host}`;
    const transfer = new Transfer(limits);
    try {
      const res = await request(`${base}/v2/`, {
        method: "GET",
        headers: { "user-agent": "ucr" },
        signal: transfer.signal,
        headersTimeout: limits.stallMs,
        bodyTimeout: limits.stallMs,
      });
      await discard(res.body);
      return base;
    } catch (err) {
      errors.push(`${scheme}: ${transfer.why ?? (err as Error).message}`);
    } finally {
      transfer.done();
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
