// Pull worker: talks to registries (manifests, blobs) off the server thread.
// The registry client arrives with the image provisioning work; until then this worker
// only answers `ping`, which the agent uses at start-up to prove workers run in this build.
import { serveRpc } from "./rpc.ts";

declare const self: Worker;
serveRpc("pull", {});
