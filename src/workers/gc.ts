// The gc worker (the worker table calls it "disk"): image GC's and the agent's heavy disk work,
// off the server thread: `du` measures a tree as du(1) does, `remove` deletes one (strictly
// inside the root the caller names), `makeSpares` makes container directories ahead of
// launches, `copyLayers` makes a copy-backend rootfs, `warmCgroups` pays the kernel's
// cgroup-lock wait.
import { writeFileSync } from "node:fs";
import { DISK_WORKER, diskUsage, removeTree } from "../gc/disk.ts";
import { applyLayers } from "../provisioner/copy.ts";
import { makeSpares } from "../provisioner/spares.ts";
import { serveRpc } from "../threads/rpc.ts";

serveRpc(DISK_WORKER, {
  du: ({ path }) => diskUsage(path),
  remove: ({ path, within }) => removeTree(path, within),
  makeSpares: (args) => makeSpares(args),
  copyLayers: ({ layers, dest, records }) => {
    applyLayers(layers, dest, records);
    return { ok: true };
  },
  // Writing a pid into the cgroup it is already in changes nothing, but takes the kernel's
  // cgroup threadgroup lock for writing, which on its first use in a while waits for an RCU
  // grace period (~13 ms here) and stays cheap for a few more. Done here while a container's
  // init stage starts, its own move a few ms later is then fast.
  warmCgroups: ({ procs, pid }) => {
    try {
      writeFileSync(procs, String(pid));
      return { ok: true };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  },
});
