// Pull worker: talks to registries (auth, manifests, indexes, configs) and reads archive
// indexes, off the server thread. Layer blobs go to the extract workers.
import { resolveFromArchive, resolveFromRegistry, type ArchiveResolveJob, type RegistryResolveJob } from "../images/resolve.ts";
import { serveRpc } from "../threads/rpc.ts";

declare const self: Worker;
serveRpc("pull", {
  registry: (args: RegistryResolveJob) => resolveFromRegistry(args),
  archive: (args: ArchiveResolveJob) => resolveFromArchive(args),
});
