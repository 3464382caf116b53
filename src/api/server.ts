// The Operator API front door on Elysia: POST /api/v1 with Mesos' transport rules
// (reference section 1.1), authentication, GET /health and GET /version, one log line per
// request, and a drain on shutdown. Business logic lives in handlers.ts and below.
import { Elysia } from "elysia";
import type { Agent } from "../agent/agent.ts";
import { log } from "../log.ts";
import { versionInfo } from "../version.ts";
import { BasicAuthenticator } from "./auth.ts";
import { CallError, parseCall } from "./calls.ts";
import { dispatch } from "./handlers.ts";
import {
  ApiError,
  JSON_TYPE,
  PROTOBUF_TYPE,
  RECORDIO_TYPE,
  accepts,
  emptyResponse,
  jsonResponse,
  mediaType,
  readBody,
  textResponse,
} from "./http.ts";

/** Largest request body accepted on /api/v1. LAUNCH_CONTAINER bodies are a few KiB. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** How long a stopping agent lets requests in flight finish before it closes their connections. */
export const DRAIN_GRACE_MS = 10_000;

export interface ApiServer {
  readonly port: number;
  readonly hostname: string;
  /** Stop accepting, let in-flight requests finish (for at most `graceMs`), then resolve. */
  drain(graceMs?: number): Promise<void>;
}

/**
 * Elysia finds a request's path at the first '/' from index 11 of its URL, which assumes a
 * host of 4 characters or more after "http://": an agent reached by a short name (`ucr`, a
 * compose service; `a1`) answered 404 to everything. Such a request goes on with a longer,
 * equivalent origin; its Host header is left as the client sent it.
 */
function routable(request: Request): Request {
  const url = request.url;
  const pathAt = url.indexOf("/", url.indexOf("//") + 2);
  if (pathAt >= 11) return request;
  return new Request(`http://localhost${pathAt < 0 ? "/" : url.slice(pathAt)}`, request);
}

export function startApiServer(agent: Agent): ApiServer {
  const { ip, port, authenticate_http_readwrite, http_credentials } = agent.flags.values;
  const authenticator =
    authenticate_http_readwrite && http_credentials ? new BasicAuthenticator(http_credentials) : undefined;

  let inFlight = 0;
  let draining = false;
  let idle: (() => void) | undefined;

  /** Runs one request with logging, in-flight accounting and a last-resort 500. */
  async function served(request: Request, handle: (note: (callType: string) => void) => Promise<Response>): Promise<Response> {
    const started = performance.now();
    const url = new URL(request.url);
    let callType = "-";
    inFlight++;
    let response: Response;
    try {
      if (draining) {
        response = textResponse(503, "Agent is shutting down", { Connection: "close" });
      } else {
        response = await handle((t) => (callType = t));
      }
    } catch (err) {
      if (err instanceof ApiError) {
        response = textResponse(err.status, err.message, err.headers);
      } else {
        log.error(`${request.method} ${url.pathname} ${callType}: ${(err as Error).stack ?? err}`);
        response = textResponse(500, `Internal error: ${(err as Error).message}`);
      }
    } finally {
      inFlight--;
    }
    // A stopping agent closes each connection after its answer (WAITs it cut short included).
    if (draining) {
      try {
        response.headers.set("Connection", "close");
      } catch {
        // immutable headers: the connection closes with the server anyway
      }
    }
    const ms = (performance.now() - started).toFixed(1);
    const line = `${request.method} ${url.pathname} ${callType} ${response.status} ${ms}ms`;
    if (response.status >= 500) log.warn(line);
    else log.info(line);
    if (draining && inFlight === 0) idle?.();
    return response;
  }

  async function api(request: Request, note: (callType: string) => void): Promise<Response> {
    // libprocess authenticates before the endpoint's handler runs, so 401 comes first.
    if (authenticator && authenticator.authenticate(request.headers.get("authorization")) === null) {
      throw new ApiError(401, "Authentication required", BasicAuthenticator.challenge());
    }
    if (request.method !== "POST") {
      throw new ApiError(405, `Expecting a 'POST' request, received '${request.method}'`, { Allow: "POST" });
    }
    const contentTypeHeader = request.headers.get("content-type");
    if (contentTypeHeader === null) throw new ApiError(400, "Expecting 'Content-Type' to be present");
    const contentType = mediaType(contentTypeHeader);
    if (contentType === PROTOBUF_TYPE) {
      throw new ApiError(415, `Unsupported 'Content-Type' ${PROTOBUF_TYPE}: ucr speaks only ${JSON_TYPE}`);
    }
    if (contentType === RECORDIO_TYPE) {
      throw new ApiError(415, `Unsupported 'Content-Type' ${RECORDIO_TYPE}: ucr has no streaming calls yet`);
    }
    if (contentType !== JSON_TYPE) {
      throw new ApiError(415, `Expecting 'Content-Type' of ${JSON_TYPE}, got '${contentTypeHeader}'`);
    }
    if (request.headers.has("message-content-type")) {
      throw new ApiError(415, "Expecting 'Message-Content-Type' only with 'Content-Type: application/recordio'");
    }
    const accept = request.headers.get("accept");
    if (!accepts(accept, JSON_TYPE)) {
      throw new ApiError(406, `Expecting 'Accept' to allow ${JSON_TYPE}, got '${accept}': ucr answers only in JSON`);
    }
    if (request.headers.has("message-accept")) {
      throw new ApiError(406, "Expecting 'Message-Accept' only with a streaming 'Accept: application/recordio'");
    }

    const text = await readBody(request, MAX_BODY_BYTES);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new ApiError(400, `Failed to parse body into JSON: ${(err as Error).message}`);
    }
    let call;
    try {
      call = parseCall(body);
    } catch (err) {
      if (err instanceof CallError) throw new ApiError(400, `Failed to validate agent::Call: ${err.message}`);
      throw err;
    }
    note(call.type);
    return dispatch(call.type, call.payload, agent);
  }

  function getOnly(request: Request, respond: () => Response): Response {
    if (request.method !== "GET" && request.method !== "HEAD") {
      throw new ApiError(405, `Expecting a 'GET' request, received '${request.method}'`, { Allow: "GET, HEAD" });
    }
    return respond();
  }

  const app = new Elysia()
    .all("/api/v1", ({ request }) => served(request, (note) => api(request, note)), { parse: "none" })
    .all("/slave(1)/api/v1", ({ request }) => served(request, (note) => api(request, note)), { parse: "none" })
    .all("/health", ({ request }) => served(request, async () => getOnly(request, () => emptyResponse(200))), {
      parse: "none",
    })
    .all("/version", ({ request }) => served(request, async () => getOnly(request, () => jsonResponse(versionInfo()))), {
      parse: "none",
    })
    .onError(({ code, request }) => {
      if (code === "NOT_FOUND") {
        return served(request, async () => textResponse(404, `No endpoint at ${new URL(request.url).pathname}`));
      }
      return undefined;
    });
  // Bun's server directly (not Elysia's listen), so every request passes routable() first.
  const server = Bun.serve({ hostname: ip, port, fetch: (request) => app.handle(routable(request)) });
  return {
    port: server.port!,
    hostname: ip,
    async drain(graceMs = DRAIN_GRACE_MS) {
      draining = true;
      const quiet = inFlight > 0 ? new Promise<void>((resolve) => (idle = resolve)) : Promise.resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)));
      const timedOut = await Promise.race([Promise.all([server.stop(false), quiet]).then(() => false), late]);
      clearTimeout(timer);
      if (timedOut) {
        log.warn(`agent stopping: ${inFlight} request(s) still in flight after ${graceMs}ms; closing their connections`);
        await server.stop(true);
      }
    },
  };
}
