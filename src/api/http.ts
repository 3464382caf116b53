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

/** A Mesos-style error: `text/plain; charset=utf-8`, one line. */
export function textResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  const line = message.replace(/[\r\n]+/g, " ").trim();
  return new Response(line, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", ...headers },
  });
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

/** A JSON body's bytes as text; 400 if they are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "Failed to parse body into JSON: body is not valid UTF-8");
  }
}
