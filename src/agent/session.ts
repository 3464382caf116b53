// Sessions (LAUNCH_NESTED_CONTAINER_SESSION), Mesos' DEBUG class of nested container: what it
// runs, with its parent's environment and working directory, and how it is ended when its
// client goes away or its output is over.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LaunchContainer } from "../mesos/calls.ts";
import { log } from "../log.ts";
import { CommandError, DEFAULT_PATH, resolveCommand, type ResolvedCommand } from "./command.ts";
import type { LaunchSpec } from "../runtime/spec.ts";
import { stillRunning } from "../util/process.ts";
import type { Container } from "./container.ts";

/**
 * The session's command (Mesos' rules for CommandInfo, no image) in its parent's world:
 * the parent's environment (MESOS_SANDBOX included) under the command's own variables, and
 * the parent's working directory. Both are read from the parent's launch spec, which its
 * runtime dir keeps while it runs (so a parent recovered after an agent restart has them too).
 */
export function sessionCommand(call: LaunchContainer, parent: Container): ResolvedCommand {
  let spec: Pick<LaunchSpec, "env" | "workingDir" | "sandbox">;
  try {
    spec = JSON.parse(readFileSync(join(parent.runtime, "launch.json"), "utf8")) as LaunchSpec;
  } catch (err) {
    throw new CommandError(`cannot read the launch spec of parent container ${parent.key}: ${(err as Error).message}`);
  }
  const own = resolveCommand(call.command, undefined, { sandbox: spec.sandbox.container, useImage: false });
  const env: Record<string, string> = { ...spec.env };
  for (const v of call.command?.environment?.variables ?? []) env[v.name] = v.value ?? "";
  env.PATH ??= DEFAULT_PATH;
  return { executable: own.executable, argv: own.argv, env, workingDir: spec.workingDir };
}

/**
 * Ends a session's processes: its whole process group (stage 2 made the workload lead a
 * session of its own) and the workload, if it still runs. Its exit is then reported by the
 * launcher as any other, so WAIT_CONTAINER tells how it ended.
 */
export function endSession(c: Container, why: string): void {
  if (c.state !== "RUNNING" || c.pid === undefined || !stillRunning(c.pid, c.pidStart)) return;
  log.info(`session ${c.key}: ${why}; ending it`);
  for (const target of [-c.pid, c.pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // gone already
    }
  }
}
