// The launcher's second setup lane (issue #15). Setting up a forked container keeps the
// launcher's thread busy for its whole setup, half of it waiting for the container's process
// to make each mount, and its forking thread waits for that process's exec: one setup at a
// time. Under a burst the launcher was the serial step (its thread ~100 % busy or waiting),
// with a core idle. A worker thread of the launcher, with its own forking thread, sets up a
// second container while the launcher's thread sets up another; it runs the same code
// (forked.ts). It starts with the first burst and lives as long as the launcher (which exits
// when nothing runs); a launch that comes alone is set up on the launcher's thread as before,
// with no hand-off.
import type { LaunchSpec } from "./spec.ts";
import { workerOf } from "../threads/workers.ts";

export interface SetupOps {
  /** startForked() of `spec` with these descriptors (the launcher's: one process, one table): the pid. */
  fork(args: { spec: LaunchSpec; stdio: [number, number, number]; report: number }): { pid: number };
  /** Compiles the native code of the container's process now, not in the first setup. */
  prepare(): { ok: true };
  /** Ends its forking thread and frees the native code, ahead of the worker's stop (nothing in flight). */
  stop(): { ok: true };
}

export const SETUP_WORKER = workerOf<SetupOps>("setup");
