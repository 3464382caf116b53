// Disk worker: the agent's heavy disk work, off the server thread: `du` measures a tree as
// du(1) does, `remove` deletes one (strictly inside the root the caller names), `copyLayers`
// makes a copy-backend rootfs, `warmCgroups` pays the kernel's cgroup-lock wait.
import { writeFileSync } from "node:fs";
import { diskUsage, removeTree } from "../gc/disk.ts";
import { applyLayers } from "../provisioner/copy.ts";
import { serveRpc } from "../threads/rpc.ts";

declare const self: Worker;

serveRpc("disk", {
  du: (args: { path: string }) => diskUsage(args.path),
  remove: (args: { path: string; within: string }) => removeTree(args.path, args.within),
  // Writing a pid into the cgroup it is already in changes nothing, but takes the kernel's
  // cgroup threadgroup lock for writing, which on its first use waits for an RCU grace
  // period (~13 ms here) and stays cheap for a few more. Done here while a container's
  // init stage starts, its own attach a few ms later is then fast.
  warmCgroups: (args: { procs: string; pid: number }) => {
    try {
      writeFileSync(args.procs, String(args.pid));
      return { ok: true };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  },
  // The copy backend's rootfs: heavy I/O, so it happens here too.
  copyLayers: (args: { layers: string[]; dest: string; records: Array<{ whiteouts: string[]; opaques: string[] }> }) => {
    applyLayers(args.layers, args.dest, args.records);
    return { ok: true };
  },
});
