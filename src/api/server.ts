// The Operator API front door on Elysia: POST /api/v1 with Mesos' transport rules
// (reference section 1.1; the encodings in wire.ts), authentication, GET /health and GET
// /version, ucr's /images endpoints, one log line per request, and a drain on shutdown.
// Business logic lives in handlers.ts, images.ts and below.
import { Elysia } from "elysia";
import type { Flags } from "../config/flags.ts";
import { log } from "../log.ts";
import { versionInfo } from "../version.ts";
import { BasicAuthenticator } from "./auth.ts";
import { CallError, parseCall } from "../mesos/calls.ts";
import { dispatch } from "./handlers.ts";
import { ApiError, emptyResponse, jsonResponse, lastValue, parseJsonBody, readBodyBytes, reasonOf, textResponse } from "./http.ts";
import { failureOf } from "./status.ts";
import { Answer, answerResponse, checkStreaming, decodeCall, firstRecord, negotiate } from "./wire.ts";
import { listImages, pullImage } from "./images.ts";
import type { AgentServices } from "./services.ts";
import { idKey } from "../agent/container.ts";
import type { ContainerID } from "../mesos/messages.ts";
import { closeStreams } from "./streams.ts";

/** Largest request body accepted on /api/v1. LAUNCH_CONTAINER bodies are a few KiB. */
const MAX_BODY_BYTES = 1024 * 1024;

/** How long a stopping agent lets requests in flight finish before it closes their connections. */
const DRAIN_GRACE_MS = 10_000;

/** Tells the request's log line what call it was, and on which container. */
type Note = (callType: string, container?: string) => void;

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

/** Where to listen and whom to let in (the agent's flags of those names). */
export type ListenOptions = Pick<Flags, "ip" | "port" | "authenticate_http_readwrite" | "http_credentials">;

export function startApiServer(agent: AgentServices, listen: ListenOptions): ApiServer {
  const { ip, port, authenticate_http_readwrite, http_credentials } = listen;
  const authenticator = authenticate_http_readwrite && http_credentials ? new BasicAuthenticator(http_credentials) : undefined;

  // Bun closes a connection that is idle for 10 s (its idleTimeout), which also cut every call
  // whose answer takes longer: a WAIT_CONTAINER, a LAUNCH_CONTAINER that pulls. The timeout
  // stays while a request is read; once its call is parsed, it is lifted for that request.
  const liftTimeout = new WeakMap<Request, () => void>();

  let inFlight = 0;
  let draining = false;
  let idle: (() => void) | undefined;

  /**
   * Runs one request with in-flight accounting, the one mapping of errors to statuses
   * (status.ts), and one log line: method, path, call type, container, status, time, and for
   * a failure its reason.
   */
  async function served(request: Request, handle: (note: Note) => Promise<Response>): Promise<Response> {
    const started = performance.now();
    const url = new URL(request.url);
    let callType = "-";
    let container: string | undefined;
    inFlight++;
    let response: Response;
    try {
      if (draining) {
        response = textResponse(503, "Agent is shutting down", { Connection: "close" });
      } else {
        response = await handle((t, c) => {
          callType = t;
          container = c;
        });
      }
    } catch (err) {
      const failure = failureOf(err);
      if (!failure.expected) log.error(`${request.method} ${url.pathname} ${callType}: ${(err as Error).stack ?? err}`);
      response = textResponse(failure.status, failure.message, failure.headers);
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
    const reason = reasonOf(response);
    const line = `${request.method} ${url.pathname} ${callType}${container ? ` ${container}` : ""} ${response.status} ${ms}ms${reason ? `: ${reason}` : ""}`;
    if (response.status >= 500) log.warn(line);
    else log.info(line);
    if (draining && inFlight === 0) idle?.();
    return response;
  }

  /** libprocess authenticates before the endpoint's handler runs, so 401 comes first. */
  function authenticate(request: Request): void {
    if (authenticator && authenticator.authenticate(lastValue(request.headers.get("authorization"))) === null) {
      throw new ApiError(401, "Authentication required", BasicAuthenticator.challenge());
    }
  }

  async function api(request: Request, note: Note): Promise<Response> {
    authenticate(request);
    if (request.method !== "POST") {
      throw new ApiError(405, `Expecting a 'POST' request, received '${request.method}'`, { Allow: "POST" });
    }
    const wire = negotiate(request.headers);

    let body: unknown;
    let records: AsyncGenerator<Uint8Array> | undefined;
    if (wire.content === "recordio") {
      // A streaming request: its first record is the call, the rest is the handler's.
      const first = await firstRecord(request, MAX_BODY_BYTES);
      records = first.rest;
      body = await decodeCall(first.record, wire.messageContent!, parseJson);
    } else {
      body = await decodeCall(await readBodyBytes(request, MAX_BODY_BYTES), wire.content, parseJson);
    }
    let call;
    try {
      call = parseCall(body);
    } catch (err) {
      if (err instanceof CallError) throw new ApiError(400, `Failed to validate agent::Call: ${err.message}`);
      throw err;
    }
    const id = (call.payload as { container_id?: ContainerID } | undefined)?.container_id;
    note(call.type, id ? idKey(id) : undefined);
    liftTimeout.get(request)?.();
    checkStreaming(call.type, wire);
    const answered = await dispatch(call.type, call.payload, agent, { wire, records });
    return answered instanceof Answer ? answerResponse(answered, wire) : answered;
  }

  function parseJson(text: string): unknown {
    // The nesting bound first (one O(n) pass), so a hostile body never reaches JSON.parse.
    return parseJsonBody(text);
  }

  async function pull(request: Request, note: Note): Promise<Response> {
    authenticate(request);
    if (request.method !== "POST") {
      throw new ApiError(405, `Expecting a 'POST' request, received '${request.method}'`, { Allow: "POST" });
    }
    note("PULL");
    return pullImage(agent, request);
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
    // ucr's own image endpoints, behind the same authentication as /api/v1.
    .all(
      "/images",
      ({ request }) =>
        served(request, async () => {
          authenticate(request);
          return getOnly(request, () => listImages(agent));
        }),
      { parse: "none" },
    )
    .all("/images/pull", ({ request }) => served(request, (note) => pull(request, note)), { parse: "none" })
    .onError(({ code, request }) => {
      if (code === "NOT_FOUND") {
        return served(request, async () => textResponse(404, `No endpoint at ${new URL(request.url).pathname}`));
      }
      return undefined;
    });
  // Bun's server directly (not Elysia's listen), so every request passes routable() first.
  const server = Bun.serve({
    hostname: ip,
    port,
    fetch: (request, srv) => {
      const routed = routable(request);
      liftTimeout.set(routed, () => srv.timeout(request, 0));
      return app.handle(routed);
    },
  });
  return {
    port: server.port!,
    hostname: ip,
    async drain(graceMs = DRAIN_GRACE_MS) {
      draining = true;
      // Streams last as long as their containers' output: they end now, not after the grace.
      closeStreams();
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
