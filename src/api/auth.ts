// HTTP Basic authentication for the agent's read-write realm, as Mesos' `basic`
// authenticator: the principal and secret must match one of --http_credentials.
import { createHash, timingSafeEqual } from "node:crypto";
import type { HttpCredentials } from "../config/flags.ts";

const READWRITE_REALM = "mesos-agent-readwrite";

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

export class BasicAuthenticator {
  private readonly secrets: Map<string, Buffer>;
  // Compared against when the principal is unknown, so timing does not tell which exist.
  private readonly decoy = digest("ucr-decoy-secret");

  constructor(credentials: HttpCredentials) {
    this.secrets = new Map(credentials.credentials.map((c) => [c.principal, digest(c.secret)]));
  }

  /** The authenticated principal, or null when the header is absent, malformed or wrong. */
  authenticate(authorization: string | null): string | null {
    if (!authorization) return null;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
    if (!m) return null;
    const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return null;
    const principal = decoded.slice(0, colon);
    const given = digest(decoded.slice(colon + 1));
    const expected = this.secrets.get(principal);
    const ok = timingSafeEqual(given, expected ?? this.decoy);
    return ok && expected !== undefined ? principal : null;
  }

  static challenge(): Record<string, string> {
    return { "WWW-Authenticate": `Basic realm="${READWRITE_REALM}"` };
  }
}
