// Runs a real Docker registry (distribution 2.8, /usr/bin/docker-registry) on a free loopback
// port, with no auth, htpasswd Basic auth, or Bearer tokens from a token server run here.
//
// The token server (like the proxy) lives in the test process: a client started with
// Bun.spawnSync blocks the event loop that must answer it, and hangs. Use Bun.spawn.
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./agent.ts";
import { waitForPort } from "./async.ts";

type RegistryAuth = "none" | "basic" | "token";

/**
 * distribution 2.8.2 stores and serves schema1 (signed) manifests only with
 * `compatibility: schema1: enabled: true`; without it a schema1 PUT answers 500 "manifest
 * schema v1 unsupported". With it, `skopeo copy --format v2s1` pushes work, so schema1 is
 * supported here (`startRegistry({ schema1: true })`).
 */
export const SCHEMA1_SUPPORTED = true;

export interface RegistryOptions {
  auth?: RegistryAuth;
  /** Accept schema1 manifest pushes (compatibility.schema1.enabled). */
  schema1?: boolean;
  /** Credentials for basic and token auth (default "ucr" / "s3cret-pass"). */
  user?: string;
  password?: string;
  /** Which JSON key(s) the token server puts the token in. */
  tokenField?: "token" | "access_token" | "both";
  /** Token lifetime in seconds (default 300); also sent as expires_in unless 0. */
  tokenExpiresIn?: number;
  /** Token server grants pull (only) without credentials (default: 401 without them). */
  anonymousPull?: boolean;
  /** Signature algorithm of the tokens (default ES256). */
  tokenAlg?: "ES256" | "RS256";
}

interface TokenRequest {
  method: string;
  service: string | null;
  scopes: string[];
  /** The Basic user, or null for an anonymous request. */
  user: string | null;
  status: number;
  granted: AccessEntry[];
}

interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

export interface Registry {
  /** "127.0.0.1:PORT", as an image reference's domain. */
  host: string;
  url: string;
  port: number;
  auth: RegistryAuth;
  user?: string;
  password?: string;
  /** "user:password" for skopeo --creds, when auth is on. */
  creds?: string;
  /** Root of the registry's filesystem storage. */
  storageDir: string;
  /** Token server (auth "token" only). */
  tokenUrl?: string;
  service?: string;
  issuer?: string;
  /** How many GET/POST /token requests the token server answered. */
  tokenRequests(): number;
  tokenLog(): TokenRequest[];
  /** Change the token response shape while running. */
  setTokenField(field: "token" | "access_token" | "both"): void;
  /** Where the registry keeps blob `digest` on disk. */
  blobFile(digest: string): string;
  /** Registry stdout+stderr so far (and the token server's errors). */
  log(): string;
  stop(): Promise<void>;
}

// Registries still running when the test process exits (a failed or killed test) would
// outlive it; kill them on the way out.
const live = new Set<{ kill(signal?: number | NodeJS.Signals): void }>();
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

const SERVICE = "ucr-test-registry";
const ISSUER = "ucr-test-token-issuer";

function b64url(data: Uint8Array | string): string {
  return Buffer.from(data).toString("base64url");
}

/**
 * The key id distribution looks up in its rootcertbundle (libtrust's KeyID): base32 of the
 * first 240 bits of sha256(DER SubjectPublicKeyInfo), in twelve colon-separated groups of 4.
 */
function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: "spki", format: "der" });
  const sum = createHash("sha256").update(der).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return (out.match(/.{4}/g) ?? []).join(":");
}

function openssl(args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
}

function parseScope(scope: string): AccessEntry | null {
  // type:name:actions, where the name itself may hold a colon (a host:port prefix).
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last === first) return null;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(",")
      .filter(Boolean),
  };
}

interface TokenServer {
  url: string;
  certFile: string;
  requests: TokenRequest[];
  errors: string[];
  setField(f: "token" | "access_token" | "both"): void;
  stop(): void;
}

function startTokenServer(dir: string, opts: Required<Pick<RegistryOptions, "user" | "password">> & RegistryOptions): TokenServer {
  const alg = opts.tokenAlg ?? "ES256";
  const keyFile = join(dir, "token.key");
  const certFile = join(dir, "token.crt");
  if (alg === "ES256") openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile]);
  else openssl(["genrsa", "-out", keyFile, "2048"]);
  openssl(["req", "-new", "-x509", "-key", keyFile, "-out", certFile, "-days", "3", "-subj", "/CN=ucr-test-token-signer"]);
  const key = createPrivateKey(readFileSync(keyFile));
  const kid = libtrustKeyId(createPublicKey(key));
  const expiresIn = opts.tokenExpiresIn ?? 300;
  let field = opts.tokenField ?? "both";
  const requests: TokenRequest[] = [];
  const errors: string[] = [];

  const mint = (user: string, access: AccessEntry[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg, kid };
    const claims = {
      iss: ISSUER,
      sub: user,
      aud: SERVICE,
      // Back-dated a little: the registry allows only a minute of clock skew on nbf.
      nbf: now - 10,
      iat: now - 10,
      exp: now + (expiresIn > 0 ? expiresIn : 300),
      jti: randomBytes(12).toString("hex"),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // JWS ES256 wants the raw r||s pair, not DER.
    const sig = sign("sha256", Buffer.from(input), alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key);
    return `${input}.${b64url(sig)}`;
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname !== "/token") return new Response("not found", { status: 404 });
      let scopes = url.searchParams.getAll("scope");
      let service = url.searchParams.get("service");
      let user: string | null = null;
      let password: string | null = null;
      const authz = req.headers.get("authorization") ?? "";
      if (/^basic /i.test(authz)) {
        const dec = Buffer.from(authz.slice(6), "base64").toString("utf8");
        const i = dec.indexOf(":");
        user = i < 0 ? dec : dec.slice(0, i);
        password = i < 0 ? "" : dec.slice(i + 1);
      }
      if (req.method === "POST") {
        // The OAuth2 form Docker clients use with a password grant.
        const form = new URLSearchParams(await req.text());
        if (form.get("grant_type") === "password") {
          user = form.get("username");
          password = form.get("password");
        }
        service = form.get("service") ?? service;
        const s = form.get("scope");
        if (s) scopes = [...scopes, ...s.split(" ")];
      } else if (req.method !== "GET") {
        return new Response("method not allowed", { status: 405 });
      }
      const record = (status: number, granted: AccessEntry[]) => {
        requests.push({ method: req.method, service, scopes, user, status, granted });
      };
      // Some clients send several scopes space-separated in one parameter.
      const wanted = scopes.flatMap((s) => s.split(" ")).filter(Boolean);
      if (user !== null && (user !== opts.user || password !== opts.password)) {
        record(401, []);
        return Response.json(
          { errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] },
          { status: 401, headers: { "WWW-Authenticate": 'Basic realm="ucr-test-token"' } },
        );
      }
      if (user === null && !opts.anonymousPull) {
        record(401, []);
        return Response.json(
          { errors: [{ code: "UNAUTHORIZED", message: "credentials required" }] },
          { status: 401, headers: { "WWW-Authenticate": 'Basic realm="ucr-test-token"' } },
        );
      }
      const allowed = user === null ? ["pull"] : ["pull", "push", "delete", "*"];
      const granted: AccessEntry[] = [];
      for (const s of wanted) {
        const a = parseScope(s);
        if (!a) continue;
        const actions = a.actions.filter((x) => allowed.includes(x));
        if (actions.length > 0) granted.push({ ...a, actions });
      }
      const token = mint(user ?? "", granted);
      record(200, granted);
      const body: Record<string, unknown> = { issued_at: new Date().toISOString() };
      if (field !== "access_token") body.token = token;
      if (field !== "token") body.access_token = token;
      if (expiresIn > 0) body.expires_in = expiresIn;
      return Response.json(body);
    },
    error(e) {
      errors.push(String(e));
      return new Response("token server error", { status: 500 });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/token`,
    certFile,
    requests,
    errors,
    setField(f) {
      field = f;
    },
    stop() {
      server.stop(true);
    },
  };
}

function yamlString(s: string): string {
  return JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const auth = opts.auth ?? "none";
  const user = opts.user ?? "ucr";
  const password = opts.password ?? "s3cret-pass";
  const dir = tempDir("ucr-registry-");
  const storageDir = join(dir, "storage");
  mkdirSync(storageDir);

  let token: TokenServer | undefined;
  const lines = [
    "version: 0.1",
    "log:",
    "  level: info",
    "  formatter: text",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${yamlString(storageDir)}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    // Port 0: the registry logs the port it got, so there is no race for a "free" port.
    "  addr: 127.0.0.1:0",
    `  secret: ${yamlString(randomBytes(16).toString("hex"))}`,
  ];
  if (auth === "basic") {
    const r = Bun.spawnSync(["htpasswd", "-Bbn", user, password], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`htpasswd: ${r.stderr.toString()}`);
    writeFileSync(join(dir, "htpasswd"), r.stdout);
    lines.push("auth:", "  htpasswd:", "    realm: ucr-test-registry", `    path: ${yamlString(join(dir, "htpasswd"))}`);
  } else if (auth === "token") {
    token = startTokenServer(dir, { ...opts, user, password });
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${yamlString(token.url)}`,
      `    service: ${yamlString(SERVICE)}`,
      `    issuer: ${yamlString(ISSUER)}`,
      `    rootcertbundle: ${yamlString(token.certFile)}`,
    );
  }
  if (opts.schema1) lines.push("compatibility:", "  schema1:", "    enabled: true");
  const configFile = join(dir, "config.yml");
  writeFileSync(configFile, `${lines.join("\n")}\n`);

  const proc = Bun.spawn(["/usr/bin/docker-registry", "serve", configFile], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
  });
  live.add(proc);
  let output = "";
  const decoder = new TextDecoder();
  const pump = (stream: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
    })();
  const pumps = Promise.all([pump(proc.stdout), pump(proc.stderr)]);

  const cleanup = async () => {
    if (proc.exitCode === null) proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await proc.exited;
    clearTimeout(timer);
    live.delete(proc);
    await pumps;
    token?.stop();
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 15_000;
  const port = await waitForPort(() => output, /listening on 127\.0\.0\.1:(\d+)/, proc, deadline);
  if (!port) {
    await cleanup();
    throw new Error(`docker-registry did not start (exit ${proc.exitCode}):\n${output}`);
  }
  const host = `127.0.0.1:${port}`;
  const url = `http://${host}`;
  // "listening" is logged just before Serve; make sure /v2/ answers before handing it out.
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${url}/v2/`);
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 401) break;
    } catch {
      await Bun.sleep(20);
    }
  }

  const withAuth = auth !== "none";
  return {
    host,
    url,
    port,
    auth,
    ...(withAuth ? { user, password, creds: `${user}:${password}` } : {}),
    storageDir,
    ...(token ? { tokenUrl: token.url, service: SERVICE, issuer: ISSUER } : {}),
    tokenRequests: () => token?.requests.length ?? 0,
    tokenLog: () => [...(token?.requests ?? [])],
    setTokenField(f) {
      if (!token) throw new Error("setTokenField: this registry has no token server");
      token.setField(f);
    },
    blobFile(digest) {
      const hex = digest.replace(/^sha256:/, "");
      return join(storageDir, "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
    },
    log: () => output + (token?.errors.length ? `\ntoken server errors:\n${token.errors.join("\n")}` : ""),
    stop: cleanup,
  };
}
