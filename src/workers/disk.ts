// Disk worker: the agent's heavy disk work, off the server thread: `du` measures a tree as
// du(1) does, `remove` deletes one (strictly inside the root the caller names), `copyLayers`
// makes a copy-backend rootfs, `warmCgroups` pays the kernel's cgroup-lock wait.
import { DISK_WORKER, diskUsage, removeTree } from "../gc/disk.ts";
import { applyLayers } from "../provisioner/copy.ts";
import { warmCgroupLock } from "../runtime/cgroups.ts";
import { serveRpc } from "../threads/rpc.ts";

serveRpc(DISK_WORKER, {
  du: ({ path }) => diskUsage(path),
  remove: ({ path, within }) => removeTree(path, within),
  copyLayers: ({ layers, dest, records }) => {
    applyLayers(layers, dest, records);
    return { ok: true };
  },
  warmCgroups: ({ procs, pid }) => warmCgroupLock(procs, pid),
});
