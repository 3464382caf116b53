// Extract worker: decompresses layer blobs and unpacks their tars into staging directories.
// The extractor arrives with the image provisioning work; until then this worker only
// answers `ping`, which the agent uses at start-up to prove workers run in this build.
import { serveRpc } from "./rpc.ts";

declare const self: Worker;
serveRpc("extract", {});
