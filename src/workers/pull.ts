// Pull worker: talks to registries (auth, manifests, indexes, configs) and reads archive
// indexes, off the server thread. Layer blobs go to the extract workers.
import { PULL_WORKER, resolveFromArchive, resolveFromRegistry } from "../images/resolve.ts";
import { serveRpc } from "../threads/rpc.ts";

serveRpc(PULL_WORKER, {
  registry: (job) => resolveFromRegistry(job),
  archive: (job) => resolveFromArchive(job),
});
