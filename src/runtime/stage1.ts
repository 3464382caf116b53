// The fallback when the long-lived launcher cannot be had: `ucr __init SPEC` as a container's
// own stage 1, in a session of its own, reporting a failed setup on fd 3 as the launcher does.
import { closeSync, openSync, readFileSync } from "node:fs";
import { selfCommand, type LaunchSpec } from "./spec.ts";

/** The fallback: `ucr __init SPEC` as this container's own stage 1. */
export async function startStage1(spec: LaunchSpec, specPath: string): Promise<{ pid: number } | { error: string }> {
  const stdout = openSync(spec.stdout!, "a", 0o640);
  const stderr = openSync(spec.stderr!, "a", 0o640);
  let proc;
  try {
    proc = Bun.spawn(selfCommand("__init", specPath), {
      stdio: ["ignore", stdout, stderr, "pipe"],
      env: {},
      detached: true, // its own session: the agent's signals and death do not reach it
    });
  } finally {
    closeSync(stdout);
    closeSync(stderr);
  }
  const report = await readAll((proc as unknown as { stdio: number[] }).stdio[3]!);
  if (report.trim() !== "") {
    await proc.exited;
    return { error: report.trim() };
  }
  proc.unref();
  return { pid: Number(readFileSync(spec.pidFile, "utf8").trim()) };
}

/** Everything written to a pipe until every writer closed it. */
async function readAll(fd: number): Promise<string> {
  try {
    return await Bun.file(fd).text();
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}
