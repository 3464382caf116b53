// Extract worker: fetches a layer blob (registry or archive range), hashes it while it
// streams, decompresses and untars it into a staging directory (src/images/layer-job.ts).
// The agent runs a few of these so the layers of one image unpack in parallel.
import { runLayerJob, type LayerJob } from "../images/layer-job.ts";
import { serveRpc, type RpcContext } from "./rpc.ts";

declare const self: Worker;
serveRpc("extract", {
  layer: (args: LayerJob, ctx: RpcContext) => runLayerJob(args, ctx),
});
