// Registry credentials from --docker_config (config.json `auths`, or a legacy .dockercfg),
// looked up by registry host as Mesos does: keys are stripped of scheme and path and
// compared to host[:port]; a key naming docker.io serves every Docker Hub host.
import type { DockerConfig } from "../config/flags.ts";

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth refresh token (config.json `identitytoken`) for the token endpoint. */
  identityToken?: string;
  /** A bearer token to send as is (config.json `registrytoken`). */
  registryToken?: string;
}

function keyHost(key: string): string {
  return key
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
}

function isHubHost(host: string): boolean {
  return host === "docker.io" || host.endsWith(".docker.io");
}

export function lookupCredentials(config: DockerConfig | undefined, host: string): Credentials | undefined {
  if (!config) return undefined;
  const auths = ("auths" in config && typeof config.auths === "object" ? config.auths : config) as Record<
    string,
    { auth?: string; username?: string; password?: string; identitytoken?: string; registrytoken?: string }
  >;
  const want = host.toLowerCase();
  const entries = Object.entries(auths);
  const match =
    entries.find(([key]) => keyHost(key) === want) ??
    (isHubHost(want) ? entries.find(([key]) => keyHost(key).includes("docker.io")) : undefined);
  if (!match) return undefined;
  const entry = match[1];
  const creds: Credentials = {};
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    creds.username = decoded.slice(0, colon);
    creds.password = decoded.slice(colon + 1);
  }
  if (entry.username !== undefined) creds.username = entry.username;
  if (entry.password !== undefined) creds.password = entry.password;
  if (entry.identitytoken) creds.identityToken = entry.identitytoken;
  if (entry.registrytoken) creds.registryToken = entry.registrytoken;
  return creds;
}
