// Deadlines and bounds for everything ucr downloads (registry tokens, manifests, configs,
// blobs, ACIs): a transfer is aborted when it stalls (less than 1 byte/s over the stall
// window, as Mesos' --fetcher_stall_timeout) or runs past its total deadline, and a body is
// read only up to a cap, checked chunk by chunk, never after it was read whole.
import { formatDuration } from "../config/units.ts";

export interface FetchLimits {
  /** --fetcher_stall_timeout: abort when less than 1 byte/s arrives over this long. */
  stallMs: number;
  /** --image_fetch_timeout: abort one download (retries included) that takes longer. */
  totalMs: number;
}

export const DEFAULT_LIMITS: FetchLimits = { stallMs: 60_000, totalMs: 3_600_000 };

function shownMs(ms: number): string {
  return formatDuration(ms * 1e6);
}

/** What a stalled download is told (undici's own idle timeout says the same). */
export function stallMessage(limits: FetchLimits): string {
  return `stalled: less than 1 byte/s for ${shownMs(limits.stallMs)} (--fetcher_stall_timeout)`;
}

/**
 * One download's clock. `signal` goes to every request of the download; `progress` counts
 * bytes; `pause` stops the stall clock while we wait on purpose (retry backoff).
 */
export class Transfer {
  private readonly controller = new AbortController();
  private readonly total: ReturnType<typeof setTimeout>;
  private readonly tick: ReturnType<typeof setInterval>;
  private windowStart = performance.now();
  private windowBytes = 0;
  private paused = false;
  /** Why the transfer was aborted, if it was. */
  why: string | undefined;

  constructor(readonly limits: FetchLimits) {
    this.total = setTimeout(() => this.abort(`did not finish within ${shownMs(limits.totalMs)} (--image_fetch_timeout)`), limits.totalMs);
    this.tick = setInterval(() => this.check(), Math.max(10, Math.min(1000, limits.stallMs / 4)));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private check(): void {
    if (this.paused || this.why) return;
    const elapsed = performance.now() - this.windowStart;
    if (elapsed < this.limits.stallMs) return;
    // Mesos (curl --speed-limit 1): slower than 1 byte/s on average over the whole window.
    if (this.windowBytes < elapsed / 1000) {
      this.abort(stallMessage(this.limits));
      return;
    }
    this.windowStart = performance.now();
    this.windowBytes = 0;
  }

  private abort(why: string): void {
    if (this.why) return;
    this.why = why;
    this.controller.abort(new Error(why));
  }

  progress(bytes: number): void {
    this.windowBytes += bytes;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.windowStart = performance.now();
    this.windowBytes = 0;
  }

  /** Throws the reason if the transfer was aborted (call where a request or read failed). */
  throwIfAborted(what: string, make: (message: string) => Error): void {
    if (this.why) throw make(`${what}: ${this.why}`);
  }

  done(): void {
    clearTimeout(this.total);
    clearInterval(this.tick);
  }
}

/**
 * Reads a body up to `max` bytes, failing as soon as it goes past (before holding more).
 * `declared` (a Content-Length) past `max` fails before the first byte is read.
 */
export async function readBounded(
  body: AsyncIterable<Uint8Array>,
  max: number,
  tooBig: () => Error,
  transfer?: Transfer,
  declared?: number,
): Promise<Buffer> {
  if (declared !== undefined && declared > max) throw tooBig();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    transfer?.progress(chunk.byteLength);
    if (size > max) throw tooBig();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Reads and drops a body we do not need, up to 64 KiB (a hostile server may send forever);
 * past that the stream is destroyed, which closes the connection.
 */
export async function discard(body: AsyncIterable<Uint8Array>): Promise<void> {
  await readBounded(body, 64 * 1024, () => new Error("too big")).catch(() => {});
}
