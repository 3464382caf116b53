// A hostile front for a real registry (docker-registry behind it serves the real images): it
// rewrites what an attacker controls in a registry's answers, i.e. auth challenges (realms),
// redirects (file:, data:, another host over http), Content-Types, sizes, bodies (confused
// manifests, 100 MB tokens) and pace (a byte at a time, or nothing), and records every request
// with its Authorization, and how many body bytes it managed to send. Loopback only.
import http from "node:http";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

export type Rule = {
  /** Matched against the request path (no query). */
  path: RegExp;
  method?: string;
  /** Applies to the first `times` matching requests (default: all). */
  times?: number;
} & (
  | /** Rewrite the WWW-Authenticate header of the upstream's 401s. */ { kind: "challenge"; value: string }
  | /** Answer with a redirect to `location`. */ { kind: "redirect"; location: string; status?: number }
  | /** Forward, but with this Content-Type. */ { kind: "content-type"; value: string }
  | /** Answer with this body (and Content-Type; Content-Length unless `chunked`). */ {
      kind: "body";
      body: string | Uint8Array;
      contentType?: string;
      status?: number;
      chunked?: boolean;
    }
  | /** Forward, but send the body `bytes` at a time every `everyMs` (headers at once). */ { kind: "drip"; bytes: number; everyMs: number }
  | /** Answer 200 with `size` bytes of junk, streamed (Content-Length only if `declare`). */ {
      kind: "huge";
      size: number;
      declare?: boolean;
      contentType?: string;
    }
  | /** Forward, then append `extra` bytes (Content-Length raised to match, or dropped: chunked). */ {
      kind: "append";
      extra: Uint8Array;
      declare: boolean;
    }
  | /** Forward, but claim this Content-Length. */ { kind: "length"; value: number }
  | /** Accept the request and never answer. */ { kind: "silent" }
  | /** Forward, send `after` body bytes, then drop the connection. */ { kind: "cut"; after: number }
  | /** Forward without the Range header: a registry that cannot resume. */ { kind: "no-range" }
);

interface SeenRequest {
  method: string;
  path: string;
  query: string;
  authorization?: string;
  status: number;
  rule?: Rule["kind"];
  /** Body bytes the client accepted (written without the connection failing). */
  bytes: number;
}

export interface HostileServer {
  url: string;
  host: string;
  port: number;
  requests(): SeenRequest[];
  addRules(...rules: Rule[]): void;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "host", "te", "trailer"]);

function clean(h: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

/** Writes `chunk`, waiting for the client to take it; false once the client is gone. */
async function send(res: http.ServerResponse, chunk: Uint8Array): Promise<boolean> {
  if (res.destroyed) return false;
  if (res.write(chunk)) return true;
  await new Promise<void>((r) => {
    res.once("drain", () => r());
    res.once("close", () => r());
  });
  return !res.destroyed;
}

/**
 * Starts the front on `hostname` (127.0.0.1, or 127.0.0.2 to be "another host"). Without an
 * `upstream` it only answers what its rules say (404 otherwise): a token service or a blob host.
 */
export async function startHostile(opts: { upstream?: string; hostname?: string; rules?: Rule[] } = {}): Promise<HostileServer> {
  const upstream = opts.upstream ? new URL(opts.upstream) : undefined;
  const rules: Array<{ rule: Rule; used: number }> = (opts.rules ?? []).map((rule) => ({ rule, used: 0 }));
  const seen: SeenRequest[] = [];
  const agent = new http.Agent({ keepAlive: true });
  const sockets = new Set<import("node:net").Socket>();

  const take = (method: string, path: string, kinds?: Array<Rule["kind"]>): Rule | undefined => {
    for (const r of rules) {
      if (r.rule.times !== undefined && r.used >= r.rule.times) continue;
      if (r.rule.method && r.rule.method !== method) continue;
      if (kinds && !kinds.includes(r.rule.kind)) continue;
      if (!r.rule.path.test(path)) continue;
      r.used++;
      return r.rule;
    }
    return undefined;
  };

  const forward = (req: http.IncomingMessage, dropRange = false) =>
    new Promise<http.IncomingMessage>((resolve, reject) => {
      const headers = clean(req.headers);
      if (dropRange) delete headers.range;
      if (!upstream) return reject(new Error("no upstream"));
      const up = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...headers, host: upstream.host },
          agent,
        },
        resolve,
      );
      up.on("error", reject);
      req.pipe(up);
    });

  const server = http.createServer(async (req, res) => {
    const method = (req.method ?? "GET").toUpperCase();
    const u = new URL(req.url ?? "/", "http://x");
    const entry: SeenRequest = { method, path: u.pathname, query: u.search, status: 0, bytes: 0 };
    if (req.headers.authorization) entry.authorization = req.headers.authorization;
    seen.push(entry);
    const head = (status: number, headers: Record<string, string | string[]>) => {
      entry.status = status;
      res.writeHead(status, headers);
    };
    const rule = take(method, u.pathname);
    if (rule) entry.rule = rule.kind;
    try {
      switch (rule?.kind) {
        case "silent":
          req.resume();
          return; // the socket stays open until the client gives up or we stop
        case "redirect":
          req.resume();
          head(rule.status ?? 307, { location: rule.location, "content-length": "0" });
          res.end();
          return;
        case "body": {
          req.resume();
          const body = Buffer.from(rule.body);
          const headers: Record<string, string> = { "content-type": rule.contentType ?? "application/octet-stream" };
          if (!rule.chunked) headers["content-length"] = String(body.byteLength);
          head(rule.status ?? 200, headers);
          if (method !== "HEAD" && (await send(res, body))) entry.bytes = body.byteLength;
          res.end();
          return;
        }
        case "huge": {
          req.resume();
          const headers: Record<string, string> = { "content-type": rule.contentType ?? "application/json" };
          if (rule.declare) headers["content-length"] = String(rule.size);
          head(200, headers);
          const block = Buffer.alloc(64 * 1024, 0x20);
          while (entry.bytes < rule.size) {
            const n = Math.min(block.length, rule.size - entry.bytes);
            if (!(await send(res, block.subarray(0, n)))) return;
            entry.bytes += n;
          }
          res.end();
          return;
        }
      }
      const up = await forward(req, rule?.kind === "no-range");
      const headers = clean(up.headers);
      if (rule?.kind === "challenge" && up.statusCode === 401) headers["www-authenticate"] = rule.value;
      if (rule?.kind === "content-type") headers["content-type"] = rule.value;
      if (rule?.kind === "length") headers["content-length"] = String(rule.value);
      const chunks: Buffer[] = [];
      if (rule?.kind === "append") {
        for await (const c of up) chunks.push(Buffer.from(c as Buffer));
        chunks.push(Buffer.from(rule.extra));
        const total = chunks.reduce((n, c) => n + c.length, 0);
        if (rule.declare) headers["content-length"] = String(total);
        else delete headers["content-length"]; // chunked: the extra bytes reach the client
      }
      head(up.statusCode ?? 502, headers);
      if (method === "HEAD") {
        up.resume();
        res.end();
        return;
      }
      const body: AsyncIterable<Uint8Array> =
        rule?.kind === "append"
          ? (async function* () {
              yield* chunks;
            })()
          : up;
      for await (const raw of body) {
        const chunk = Buffer.from(raw);
        if (rule?.kind === "drip") {
          for (let off = 0; off < chunk.length; off += rule.bytes) {
            if (!(await send(res, chunk.subarray(off, off + rule.bytes)))) return;
            entry.bytes += Math.min(rule.bytes, chunk.length - off);
            await Bun.sleep(rule.everyMs);
          }
          continue;
        }
        if (rule?.kind === "cut" && entry.bytes + chunk.length >= rule.after) {
          const part = chunk.subarray(0, rule.after - entry.bytes);
          entry.bytes += part.length;
          // Flush what was promised so far, then drop: a declared length the client never gets.
          res.write(part, () => setTimeout(() => req.socket.destroy(), 10));
          if ("destroy" in body) (body as http.IncomingMessage).destroy();
          return;
        }
        if (!(await send(res, chunk))) {
          if ("destroy" in body) (body as http.IncomingMessage).destroy();
          return;
        }
        entry.bytes += chunk.length;
      }
      res.end();
    } catch (e) {
      if (!res.headersSent) {
        head(502, { "content-type": "text/plain" });
        res.end(`hostile front: ${String(e)}`);
      } else req.socket.destroy();
    }
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const hostname = opts.hostname ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, hostname, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const host = `${hostname}:${port}`;
  return {
    url: `http://${host}`,
    host,
    port,
    requests: () => seen.map((e) => ({ ...e })),
    addRules(...more) {
      for (const rule of more) rules.push({ rule, used: 0 });
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

/**
 * Everything under `dir` that a change would show: paths, types, modes, owners, sizes, link
 * targets and file contents (hashed). Compare one taken before with one taken after.
 */
export function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const p = rel ? join(dir, rel) : dir;
    const st = lstatSync(p);
    let extra = "";
    if (st.isSymbolicLink()) extra = `-> ${readlinkSync(p)}`;
    else if (st.isFile()) extra = createHash("sha256").update(readFileSync(p)).digest("hex");
    out.push(`${rel || "."} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? "" : st.size} ${st.mtimeMs} ${extra}`);
    if (st.isDirectory()) for (const name of readdirSync(p).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk("");
  return out;
}
