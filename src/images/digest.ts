// Content digests ("sha256:<hex>"): streaming hashers and the checks every blob goes
// through before anything built from it becomes visible.
import { validateDigest } from "./reference.ts";
import { UcrError } from "../errors.ts";

export class DigestMismatchError extends UcrError {
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super("invalid", `${what}: digest mismatch: expected ${expected}, got ${actual}`);
  }
}

/** Hex part of a sha256 digest, validated (it becomes a path component). */
export function digestHex(digest: string): string {
  const problem = validateDigest(digest);
  if (problem) throw new Error(`digest '${digest}' ${problem}`);
  if (!digest.startsWith("sha256:")) throw new Error(`digest '${digest}': only sha256 is supported`);
  return digest.slice("sha256:".length);
}

export function sha256(data: Uint8Array | string): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(data).digest("hex")}`;
}

/** A running hash over a stream (sha256, or sha512 for Appc image IDs), with the byte count. */
export class StreamDigest {
  private readonly hasher: Bun.CryptoHasher;
  bytes = 0;

  constructor(readonly algorithm: "sha256" | "sha512" = "sha256") {
    this.hasher = new Bun.CryptoHasher(algorithm);
  }

  update(chunk: Uint8Array): void {
    this.hasher.update(chunk);
    this.bytes += chunk.byteLength;
  }

  digest(): string {
    return `${this.algorithm}:${this.hasher.digest("hex")}`;
  }
}
