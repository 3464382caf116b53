// GC worker: the disk work of image garbage collection and accounting, off the server
// thread. `du` measures a tree as du(1) does (allocated blocks, hard links once);
// `remove` deletes a tree, but only strictly inside the root the caller names.
import { diskUsage, removeTree } from "../gc/disk.ts";
import { copyLayers } from "../images/backends.ts";
import { serveRpc } from "./rpc.ts";

declare const self: Worker;

serveRpc("gc", {
  du: (args: { path: string }) => diskUsage(args.path),
  remove: (args: { path: string; within: string }) => removeTree(args.path, args.within),
  // The copy backend's rootfs: heavy I/O, so it happens here too.
  copyLayers: (args: { layers: string[]; dest: string; records: Array<{ whiteouts: string[]; opaques: string[] }> }) => {
    copyLayers(args.layers, args.dest, args.records);
    return { ok: true };
  },
});
