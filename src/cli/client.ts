// `ucr run`, `ucr ps`, `ucr kill`, `ucr rm` and `ucr prune`: the agent's Operator API from the
// command line, shaped for podman/docker users (`ucr run` takes docker's arguments and options).
// (Over 400 lines: `ucr run` is most of it, its options and output copying; the rest is small.)
import { closeSync, constants as fsConstants, openSync, readSync, watch, type FSWatcher } from "node:fs";
import { constants as osConstants } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import {
  AgentError,
  type Answer,
  type ClientOptions,
  UsageError,
  call,
  clientCommand,
  describeFailure,
  expectJson,
  fail,
  request,
  splitClientOptions,
  table,
} from "./agent-client.ts";

export const RUN_USAGE =
  "usage: ucr run [--name ID] [-e K=V] [-v HOST:CONTAINER[:ro]] [--user U] [--entrypoint PROG] [--cpus N] [--mem MB] " +
  "[--network NAME]... [-p [HOST:]CONTAINER[/PROTO]]... [-d] [--keep] [--stop-timeout S] IMAGE [ARG...]";

const RUN_HELP = `Runs IMAGE on the agent, streams its output and exits with its status, as docker run does:
ARGs go to the image's entrypoint (or, without one, are the command); the container is removed afterwards.
  --name ID             container ID (default run-<random>)
  -e, --env K=V         set an environment variable (-e K passes K from here)
  -v, --volume H:C[:ro] mount host path H at C (read-only with :ro)
  -u, --user USER       run as USER (the agent needs --switch_user, its default)
  --entrypoint PROG     run PROG with the ARGs instead of the image's entrypoint
  --cpus N, --mem MB    resources (cgroup limits)
  --network NAME        join the CNI network NAME (repeatable; see README "Networking")
  -p, --publish H:C     map host port H to container port C[/tcp|udp|sctp] on the first network;
                        -p C takes a host port from the agent's --resources ports (printed)
  -d, --detach          print the ID and exit; the container keeps running
  --keep                keep the container after it exits (ucr rm ID removes it)
  --stop-timeout S      on Ctrl-C: SIGTERM, then SIGKILL after S seconds (default 10); again: SIGKILL now
  --agent HOST:PORT     the agent (default $UCR_AGENT, else 127.0.0.1:5051); --principal/--secret authenticate`;

/** Exit code for a raw wait(2) status, as a shell reports it. */
export function exitCodeOf(status: number): number {
  return status & 0x7f ? 128 + (status & 0x7f) : (status >> 8) & 0xff;
}

/** What `ucr run` was asked to do, from its arguments. */
export interface RunOptions {
  id: string;
  image: string;
  args: string[];
  entrypoint?: string;
  env: Array<{ name: string; value: string }>;
  volumes: Array<{ host: string; container: string; readonly: boolean }>;
  user?: string;
  resources: Array<{ name: "cpus" | "mem"; value: number }>;
  networks: string[];
  ports: Array<{ host_port: number; container_port: number; protocol: string }>;
  detach: boolean;
  keep: boolean;
  /** Seconds between SIGTERM and SIGKILL when the client is interrupted. */
  stopTimeout: number;
  help: boolean;
}

/**
 * Parses `ucr run` the way docker does: options until the first non-option, which is the
 * image; everything after it goes to the container (a `--` right after the image is dropped).
 */
export function parseRunArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): RunOptions {
  const o: RunOptions = {
    id: `run-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`,
    image: "",
    args: [],
    env: [],
    volumes: [],
    resources: [],
    networks: [],
    ports: [],
    detach: false,
    keep: false,
    stopTimeout: 10,
    help: false,
  };
  let i = 0;
  const valueFor = (flag: string, inline: string | undefined): string => {
    const value = inline ?? args[++i];
    if (value === undefined) throw new UsageError(`${flag} needs a value (${RUN_USAGE})`);
    return value;
  };
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    const eq = a.startsWith("--") ? a.indexOf("=") : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    switch (flag) {
      case "--name":
        o.id = valueFor(flag, inline);
        break;
      case "-e":
      case "--env": {
        const kv = valueFor(flag, inline);
        const at = kv.indexOf("=");
        const name = at < 0 ? kv : kv.slice(0, at);
        if (name === "") throw new UsageError(`${flag} '${kv}': the variable needs a name (K=V)`);
        // `-e K` passes K from this environment, and nothing when it is unset (as docker).
        if (at >= 0) o.env.push({ name, value: kv.slice(at + 1) });
        else if (env[name] !== undefined) o.env.push({ name, value: env[name]! });
        break;
      }
      case "-v":
      case "--volume":
        o.volumes.push(parseVolume(flag, valueFor(flag, inline), cwd));
        break;
      case "-u":
      case "--user":
        o.user = valueFor(flag, inline);
        break;
      case "--entrypoint":
        o.entrypoint = valueFor(flag, inline);
        break;
      case "--cpus":
      case "--mem": {
        const text = valueFor(flag, inline);
        const value = Number(text);
        if (text.trim() === "" || !Number.isFinite(value) || value < 0) {
          throw new UsageError(`${flag} needs a number of ${flag === "--cpus" ? "CPUs" : "MB"}, got '${text}'`);
        }
        o.resources.push({ name: flag === "--cpus" ? "cpus" : "mem", value });
        break;
      }
      case "--network":
        o.networks.push(valueFor(flag, inline));
        break;
      case "-p":
      case "--publish": {
        // [HOST:]CONTAINER[/PROTO], as docker writes it; no HOST: one from the agent's --resources ports.
        const value = valueFor(flag, inline);
        const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp|sctp))?$/.exec(value);
        if (!m) throw new UsageError(`${flag} '${value}' is not [HOST:]CONTAINER[/tcp|udp|sctp]`);
        o.ports.push({ host_port: Number(m[1] ?? 0), container_port: Number(m[2]), protocol: m[3] ?? "tcp" });
        break;
      }
      case "--stop-timeout": {
        const text = valueFor(flag, inline);
        const value = Number(text);
        if (text.trim() === "" || !Number.isFinite(value) || value < 0) {
          throw new UsageError(`--stop-timeout needs a number of seconds, got '${text}'`);
        }
        o.stopTimeout = value;
        break;
      }
      case "-d":
      case "--detach":
        o.detach = true;
        break;
      case "--keep":
        o.keep = true;
        break;
      case "-h":
      case "--help":
        o.help = true;
        return o;
      default:
        throw new UsageError(`unknown flag '${a}' (${RUN_USAGE})`);
    }
  }
  const image = args[i];
  if (image === undefined) throw new UsageError(`expected an image (${RUN_USAGE})`);
  o.image = image;
  if (o.ports.length > 0 && o.networks.length === 0) throw new UsageError("-p needs --network NAME: the host network has no ports to map");
  o.args = args.slice(args[i + 1] === "--" ? i + 2 : i + 1);
  return o;
}

/** `-v HOST:CONTAINER[:ro|:rw]`; HOST may be relative to the current directory (as podman). */
function parseVolume(flag: string, spec: string, cwd: string): RunOptions["volumes"][number] {
  const parts = spec.split(":");
  let mode = "rw";
  if (parts.length === 3) mode = parts.pop()!;
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
    throw new UsageError(`${flag} '${spec}': expected HOST:CONTAINER or HOST:CONTAINER:ro`);
  }
  if (mode !== "ro" && mode !== "rw") throw new UsageError(`${flag} '${spec}': the mode must be ro or rw, not '${mode}'`);
  const [host, container] = parts as [string, string];
  if (!host.startsWith("/") && !host.startsWith(".")) {
    throw new UsageError(`${flag} '${spec}': '${host}' is not a path; named volumes are not supported (give /path or ./path)`);
  }
  if (!container.startsWith("/")) throw new UsageError(`${flag} '${spec}': the container path must be absolute`);
  return { host: resolve(cwd, host), container, readonly: mode === "ro" };
}

interface PulledImage {
  reference: string;
  entrypoint: string[];
  cmd: string[];
}

/**
 * CommandInfo with docker's semantics. ARGS go to the image's Entrypoint (Mesos: shell false,
 * arguments only). An image without an Entrypoint runs ARGS themselves, as docker does (Mesos
 * would run its Cmd[0] with them): ucr asks the agent for the image (pulling it) to know which.
 */
async function commandFor(opts: ClientOptions, o: RunOptions): Promise<Record<string, unknown>> {
  const common = {
    ...(o.env.length > 0 ? { environment: { variables: o.env.map((e) => ({ name: e.name, type: "VALUE", value: e.value })) } } : {}),
    ...(o.user !== undefined ? { user: o.user } : {}),
  };
  if (o.entrypoint !== undefined) return { shell: false, value: o.entrypoint, arguments: [o.entrypoint, ...o.args], ...common };
  if (o.args.length === 0) return { shell: false, ...common };
  const answer = await request(opts, "/images/pull", { body: { name: o.image }, long: true });
  // An agent without ucr's endpoint (a Mesos agent): Mesos' rule, ARGs to the image's program.
  if (answer.status === 404) return { shell: false, arguments: o.args, ...common };
  const image = expectJson<PulledImage>(opts, `pull ${o.image}`, answer);
  if (image.entrypoint.length > 0) return { shell: false, arguments: o.args, ...common };
  return { shell: false, value: o.args[0], arguments: o.args, ...common };
}

/**
 * Copies what is appended to a sandbox file to `out`, woken by inotify (fs.watch on its
 * directory) rather than a timer, so output shows as it is written and a short run ends
 * without waiting for a poll. Reading pauses while `out` is full (a slow reader of ucr's
 * output), so a fast writer never piles its output up in memory here.
 */
class Follower {
  private fd: number | undefined;
  private offset = 0;
  private watcher: FSWatcher | undefined;
  private problem: string | undefined;
  private paused = false;
  /** `out` failed (EPIPE: whoever read ucr's output is gone): the rest is not copied. */
  private broken = false;
  private finished: (() => void) | undefined;

  constructor(
    private readonly path: string,
    private readonly out: NodeJS.WriteStream,
  ) {
    out.once("error", () => {
      this.broken = true;
      this.paused = false;
      this.finished?.();
    });
  }

  start(): void {
    const name = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), (_event, file) => {
        if (file === null || file === name) this.drain();
      });
      // The sandbox going away (the container removed by someone else) ends the watch quietly.
      this.watcher.on("error", () => this.watcher?.close());
    } catch (err) {
      this.problem = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
    this.drain();
  }

  private drain(): void {
    if (this.broken) {
      this.finished?.();
      return;
    }
    if (this.paused) return;
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
      } catch (err) {
        this.problem = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        this.finished?.();
        return;
      }
    }
    const buf = Buffer.allocUnsafe(65536);
    for (;;) {
      const n = readSync(this.fd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      if (!this.out.write(Buffer.from(buf.subarray(0, n)))) {
        this.paused = true;
        this.out.once("drain", () => {
          this.paused = false;
          this.drain();
        });
        return;
      }
    }
    this.finished?.();
  }

  /** Copies what is left, then stops; says why nothing could be read, if so. */
  async stop(): Promise<string | undefined> {
    await new Promise<void>((resolve) => {
      this.finished = resolve;
      this.drain();
    });
    this.watcher?.close();
    if (this.fd !== undefined) closeSync(this.fd);
    return this.fd === undefined ? this.problem : undefined;
  }
}

/** Resolves once everything written to `out` so far has been handed to the OS (or failed). */
function flushed(out: NodeJS.WriteStream): Promise<void> {
  if (out.destroyed || out.writableEnded) return Promise.resolve();
  return new Promise((resolve) => out.write("", () => resolve()));
}

function workDirOf(opts: ClientOptions, answer: Answer): string | undefined {
  const flags = expectJson<{ get_flags: { flags?: Array<{ name: string; value: string }> } }>(opts, "GET_FLAGS", answer);
  return flags.get_flags.flags?.find((f) => f.name === "work_dir")?.value;
}

export function runMain(args: readonly string[]): Promise<number> {
  return clientCommand("run", async () => {
    const { opts, rest } = splitClientOptions(args);
    const o = parseRunArgs(rest);
    if (o.help) {
      process.stdout.write(`${RUN_USAGE}\n\n${RUN_HELP}\n`);
      return 0;
    }
    const containerId = { value: o.id };

    const command = await commandFor(opts, o);
    const workDir = o.detach ? undefined : workDirOf(opts, await call(opts, { type: "GET_FLAGS" }));
    const volumes = o.volumes.map((v) => ({
      container_path: v.container,
      mode: v.readonly ? "RO" : "RW",
      source: { type: "HOST_PATH", host_path: { path: v.host } },
    }));

    // Interrupted (Ctrl-C, SIGTERM): SIGTERM to the container, SIGKILL after the grace
    // period; interrupted again: SIGKILL now. The container's end then ends the WAIT below.
    let stopping = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const kill = (signal: number) =>
      call(opts, { type: "KILL_CONTAINER", kill_container: { container_id: containerId, signal } }).catch(() => undefined);
    const interrupted = () => {
      if (stopping) {
        void kill(9);
        return;
      }
      stopping = true;
      if (process.stderr.isTTY) {
        process.stderr.write(`\nucr run: stopping ${o.id} (SIGKILL in ${o.stopTimeout}s; interrupt again to kill now)\n`);
      }
      void kill(15);
      killTimer = setTimeout(() => void kill(9), o.stopTimeout * 1000);
    };
    if (!o.detach) {
      process.on("SIGINT", interrupted);
      process.on("SIGTERM", interrupted);
    }

    const launch = await call(
      opts,
      {
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: containerId,
          command,
          ...(o.resources.length > 0
            ? { resources: o.resources.map((r) => ({ name: r.name, type: "SCALAR", scalar: { value: r.value } })) }
            : {}),
          container: {
            type: "MESOS",
            mesos: { image: { type: "DOCKER", docker: { name: o.image } } },
            ...(volumes.length > 0 ? { volumes } : {}),
            // Port mappings go with the first network (its portmap plugin publishes them).
            ...(o.networks.length > 0
              ? {
                  network_infos: o.networks.map((name, i) => ({
                    name,
                    ...(i === 0 && o.ports.length > 0 ? { port_mappings: o.ports } : {}),
                  })),
                }
              : {}),
          },
        },
      },
      { long: true },
    );
    if (launch.status === 202) throw new AgentError(`container ID '${o.id}' is already in use`);
    if (launch.status !== 200) throw new AgentError(launch.text ? describeFailure(launch) : `LAUNCH_CONTAINER: HTTP ${launch.status}`);
    if (o.ports.some((p) => p.host_port === 0)) await printPorts(opts, containerId);
    if (o.detach) {
      process.stdout.write(`${o.id}\n`);
      return 0;
    }

    const sandbox = workDir ? join(workDir, "containers", o.id) : undefined;
    const followers = sandbox
      ? [new Follower(join(sandbox, "stdout"), process.stdout), new Follower(join(sandbox, "stderr"), process.stderr)]
      : [];
    for (const f of followers) f.start();
    let wait: Answer;
    let unreadable: string | undefined;
    try {
      wait = await call(opts, { type: "WAIT_CONTAINER", wait_container: { container_id: containerId } }, { long: true });
    } finally {
      unreadable = (await Promise.all(followers.map((f) => f.stop()))).find((p) => p !== undefined);
      if (killTimer) clearTimeout(killTimer);
      await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    }
    const result = expectJson<{ wait_container: { exit_status?: number; message?: string } }>(opts, "WAIT_CONTAINER", wait).wait_container;
    if (result.message) fail("run", result.message);
    // Output that could not be shown (an agent on another host) stays readable: kept.
    if (unreadable) {
      fail("run", `could not read the output in ${sandbox} (${unreadable}); the container is kept: read it there, then 'ucr rm ${o.id}'`);
    } else if (!o.keep) {
      const removed = await call(opts, { type: "REMOVE_CONTAINER", remove_container: { container_id: containerId } });
      if (removed.status !== 200) fail("run", `REMOVE_CONTAINER ${o.id}: ${describeFailure(removed)}`);
    }
    return exitCodeOf(result.exit_status ?? 9);
  });
}

export function psMain(args: readonly string[]): Promise<number> {
  return clientCommand("ps", async () => {
    const { opts, rest } = splitClientOptions(args);
    if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}' (usage: ucr ps [--agent HOST:PORT])`);
    const answer = await call(opts, { type: "GET_CONTAINERS", get_containers: { show_standalone: true, show_nested: true } });
    const body = expectJson<{ get_containers?: { containers?: ContainerEntry[] } }>(opts, "GET_CONTAINERS", answer);
    const rows = (body.get_containers?.containers ?? []).map((c) => {
      const st = c.resource_statistics ?? {};
      const pid = c.container_status?.executor_pid;
      return [
        String(c.container_id?.value ?? "?"),
        pid !== undefined ? `running (pid ${pid})` : c.resource_statistics ? "starting" : "exited",
        st.cpus_limit !== undefined ? String(st.cpus_limit) : "-",
        st.mem_limit_bytes !== undefined ? `${Math.round(st.mem_limit_bytes / 1048576)}MB` : "-",
        st.mem_total_bytes !== undefined ? `${(st.mem_total_bytes / 1048576).toFixed(1)}MB` : "-",
      ];
    });
    process.stdout.write(table(["CONTAINER", "STATUS", "CPUS", "MEM LIMIT", "MEM USED"], rows));
    return 0;
  });
}

/** What `ucr ps` reads of a GET_CONTAINERS entry. */
interface ContainerEntry {
  container_id?: { value?: string };
  container_status?: { executor_pid?: number };
  resource_statistics?: { cpus_limit?: number; mem_limit_bytes?: number; mem_total_bytes?: number };
}

/** A signal by number (1-64) or name (TERM, SIGTERM); undefined if it is neither. */
export function signalNumber(text: string): number | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n >= 1 && n <= 64 ? n : undefined;
  }
  const name = text.toUpperCase().startsWith("SIG") ? text.toUpperCase() : `SIG${text.toUpperCase()}`;
  return (osConstants.signals as Record<string, number>)[name];
}

function byId(command: "kill" | "rm", args: readonly string[]): Promise<number> {
  return clientCommand(command, async () => {
    const { opts, rest } = splitClientOptions(args);
    let signal: number | undefined;
    const ids: string[] = [];
    for (let i = 0; i < rest.length; i++) {
      const m = /^(?:--signal|-s)(?:=(.*))?$/.exec(rest[i]!);
      if (command === "kill" && m) {
        const text = m[1] ?? rest[++i];
        signal = text === undefined ? undefined : signalNumber(text);
        if (signal === undefined) {
          throw new UsageError(`--signal needs a signal number (1-64) or name (TERM, KILL, ...), got '${text ?? ""}'`);
        }
      } else if (rest[i]!.startsWith("-")) {
        throw new UsageError(`unknown flag '${rest[i]}'`);
      } else {
        ids.push(rest[i]!);
      }
    }
    if (ids.length === 0) {
      throw new UsageError(`expected a container ID (usage: ucr ${command}${command === "kill" ? " [--signal N]" : ""} ID...)`);
    }
    let code = 0;
    for (const id of ids) {
      const r =
        command === "kill"
          ? await call(opts, { type: "KILL_CONTAINER", kill_container: { container_id: { value: id }, ...(signal ? { signal } : {}) } })
          : await call(opts, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } });
      if (r.status !== 200) code = fail(command, `${id}: ${describeFailure(r)}`);
      else process.stdout.write(`${id}\n`);
    }
    return code;
  });
}

export const killMain = (args: readonly string[]) => byId("kill", args);
export const rmMain = (args: readonly string[]) => byId("rm", args);

/** `ucr prune [--exclude IMAGE]...`: PRUNE_IMAGES on the agent; what went is in its log. */
export function pruneMain(args: readonly string[]): Promise<number> {
  return clientCommand("prune", async () => {
    const { opts, rest } = splitClientOptions(args);
    const excluded: string[] = [];
    for (let i = 0; i < rest.length; i++) {
      const m = /^--exclude(?:=(.*))?$/.exec(rest[i]!);
      if (!m) throw new UsageError(`unexpected argument '${rest[i]}' (usage: ucr prune [--exclude IMAGE]...)`);
      const value = m[1] ?? rest[++i];
      if (value === undefined) throw new UsageError("--exclude needs an image name");
      excluded.push(value);
    }
    const r = await call(opts, {
      type: "PRUNE_IMAGES",
      prune_images: { excluded_images: excluded.map((name) => ({ type: "DOCKER", docker: { name } })) },
    });
    if (r.status !== 200) throw new AgentError(describeFailure(r));
    process.stdout.write("pruned (the agent's log lists what was removed and the bytes freed)\n");
    return 0;
  });
}

/** The host ports the agent chose (host port 0), on stderr: `ucr run: 31000 -> 80/tcp`. */
async function printPorts(opts: ClientOptions, id: { value: string }): Promise<void> {
  const r = await call(opts, { type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
  if (r.status !== 200) return;
  type Info = { port_mappings?: Array<{ host_port: number; container_port: number; protocol?: string }> };
  type Listed = { container_id: { value: string }; container_status?: { network_infos?: Info[] } };
  const list = expectJson<{ get_containers: { containers?: Listed[] } }>(opts, "GET_CONTAINERS", r).get_containers.containers;
  for (const info of list?.find((c) => c.container_id.value === id.value)?.container_status?.network_infos ?? []) {
    for (const m of info.port_mappings ?? [])
      process.stderr.write(`ucr run: ${m.host_port} -> ${m.container_port}/${m.protocol ?? "tcp"}\n`);
  }
}
