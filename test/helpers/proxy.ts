// A recording HTTP proxy in front of a test registry, with injected faults (error statuses,
// connections cut mid-body, flipped bytes, replaced bodies) and blob redirects to a 2nd host.
//
// Built on node:http rather than Bun.serve: Bun.serve sends a streamed body chunked and drops
// the Content-Length we set, so a client would never see the registry's real framing, and a
// response cannot be cut short after a declared length. node:http (in Bun) keeps both.
import { createReadStream, existsSync, statSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import type { Readable } from "node:stream";

interface FaultBase {
  /** Matched against the request path (no query). */
  path: RegExp;
  /** Only requests with this method (default: any). */
  method?: string;
  /** Applies to the first `times` matching requests, then never again. */
  times: number;
}

export type Fault = FaultBase &
  (
    | { kind: "status"; status: number; body?: string; headers?: Record<string, string> }
    /** Forward, send the headers (full Content-Length), then cut the connection after N body bytes. */
    | { kind: "truncate"; afterBytes: number }
    /** Forward, with the body byte at `offset` inverted. */
    | { kind: "corrupt"; offset: number }
    /** Do not forward; answer with this body (and status/headers) instead. */
    | { kind: "body"; body: string | Uint8Array; status?: number; headers?: Record<string, string> }
    /** Wait before forwarding. */
    | { kind: "delay"; ms: number }
    /** Forward, sending the body at most this fast (a slow link: a pull that takes a while). */
    | { kind: "throttle"; bytesPerSecond: number }
    /** Close the connection without any response. */
    | { kind: "reset" }
  );

interface ProxyRequest {
  method: string;
  path: string;
  query: string;
  /** Status sent (0 if the connection was reset before any). */
  status: number;
  range?: string;
  authorization: boolean;
  /** The fault applied to this request, if any. */
  fault?: Fault["kind"];
  /** Where a blob GET was redirected. */
  location?: string;
  /** Body bytes sent to the client. */
  bytes: number;
}

export interface ProxyOptions {
  /** Answer blob GETs (not HEADs) with 307 to the same path and query on this proxy (a second host). */
  redirectBlobsTo?: ProxyServer | string;
  /**
   * Serve blob GET/HEAD from this registry storage root (Registry.storageDir) without
   * forwarding or checking credentials, like a pre-signed storage URL: the redirect target
   * for a registry with auth, which would refuse a client that rightly drops Authorization.
   */
  blobRoot?: string;
  /** Status of the blob redirects (default 307). */
  redirectStatus?: 301 | 302 | 303 | 307 | 308;
}

export interface ProxyServer {
  url: string;
  host: string;
  port: number;
  target: string;
  requests(): ProxyRequest[];
  /** Requests whose path matches (and method, if given). */
  count(path: RegExp, method?: string): number;
  /** Forget the requests recorded so far. */
  clear(): void;
  /** Add faults while running. */
  addFaults(...faults: Fault[]): void;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

const BLOB_PATH = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/;

function cleanHeaders(h: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

interface Upstream {
  status: number;
  headers: Record<string, string | string[]>;
  body: Readable | null;
}

export async function startProxy(target: string, faults: Fault[] = [], opts: ProxyOptions = {}): Promise<ProxyServer> {
  const targetUrl = new URL(target);
  const targetOrigin = targetUrl.origin;
  const log: ProxyRequest[] = [];
  const active: Array<{ fault: Fault; used: number }> = faults.map((f) => ({ fault: f, used: 0 }));
  const agent = new http.Agent({ keepAlive: true });
  let origin = "";

  const takeFault = (method: string, path: string): Fault | undefined => {
    for (const a of active) {
      if (a.used >= a.fault.times) continue;
      if (a.fault.method && a.fault.method.toUpperCase() !== method) continue;
      if (!a.fault.path.test(path)) continue;
      a.used++;
      return a.fault;
    }
    return undefined;
  };

  const forward = (req: http.IncomingMessage): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const up = http.request(
        {
          host: targetUrl.hostname,
          port: targetUrl.port,
          method: req.method,
          path: req.url,
          headers: { ...cleanHeaders(req.headers), host: targetUrl.host },
          agent,
        },
        (res) => {
          const headers = cleanHeaders(res.headers);
          const loc = headers.location;
          // Keep the client on the proxy when the registry names itself (upload URLs).
          if (typeof loc === "string" && loc.startsWith(targetOrigin)) {
            headers.location = origin + loc.slice(targetOrigin.length);
          }
          if (req.method === "HEAD") res.resume();
          resolve({ status: res.statusCode ?? 502, headers, body: req.method === "HEAD" ? null : res });
        },
      );
      up.on("error", reject);
      req.pipe(up);
    });

  /** A blob straight from registry storage, with single-range support. */
  const fromBlobRoot = (req: http.IncomingMessage, digest: string): Upstream => {
    const hex = digest.slice("sha256:".length);
    const file = join(opts.blobRoot ?? "", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
    req.resume();
    if (!existsSync(file)) {
      return { status: 404, headers: { "content-type": "text/plain" }, body: null };
    }
    const size = statSync(file).size;
    const base = {
      "content-type": "application/octet-stream",
      "docker-content-digest": digest,
      "accept-ranges": "bytes",
      etag: `"${digest}"`,
    };
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    if (m && (m[1] || m[2])) {
      let start = m[1] ? Number(m[1]) : size - Number(m[2]);
      let end = m[1] ? (m[2] ? Math.min(Number(m[2]), size - 1) : size - 1) : size - 1;
      start = Math.max(0, start);
      if (start >= size || start > end) {
        return { status: 416, headers: { ...base, "content-range": `bytes */${size}`, "content-length": "0" }, body: null };
      }
      end = Math.min(end, size - 1);
      return {
        status: 206,
        headers: { ...base, "content-range": `bytes ${start}-${end}/${size}`, "content-length": String(end - start + 1) },
        body: req.method === "HEAD" ? null : createReadStream(file, { start, end }),
      };
    }
    return {
      status: 200,
      headers: { ...base, "content-length": String(size) },
      body: req.method === "HEAD" ? null : createReadStream(file),
    };
  };

  const server = http.createServer(async (req, res) => {
    const method = (req.method ?? "GET").toUpperCase();
    const u = new URL(req.url ?? "/", "http://proxy");
    const entry: ProxyRequest = {
      method,
      path: u.pathname,
      query: u.search,
      status: 0,
      authorization: req.headers.authorization !== undefined,
      bytes: 0,
    };
    if (req.headers.range) entry.range = req.headers.range;
    log.push(entry);
    const writeHead = (status: number, headers: Record<string, string | string[]>) => {
      entry.status = status;
      res.writeHead(status, headers);
    };

    const fault = takeFault(method, u.pathname);
    if (fault) entry.fault = fault.kind;
    try {
      if (fault?.kind === "reset") {
        req.resume();
        req.socket.destroy();
        return;
      }
      if (fault?.kind === "delay") await Bun.sleep(fault.ms);
      if (fault?.kind === "status") {
        req.resume();
        const body = fault.body ?? JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected fault" }] });
        writeHead(fault.status, { "content-type": "application/json", ...(fault.headers ?? {}) });
        entry.bytes = Buffer.byteLength(body);
        res.end(body);
        return;
      }
      if (fault?.kind === "body") {
        req.resume();
        const body = Buffer.from(fault.body);
        writeHead(fault.status ?? 200, { "content-length": String(body.byteLength), ...(fault.headers ?? {}) });
        entry.bytes = body.byteLength;
        res.end(method === "HEAD" ? undefined : body);
        return;
      }
      const blob = BLOB_PATH.exec(u.pathname);
      if (blob && method === "GET" && opts.redirectBlobsTo) {
        req.resume();
        const to = typeof opts.redirectBlobsTo === "string" ? opts.redirectBlobsTo : opts.redirectBlobsTo.url;
        entry.location = `${to}${u.pathname}${u.search}`;
        writeHead(opts.redirectStatus ?? 307, { location: entry.location, "content-length": "0" });
        res.end();
        return;
      }
      const up = blob && opts.blobRoot && (method === "GET" || method === "HEAD") ? fromBlobRoot(req, blob[1] ?? "") : await forward(req);
      writeHead(up.status, up.headers);
      if (!up.body) {
        res.end();
        return;
      }
      const cutAt = fault?.kind === "truncate" ? fault.afterBytes : Number.POSITIVE_INFINITY;
      const flipAt = fault?.kind === "corrupt" ? fault.offset : -1;
      let sent = 0;
      for await (const raw of up.body) {
        let chunk = Buffer.from(raw as Buffer);
        if (flipAt >= sent && flipAt < sent + chunk.byteLength) {
          chunk = Buffer.from(chunk); // never write into the upstream's buffer
          chunk[flipAt - sent] = (chunk[flipAt - sent] ?? 0) ^ 0xff;
        }
        if (sent + chunk.byteLength >= cutAt) {
          const part = chunk.subarray(0, cutAt - sent);
          entry.bytes = sent + part.byteLength;
          up.body.destroy();
          // Flush what was promised so far, then drop the connection: the client sees a
          // declared Content-Length it never gets, as when a connection resets mid-download.
          res.write(part, () => setTimeout(() => req.socket.destroy(), 10));
          return;
        }
        if (fault?.kind === "throttle") {
          // Tenths of a second's worth at a time, so the client sees a steady trickle.
          const slice = Math.max(1, Math.floor(fault.bytesPerSecond / 10));
          for (let off = 0; off < chunk.byteLength && !res.destroyed; off += slice) {
            const piece = chunk.subarray(off, off + slice);
            res.write(piece);
            sent += piece.byteLength;
            entry.bytes = sent;
            await Bun.sleep(100);
          }
          if (res.destroyed) {
            up.body.destroy();
            return;
          }
          continue;
        }
        sent += chunk.byteLength;
        entry.bytes = sent;
        if (!res.write(chunk)) {
          // A client that hangs up never drains; stop reading the registry then.
          await new Promise<void>((r) => {
            res.once("drain", () => r());
            res.once("close", () => r());
          });
          if (res.destroyed) {
            up.body.destroy();
            return;
          }
        }
      }
      res.end();
    } catch (e) {
      if (!res.headersSent) {
        writeHead(502, { "content-type": "text/plain" });
        res.end(`proxy: ${String(e)}`);
      } else {
        req.socket.destroy();
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const host = `127.0.0.1:${port}`;
  origin = `http://${host}`;
  return {
    url: origin,
    host,
    port,
    target: targetOrigin,
    requests: () => log.map((e) => ({ ...e })),
    count: (path, method) => log.filter((e) => path.test(e.path) && (!method || e.method === method.toUpperCase())).length,
    clear() {
      log.length = 0;
    },
    addFaults(...more) {
      for (const f of more) active.push({ fault: f, used: 0 });
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive connections would hold close() open until they time out.
        server.closeAllConnections?.();
      });
      agent.destroy();
    },
  };
}
