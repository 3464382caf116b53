// The launcher's setup worker (runtime/setup-lane.ts): sets up a forked container's process
// while the launcher's own thread sets up another.
import { prepareChild, stopChild } from "../ffi/child.ts";
import { startForked } from "../runtime/forked.ts";
import { SETUP_WORKER } from "../runtime/setup-lane.ts";
import { serveRpc } from "../threads/rpc.ts";

serveRpc(SETUP_WORKER, {
  fork: ({ spec, stdio, report }) => ({ pid: startForked(spec, stdio, report) }),
  prepare: () => {
    prepareChild();
    return { ok: true };
  },
  stop: () => {
    stopChild();
    return { ok: true };
  },
});
