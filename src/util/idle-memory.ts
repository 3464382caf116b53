// What a process of ucr gives back once it has nothing to do: the agent when its worker
// threads stop, the launcher when no container runs.
import { readFileSync, realpathSync } from "node:fs";
import { dropCleanFilePages } from "../ffi/libc.ts";

/** This process's resident memory (KiB). */
function residentKiB(): number {
  return Number(/^Rss:\s+(\d+)/m.exec(readFileSync("/proc/self/smaps_rollup", "utf8"))?.[1] ?? 0);
}

let binary: string | undefined;

/**
 * The binary's code pages this process has run, unmapped (after some use most of an idle
 * process's footprint; they stay in the page cache and come back, a minor fault each, when
 * next run). Throws if the binary's mappings could not be read.
 */
export function dropBinaryPages(): void {
  binary ??= realpathSync(process.execPath);
  dropCleanFilePages(binary);
}

/**
 * A full collection of the JavaScript heap, then dropBinaryPages(). Returns the MiB of
 * resident memory given back.
 */
export function giveBackMemory(): number {
  Bun.gc(true);
  const before = residentKiB();
  dropBinaryPages();
  return (before - residentKiB()) / 1024;
}
