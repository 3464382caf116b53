// GC worker: the disk work of image garbage collection and accounting, off the server
// thread. `du` measures a tree as du(1) does (allocated blocks, hard links once);
// `remove` deletes a tree, but only strictly inside the root the caller names.
import { diskUsage, removeTree } from "../gc/disk.ts";
import { serveRpc } from "./rpc.ts";

declare const self: Worker;

serveRpc("gc", {
  du: (args: { path: string }) => diskUsage(args.path),
  remove: (args: { path: string; within: string }) => removeTree(args.path, args.within),
});
