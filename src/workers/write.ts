// Write worker: creates the regular files of a layer for an extract worker. Creating a file
// is the dominant cost of unpacking on ext4 (~250 µs of kernel time each here) and it
// overlaps well across threads, so an extract worker hands batches of small files to a few
// of these while it goes on parsing the tar.
import { WRITE_WORKER, writeFileBatch } from "../images/layer/file-writer.ts";
import { serveRpc } from "../threads/rpc.ts";

serveRpc(WRITE_WORKER, { write: (batch) => writeFileBatch(batch) });
