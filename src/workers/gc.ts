// GC worker: the disk work of image garbage collection and accounting, off the server
// thread. `du` measures a tree as du(1) does (allocated blocks, hard links once);
// `remove` deletes a tree, but only strictly inside the root the caller names.
import { writeFileSync } from "node:fs";
import { diskUsage, removeTree } from "../gc/disk.ts";
import { applyLayers } from "../provisioner/copy.ts";
import { serveRpc } from "./rpc.ts";

declare const self: Worker;

serveRpc("gc", {
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
