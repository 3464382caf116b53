// Docker image references, parsed and normalised as `docker pull` does
// ([REGISTRY_HOST[:PORT]/]REPOSITORY[:TAG|@DIGEST], docker.io and library/ defaults).
// The grammar follows distribution's reference package; the code is ours.
import { UcrError } from "../errors.ts";

export const DOCKER_HUB = "docker.io";
/** Where docker.io is actually served from. */
export const DOCKER_HUB_REGISTRY = "registry-1.docker.io";
const LEGACY_HUB_NAMES = new Set(["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

const NAME_MAX = 255;
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

class ImageReferenceError extends UcrError {
  constructor(
    readonly input: string,
    why: string,
  ) {
    super("invalid", `invalid image reference '${input}': ${why}`);
  }
}

export interface ImageReference {
  /** Registry host[:port] as docker names it ("docker.io" for Docker Hub). */
  domain: string;
  /** Repository path on that registry ("library/alpine"). */
  path: string;
  tag?: string;
  digest?: string;
  /** Whether the name spelled out a registry (then it overrides --docker_registry). */
  explicitDomain: boolean;
  /** Whether `library/` was added because the name had a single component ("alpine"). */
  implicitLibrary: boolean;
  /** The text as given. */
  original: string;
}

/** Checks "algorithm:hex" with the lengths the known algorithms need. */
export function validateDigest(digest: string): string | null {
  if (!DIGEST.test(digest)) return "is not a digest (expected algorithm:hex)";
  const [alg, hex] = digest.split(":") as [string, string];
  const lengths: Record<string, number> = { sha256: 64, sha512: 128 };
  const want = lengths[alg];
  if (want === undefined) return `uses unsupported digest algorithm '${alg}'`;
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) return `has a malformed ${alg} (want ${want} lowercase hex digits)`;
  return null;
}

function isDomain(part: string): boolean {
  if (part === "localhost") return true;
  if (part.includes(".") || part.includes(":")) return true;
  return part !== part.toLowerCase(); // docker: an uppercase first part can only be a host
}

function checkDomain(input: string, domain: string): void {
  let host = domain;
  let port: string | undefined;
  if (domain.startsWith("[")) {
    const end = domain.indexOf("]");
    if (end < 0) throw new ImageReferenceError(input, `registry '${domain}' has an unclosed IPv6 bracket`);
    host = domain.slice(1, end);
    const rest = domain.slice(end + 1);
    if (rest !== "" && !rest.startsWith(":")) throw new ImageReferenceError(input, `registry '${domain}' is malformed`);
    port = rest === "" ? undefined : rest.slice(1);
    if (!/^[0-9a-fA-F:.]+$/.test(host)) throw new ImageReferenceError(input, `registry '${domain}' has a malformed IPv6 address`);
  } else {
    const colon = domain.lastIndexOf(":");
    if (colon >= 0) {
      host = domain.slice(0, colon);
      port = domain.slice(colon + 1);
    }
    if (!host.split(".").every((l) => DOMAIN_LABEL.test(l))) {
      throw new ImageReferenceError(input, `registry host '${host}' is not a valid host name`);
    }
  }
  if (port !== undefined && (!/^\d+$/.test(port) || Number(port) > 65535 || Number(port) === 0)) {
    throw new ImageReferenceError(input, `registry port '${port}' is not a port number`);
  }
}

/** Parses and normalises an image name; throws ImageReferenceError saying what is wrong. */
export function parseReference(input: string): ImageReference {
  const text = input.trim();
  if (text === "") throw new ImageReferenceError(input, "it is empty");
  if (text !== input) throw new ImageReferenceError(input, "it has leading or trailing spaces");

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    if (rest.indexOf("@", at + 1) >= 0) throw new ImageReferenceError(input, "it has more than one '@'");
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const problem = validateDigest(digest);
    if (problem) throw new ImageReferenceError(input, `digest '${digest}' ${problem}`);
  }

  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(":");
  if (lastColon >= 0 && !rest.slice(lastColon + 1).includes("/")) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) {
      throw new ImageReferenceError(
        input,
        `tag '${tag}' is invalid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')`,
      );
    }
  }

  if (rest === "") throw new ImageReferenceError(input, "it has no repository name");
  let domain = DOCKER_HUB;
  let path = rest;
  let explicitDomain = false;
  const slash = rest.indexOf("/");
  if (slash >= 0 && isDomain(rest.slice(0, slash))) {
    domain = rest.slice(0, slash);
    path = rest.slice(slash + 1);
    explicitDomain = true;
    checkDomain(input, domain);
    if (LEGACY_HUB_NAMES.has(domain.toLowerCase())) domain = DOCKER_HUB;
  }
  if (path === "") throw new ImageReferenceError(input, "it has no repository name after the registry");
  if (path !== path.toLowerCase()) throw new ImageReferenceError(input, "repository name must be lowercase");
  for (const component of path.split("/")) {
    if (!COMPONENT.test(component)) {
      throw new ImageReferenceError(
        input,
        component === ""
          ? "it has an empty path component"
          : `path component '${component}' is invalid (lowercase letters and digits, separated by '.', '_', '__' or '-')`,
      );
    }
  }
  const implicitLibrary = domain === DOCKER_HUB && !path.includes("/");
  if (implicitLibrary) path = `library/${path}`;
  const full = `${domain}/${path}`;
  if (full.length > NAME_MAX)
    throw new ImageReferenceError(input, `the name is ${full.length} characters long; at most ${NAME_MAX} are allowed`);
  if (!tag && !digest) tag = "latest";
  return { domain, path, tag, digest, explicitDomain, implicitLibrary, original: input };
}

/** "docker.io/library/alpine:latest" (or "...@sha256:..."): one spelling per image. */
export function canonical(ref: ImageReference): string {
  const name = `${ref.domain}/${ref.path}`;
  if (ref.digest) return `${name}@${ref.digest}`;
  return `${name}:${ref.tag ?? "latest"}`;
}

/** "alpine:latest", "gilbert/inky:1", "127.0.0.1:5000/app:1": how docker prints it. */
export function familiar(ref: ImageReference): string {
  let name = `${ref.domain}/${ref.path}`;
  if (ref.domain === DOCKER_HUB) name = ref.path.startsWith("library/") ? ref.path.slice("library/".length) : ref.path;
  if (ref.digest) return `${name}@${ref.digest}`;
  return `${name}:${ref.tag ?? "latest"}`;
}

/**
 * The repository path to request from a registry. Mesos adds `library/` only on Docker
 * Hub, so "alpine" on a private default registry is `/v2/alpine/...`, not `library/alpine`.
 */
export function remotePath(ref: ImageReference, registryIsHub: boolean): string {
  if (ref.implicitLibrary && !registryIsHub) return ref.path.slice("library/".length);
  return ref.path;
}

/** What to ask the registry's manifest endpoint for: the digest if pinned, else the tag. */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** Do two names mean the same image? ("mysql" and "docker.io/library/mysql:latest" do.) */
export function sameImage(a: string, b: string): boolean {
  return canonical(parseReference(a)) === canonical(parseReference(b));
}
