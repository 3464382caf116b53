// Extract worker: fetches a layer blob (registry or archive range) or an Appc image, hashes
// it while it streams, decompresses and untars it into a staging directory.
// The agent runs a few of these so the layers of one image unpack in parallel.
import { runAciJob, type AciJob } from "../images/appc.ts";
import { runLayerJob, type LayerJob } from "../images/layer-job.ts";
import { serveRpc, type RpcContext } from "./rpc.ts";

declare const self: Worker;
serveRpc("extract", {
  layer: (args: LayerJob, ctx: RpcContext) => runLayerJob(args, ctx),
  aci: (args: AciJob, ctx: RpcContext) => runAciJob(args, ctx),
});
