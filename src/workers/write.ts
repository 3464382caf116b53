// Write worker: creates the regular files of a layer for an extract worker. Creating a file
// is the dominant cost of unpacking on ext4 (~250 µs of kernel time each here) and it
// overlaps well across threads, so an extract worker hands batches of small files to a few
// of these while it goes on parsing the tar.
import { writeFileBatch, type WriteBatch } from "../images/layer/file-writer.ts";

declare const self: Worker;
self.onmessage = (event: MessageEvent<WriteBatch>) => {
  const batch = event.data;
  try {
    writeFileBatch(batch);
    postMessage({ id: batch.id });
  } catch (err) {
    postMessage({ id: batch.id, error: (err as Error).message });
  }
};
