// HTTP details of the Operator API shared by the server: media types, content negotiation,
// and the plain-text error responses Mesos sends.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const JSON_TYPE = "application/json";
export const PROTOBUF_TYPE = "application/x-protobuf";
export const RECORDIO_TYPE = "application/recordio";

/** "application/json; charset=utf-8" -> "application/json" (lowercase, no parameters). */
export function mediaType(header: string): string {
  return header.split(";")[0]!.trim().toLowerCase();
}

/** Splits a header value at the commas that are not inside a quoted string. */
function splitList(header: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (quoted && c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted) {
      parts.push(header.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(header.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

/**
 * The value libprocess would see for a header that holds one value (a media type,
 * credentials). Its request decoder stores every header line into a map by name, so of
 * repeated lines the last wins (3rdparty/libprocess/src/decoder.hpp). Bun hands us repeated
 * lines joined with ", "; since one such value has no comma outside quotes, the last element
 * of the joined list is exactly the last line.
 */
export function lastValue(header: string | null): string | null {
  if (header === null) return null;
  const parts = splitList(header);
  return parts.length > 0 ? parts[parts.length - 1]! : header.trim();
}

interface MediaRange {
  type: string;
  subtype: string;
  q: number;
}

function parseAccept(header: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of header.split(",")) {
    const [range, ...params] = part.split(";").map((s) => s.trim());
    if (!range) continue;
    const [type, subtype] = range.toLowerCase().split("/");
    if (!type || !subtype) continue;
    let q = 1;
    for (const p of params) {
      const [k, val] = p.split("=").map((s) => s.trim());
      if (k?.toLowerCase() === "q" && val !== undefined) {
        const n = Number(val);
        q = Number.isFinite(n) ? n : 0;
      }
    }
    ranges.push({ type, subtype, q });
  }
  return ranges;
}

/**
 * Does an Accept header allow `type`? An absent header allows anything; otherwise the most
 * specific matching range decides, and q=0 refuses (RFC 9110 section 12.5.1).
 */
export function accepts(header: string | null, type: string): boolean {
  if (header === null || header.trim() === "") return true;
  const [want, wantSub] = type.split("/");
  let best: { specificity: number; q: number } | undefined;
  for (const r of parseAccept(header)) {
    let specificity = -1;
    if (r.type === want && r.subtype === wantSub) specificity = 2;
    else if (r.type === want && r.subtype === "*") specificity = 1;
    else if (r.type === "*" && r.subtype === "*") specificity = 0;
    if (specificity >= 0 && (!best || specificity > best.specificity)) best = { specificity, q: r.q };
  }
  return best !== undefined && best.q > 0;
}

/** Does an Accept header name `type` itself (not through a wildcard) with q > 0? */
export function names(header: string | null, type: string): boolean {
  if (header === null) return false;
  const [want, wantSub] = type.split("/");
  return parseAccept(header).some((r) => r.type === want && r.subtype === wantSub && r.q > 0);
}

/** Deepest nesting of arrays and objects a body may have: picojson's limit, which Mesos uses. */
const MAX_JSON_DEPTH = 100;

/**
 * Why `text` nests arrays and objects deeper than `max`, or null. One pass over the text
 * before JSON.parse, so a hostile body costs O(n) and never reaches a recursive parser or
 * schema. Malformed text is left for JSON.parse to report.
 */
function jsonDepthProblem(text: string, max = MAX_JSON_DEPTH): string | null {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: jump to its closing quote, one preceded by an even number of backslashes
      // (the opening quote stops the count); brackets inside do not count.
      let end = text.indexOf('"', i + 1);
      for (;;) {
        if (end < 0) return null;
        let k = end - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((end - 1 - k) % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      i = end;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        return `arrays and objects are nested more than ${max} deep (at character ${i}); at most ${max} levels are accepted`;
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return null;
}

/** JSON.parse of a request body, with the depth bound first; 400 naming what is wrong. */
export function parseJsonBody(text: string): unknown {
  const deep = jsonDepthProblem(text);
  if (deep) throw new ApiError(400, `Failed to parse body into JSON: ${deep}`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `Failed to parse body into JSON: ${(err as Error).message}`);
  }
}

/** A Mesos-style error: `text/plain; charset=utf-8`, one line. */
/** Why each error response failed (its message), for the request's log line. */
const reasons = new WeakMap<Response, string>();

export function textResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  const line = message.replace(/[\r\n]+/g, " ").trim();
  const response = new Response(line, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
  if (status >= 400) reasons.set(response, line);
  return response;
}

/** The message of an error response made by textResponse. */
export function reasonOf(response: Response): string | undefined {
  return reasons.get(response);
}

export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": JSON_TYPE } });
}

/** Bare 200/202: empty body and no Content-Type, as Mesos answers calls without a response. */
export function emptyResponse(status = 200): Response {
  return new Response(null, { status });
}

/**
 * Reads a request body, refusing more than `limit` bytes (413) whether the client announced
 * the size or streams it chunked.
 */
export async function readBodyBytes(request: Request, limit: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    throw new ApiError(413, `Request body of ${declared} bytes is over the limit of ${limit} bytes`);
  }
  if (!request.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new ApiError(413, `Request body is over the limit of ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** A JSON body's bytes as text; 400 if they are not UTF-8 or start with a byte order mark. */
export function decodeUtf8(bytes: Uint8Array): string {
  // TextDecoder would drop a byte order mark silently; JSON text must not begin with one
  // (RFC 8259 section 8.1), and Mesos' parser refuses it.
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    const why = "the body starts with a UTF-8 byte order mark (EF BB BF), which JSON text must not";
    throw new ApiError(400, `Failed to parse body into JSON: ${why}`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "Failed to parse body into JSON: body is not valid UTF-8");
  }
}
