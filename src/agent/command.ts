// The docker/runtime isolator's rules (reference section 5): how the image config's
// Entrypoint, Cmd, Env and WorkingDir combine with CommandInfo into what is executed.
import type { CommandInfo } from "../mesos/messages.ts";
import type { ImageConfig } from "../images/manifest.ts";
import { errorOfKind } from "../errors.ts";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class CommandError extends errorOfKind("invalid") {}

export interface ResolvedCommand {
  /** What execve gets as the path (possibly relative; resolved against PATH at exec). */
  executable: string;
  argv: string[];
  env: Record<string, string>;
  workingDir: string;
  /** The image's User, which Mesos ignores (logged); kept for the record. */
  imageUser?: string;
}

export interface CommandContext {
  /** The sandbox as the workload sees it (sandbox_directory with an image, the host path without). */
  sandbox: string;
  /** Apply the image's Entrypoint/Cmd/Env/WorkingDir (docker/runtime, unless --docker_ignore_runtime). */
  useImage: boolean;
}

/** Resolves a launch's command by Mesos' table; throws CommandError with Mesos' messages. */
export function resolveCommand(command: CommandInfo | undefined, image: ImageConfig | undefined, ctx: CommandContext): ResolvedCommand {
  const cfg = ctx.useImage ? (image?.config ?? undefined) : undefined;
  const entrypoint = cfg?.Entrypoint ?? [];
  const cmd = cfg?.Cmd ?? [];
  const shell = command?.shell ?? true;
  const value = command?.value;
  const args = command?.arguments ?? [];

  let executable: string;
  let argv: string[];
  if (shell) {
    if (value === undefined) throw new CommandError("Shell specified but no command value provided");
    executable = "/bin/sh";
    argv = ["sh", "-c", value];
  } else if (value !== undefined) {
    executable = value;
    argv = [...args];
  } else if (args.length === 0) {
    if (entrypoint.length > 0) {
      executable = entrypoint[0]!;
      argv = [...entrypoint, ...cmd];
    } else if (cmd.length > 0) {
      executable = cmd[0]!;
      argv = [...cmd];
    } else {
      throw new CommandError("No executable is found");
    }
  } else if (entrypoint.length > 0) {
    executable = entrypoint[0]!;
    argv = [...entrypoint, ...args];
  } else if (cmd.length > 0) {
    executable = cmd[0]!;
    argv = [cmd[0]!, ...args];
  } else {
    throw new CommandError("No executable is found");
  }
  if (argv.length === 0) argv = [executable];

  // Environment, later wins: MESOS_SANDBOX, the image's Env, the CommandInfo's.
  const env: Record<string, string> = { MESOS_SANDBOX: ctx.sandbox };
  for (const entry of cfg?.Env ?? []) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  for (const v of command?.environment?.variables ?? []) {
    if (v.type === "SECRET") throw new CommandError(`environment variable '${v.name}' is a secret, and ucr has no secret resolver`);
    env[v.name] = v.value ?? "";
  }
  env.PATH ??= DEFAULT_PATH;

  const workingDir = cfg?.WorkingDir ? cfg.WorkingDir : ctx.sandbox;
  const imageUser = cfg?.User ?? undefined;
  return { executable, argv, env, workingDir, ...(imageUser ? { imageUser } : {}) };
}
