// Extract worker: fetches a layer blob (registry or archive range) or an Appc image, hashes
// it while it streams, decompresses and untars it into a staging directory.
// The agent runs a few of these so the layers of one image unpack in parallel.
import { runAciJob } from "../images/appc.ts";
import { EXTRACT_WORKER, runLayerJob } from "../images/layer-job.ts";
import { serveRpc } from "../threads/rpc.ts";

serveRpc(EXTRACT_WORKER, {
  layer: (job, ctx) => runLayerJob(job, ctx),
  aci: (job, ctx) => runAciJob(job, ctx),
});
