// What `ucr help` prints (the one-line usage that goes with command-line errors is in usage-line.ts).
import { flagsHelp } from "../config/flags.ts";
import { VERSION } from "../version.ts";

const COMMANDS: Record<string, string> = {
  agent: "Run the agent: the Mesos v1 Operator API on --ip:--port (default 127.0.0.1:5051).",
  run: "Run IMAGE [ARG...] as docker run does (ARGs go to its entrypoint), stream its output, exit with its status (ucr run --help).",
  exec: "Run CMD in a running container (a session): -i forwards stdin, -t gives it a terminal (ucr exec --help).",
  attach: "Attach to a container with a terminal (tty_info) or a session: its output here, this stdin there.",
  ps: "List the agent's containers: status, limits, memory used.",
  kill: "Signal containers (--signal N, default 9).",
  rm: "Remove exited containers (sandbox, rootfs, state).",
  pull: "Pull IMAGE into the store (--docker_registry, --docker_store_dir, ...); --force refetches the manifest.",
  load: "Import the images of a docker save / OCI archive FILE (or just NAME...) into the store.",
  images: "List the agent's images: reference, digest, size, layers, last use (--work_dir DIR reads a store without an agent).",
  prune: "PRUNE_IMAGES on the agent: remove images no container uses (--exclude IMAGE keeps one).",
  version: "Print the version and build of this binary.",
  help: "Print this help; `ucr help agent` lists the agent's flags.",
};

export function mainHelp(): string {
  const lines = [
    `ucr ${VERSION}: pulls container images and runs containers behind the Mesos v1 Operator API.`,
    "",
    "usage: ucr <command> [flags]",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, text]) => `  ${name.padEnd(9)} ${text}`),
    "",
    "run, exec, attach, ps, kill, rm, prune and images talk to the agent at --agent HOST:PORT (default $UCR_AGENT, else 127.0.0.1:5051);",
    "--principal and --secret (or UCR_PRINCIPAL, UCR_SECRET) authenticate.",
    "",
    "Run `ucr help agent` for the agent's flags.",
  ];
  return lines.join("\n");
}

export function agentHelp(): string {
  return ["usage: ucr agent [--flag=value | --flag value ...]", "", "flags:", flagsHelp()].join("\n");
}
