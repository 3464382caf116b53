// ucr: one binary, several commands. `ucr agent` runs the Operator API; `ucr __init` is the
// container init stage the agent starts (hidden); the rest are client commands.
// Each command loads only what it needs (dynamic imports): `ucr __init` runs for every
// container launch, twice, and must not pay for the HTTP server, valibot schemas or the
// image code at start.
import { USAGE_LINE } from "./cli/usage-line.ts";
import { VERSION, versionInfo } from "./version.ts";

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

async function agentMain(args: readonly string[]): Promise<void> {
  const { composeAgent } = await import("./compose.ts");
  const { StartupError } = await import("./agent/agent.ts");
  const { FlagError, loadFlags } = await import("./config/flags.ts");
  const { agentHelp } = await import("./cli/usage.ts");
  const { log } = await import("./log.ts");
  let flags;
  try {
    flags = loadFlags(args, process.env);
  } catch (err) {
    if (err instanceof FlagError) fail(`ucr agent: ${err.message} (usage: ucr agent [--flag=value ...]; see 'ucr help agent')`, 2);
    throw err;
  }
  if (flags.help) {
    process.stdout.write(`${agentHelp()}\n`);
    return;
  }
  const agent = composeAgent(flags);
  // Handlers first: a SIGTERM during start-up (the "listening" line is out before start()
  // returns) must stop the agent cleanly, once it has started, not kill it.
  let stopping = false;
  let started: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`received ${signal}`);
    (started ?? Promise.resolve())
      .then(() => agent.stop())
      .then(
        () => process.exit(0),
        (err) => {
          log.error(`stopping failed: ${(err as Error).message}`);
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  started = agent.start();
  try {
    await started;
  } catch (err) {
    if (err instanceof StartupError) fail(`ucr agent: ${err.message}`, 1);
    throw err;
  }
}

function versionMain(): void {
  const info = versionInfo();
  const build = [info.git_sha && `git ${info.git_sha.slice(0, 12)}`, info.build_date && `built ${info.build_date} UTC`]
    .filter(Boolean)
    .join(", ");
  process.stdout.write(`ucr ${VERSION}${build ? ` (${build})` : " (from source)"}\n`);
}

type CommandMain = (args: readonly string[]) => number | Promise<number>;

/** Commands that end with an exit code, each loaded only when it runs. */
const COMMANDS: Record<string, () => Promise<CommandMain>> = {
  pull: async () => (await import("./cli/images.ts")).pullMain,
  load: async () => (await import("./cli/images.ts")).loadMain,
  images: async () => (await import("./cli/images.ts")).imagesMain,
  run: async () => (await import("./cli/client.ts")).runMain,
  ps: async () => (await import("./cli/client.ts")).psMain,
  kill: async () => (await import("./cli/client.ts")).killMain,
  rm: async () => (await import("./cli/client.ts")).rmMain,
  prune: async () => (await import("./cli/client.ts")).pruneMain,
  exec: async () => (await import("./cli/exec.ts")).execMain,
  attach: async () => (await import("./cli/exec.ts")).attachMain,
  __launcher: async () => (await import("./runtime/launcher.ts")).launcherMain,
  __init: async () => (await import("./runtime/init.ts")).initMain,
};

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  const load = command !== undefined && Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (load) process.exit(await (await load())(rest));
  switch (command) {
    case "agent":
      return agentMain(rest);
    case "version":
    case "--version":
      if (rest.length > 0) fail(`ucr version: unexpected argument '${rest[0]}' (${USAGE_LINE})`, 2);
      return versionMain();
    case "help":
    case "--help":
    case "-h": {
      const { agentHelp, mainHelp } = await import("./cli/usage.ts");
      if (rest[0] === "agent") process.stdout.write(`${agentHelp()}\n`);
      else if (rest.length === 0) process.stdout.write(`${mainHelp()}\n`);
      else fail(`ucr help: unknown command '${rest[0]}' (${USAGE_LINE})`, 2);
      return;
    }
    case undefined:
      return fail(`ucr: no command given (${USAGE_LINE})`, 2);
    default:
      if (command.startsWith("-")) fail(`ucr: unknown flag '${command}' before a command (${USAGE_LINE})`, 2);
      fail(`ucr: unknown command '${command}' (${USAGE_LINE})`, 2);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`ucr: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
