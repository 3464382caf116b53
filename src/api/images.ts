// ucr's own image endpoints beside the Operator API (Mesos has none): GET /images lists the
// agent's Docker store, POST /images/pull pulls one image into it (what `ucr run` needs to know an image's entrypoint).
import type { DockerStore, ImageRecord } from "../images/store.ts";
import type { AgentServices } from "./services.ts";
import { ApiError, JSON_TYPE, decodeUtf8, jsonResponse, lastValue, mediaType, parseJsonBody, readBodyBytes } from "./http.ts";

/** One image as the endpoints describe it (snake_case, as the Operator API's JSON). */
export interface ImageEntry {
  reference: string;
  manifest_digest?: string;
  config_digest: string;
  /** Unpacked size of its layers in bytes (what the layer tars held). */
  size_bytes: number;
  layers: number;
  source: string;
  pulled_at: string;
  last_used_at: string;
}

/** With the image's Entrypoint and Cmd, for a client that builds a command as docker does. */
interface PulledImage extends ImageEntry {
  entrypoint: string[];
  cmd: string[];
}

function imageEntry(store: DockerStore, img: ImageRecord): ImageEntry {
  return {
    reference: img.reference,
    ...(img.manifestDigest ? { manifest_digest: img.manifestDigest } : {}),
    config_digest: img.configDigest,
    size_bytes: img.layers.reduce((sum, l) => sum + (store.layer(l)?.tarBytes ?? 0), 0),
    layers: img.layers.length,
    source: img.source,
    pulled_at: img.pulledAt,
    last_used_at: img.lastUsedAt,
  };
}

/** Every image of a store, sorted by reference. */
export function imageEntries(store: DockerStore): ImageEntry[] {
  return store
    .images()
    .map((img) => imageEntry(store, img))
    .sort((a, b) => a.reference.localeCompare(b.reference));
}

export function listImages(agent: AgentServices): Response {
  return jsonResponse({ images: imageEntries(agent.images.store) });
}

/** Largest body of a pull request: a name and a flag. */
const MAX_PULL_BODY = 64 * 1024;

/**
 * POST /images/pull with `{"name": "alpine", "force": false}`: pulls as LAUNCH_CONTAINER would
 * (same store, same puller, same flags), answers the image with its Entrypoint and Cmd. A
 * failed pull is 400 with its message, as a failed launch is.
 */
export async function pullImage(agent: AgentServices, request: Request): Promise<Response> {
  const contentType = lastValue(request.headers.get("content-type"));
  if (contentType === null || mediaType(contentType) !== JSON_TYPE) {
    throw new ApiError(415, `Expecting 'Content-Type' of ${JSON_TYPE}, got '${contentType ?? ""}'`);
  }
  const body = parseJsonBody(decodeUtf8(await readBodyBytes(request, MAX_PULL_BODY)));
  const { name, force } = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  if (typeof name !== "string" || name === "") {
    throw new ApiError(400, 'Expecting \'name\' to be the image to pull, e.g. {"name":"alpine"}');
  }
  if (force !== undefined && typeof force !== "boolean") throw new ApiError(400, "Expecting 'force' to be true or false");
  if (!(agent.flags.values.image_providers ?? []).includes("docker")) {
    throw new ApiError(
      400,
      "Docker images are not enabled: start the agent with --image_providers=docker --isolation=filesystem/linux,docker/runtime",
    );
  }
  // A failed pull is a PullError (invalid: 400, as a failed launch).
  const record = await agent.images.puller.pull(name, { force: force === true });
  const store = agent.images.store;
  const config = store.config(record.configDigest).config ?? undefined;
  const pulled: PulledImage = { ...imageEntry(store, record), entrypoint: config?.Entrypoint ?? [], cmd: config?.Cmd ?? [] };
  return jsonResponse(pulled);
}
