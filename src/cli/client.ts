// `ucr run`, `ucr ps`, `ucr kill` and `ucr rm`: the local agent's Operator API from the
// command line (like mesos-execute). `--agent` names the agent (default 127.0.0.1:5051);
// `--principal`/`--secret` (or UCR_PRINCIPAL/UCR_SECRET) authenticate.
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { join } from "node:path";

interface ClientOptions {
  agent: string;
  auth?: string;
}

class UsageError extends Error {}

/**
 * Splits client options (--agent, --principal, --secret) from the rest; on a usage error it
 * says so as `ucr COMMAND: ...` and gives undefined (the command exits 2).
 */
function clientOptions(command: string, args: readonly string[]): { opts: ClientOptions; rest: string[] } | undefined {
  try {
    return splitClientOptions(args);
  } catch (err) {
    fail(command, (err as Error).message, 2);
    return undefined;
  }
}

function splitClientOptions(args: readonly string[]): { opts: ClientOptions; rest: string[] } {
  let agent = process.env.UCR_AGENT ?? "127.0.0.1:5051";
  let principal = process.env.UCR_PRINCIPAL;
  let secret = process.env.UCR_SECRET;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--(agent|principal|secret)(?:=(.*))?$/.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const value = m[2] ?? args[++i];
    if (value === undefined) throw new UsageError(`--${m[1]} needs a value`);
    if (m[1] === "agent") agent = value;
    else if (m[1] === "principal") principal = value;
    else secret = value;
  }
  const base = /^https?:\/\//.test(agent) ? agent : `http://${agent}`;
  return {
    opts: { agent: base.replace(/\/+$/, ""), ...(principal ? { auth: `Basic ${Buffer.from(`${principal}:${secret ?? ""}`).toString("base64")}` } : {}) },
    rest,
  };
}

async function api(opts: ClientOptions, body: unknown): Promise<{ status: number; text: string }> {
  let res: Response;
  try {
    res = await fetch(`${opts.agent}/api/v1`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(opts.auth ? { Authorization: opts.auth } : {}) },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new Error(`cannot reach the agent at ${opts.agent} (${(err as Error).message}); start it with 'ucr agent' or pass --agent`);
  }
  return { status: res.status, text: await res.text() };
}

function fail(command: string, message: string, code = 1): number {
  process.stderr.write(`ucr ${command}: ${message}\n`);
  return code;
}

/** Copies what is appended to `path` to `out` until `done` says stop (then drains it). */
async function follow(path: string, out: NodeJS.WriteStream, done: () => boolean): Promise<void> {
  let offset = 0;
  const buf = Buffer.alloc(65536);
  for (;;) {
    const finished = done();
    if (existsSync(path)) {
      const fd = openSync(path, "r");
      try {
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, offset);
          if (n <= 0) break;
          offset += n;
          out.write(buf.subarray(0, n));
        }
      } finally {
        closeSync(fd);
      }
    }
    if (finished) return;
    await Bun.sleep(50);
  }
}

/** Exit code for a raw wait(2) status, as a shell reports it. */
export function exitCodeOf(status: number): number {
  return status & 0x7f ? 128 + (status & 0x7f) : (status >> 8) & 0xff;
}

export async function runMain(args: readonly string[]): Promise<number> {
  const parsed = clientOptions("run", args);
  if (!parsed) return 2;
  const { opts, rest } = parsed;
  const dash = rest.indexOf("--");
  const before = dash < 0 ? rest : rest.slice(0, dash);
  const command = dash < 0 ? [] : rest.slice(dash + 1);
  let keep = false;
  let id = `run-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const resources: unknown[] = [];
  const positional: string[] = [];
  const networks: string[] = [];
  const ports: Array<{ host_port: number; container_port: number; protocol: string }> = [];
  for (let i = 0; i < before.length; i++) {
    const a = before[i]!;
    const m = /^(?:--(keep|name|cpus|mem|network|publish)|-(p))(?:=(.*))?$/.exec(a);
    if (!m) {
      if (a.startsWith("-")) return fail("run", `unknown flag '${a}' (usage: ${RUN_USAGE})`, 2);
      positional.push(a);
      continue;
    }
    const flag = m[1] ?? "publish";
    if (flag === "keep") {
      keep = true;
      continue;
    }
    const value = m[3] ?? before[++i];
    if (value === undefined) return fail("run", `${a.startsWith("--") ? `--${flag}` : "-p"} needs a value`, 2);
    if (flag === "name") id = value;
    else if (flag === "network") networks.push(value);
    else if (flag === "publish") {
      // [HOST:]CONTAINER[/PROTO], as docker writes it; no HOST: one from the agent's --resources ports.
      const p = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp|sctp))?$/.exec(value);
      if (!p) return fail("run", `-p '${value}' is not [HOST:]CONTAINER[/tcp|udp|sctp]`, 2);
      ports.push({ host_port: Number(p[1] ?? 0), container_port: Number(p[2]), protocol: p[3] ?? "tcp" });
    } else resources.push({ name: flag, type: "SCALAR", scalar: { value: Number(value) } });
  }
  if (positional.length !== 1) return fail("run", `expected one image (usage: ${RUN_USAGE})`, 2);
  if (ports.length > 0 && networks.length === 0) return fail("run", "-p needs --network NAME: the host network has no ports to map", 2);

  const flags = await api(opts, { type: "GET_FLAGS" });
  if (flags.status !== 200) return fail("run", `GET_FLAGS: HTTP ${flags.status} ${flags.text}`);
  const workDir = (JSON.parse(flags.text) as { get_flags: { flags: Array<{ name: string; value: string }> } }).get_flags.flags.find(
    (f) => f.name === "work_dir",
  )?.value;

  const launch = await api(opts, {
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: { value: id },
      command: command.length > 0 ? { shell: false, value: command[0], arguments: command } : { shell: false },
      ...(resources.length > 0 ? { resources } : {}),
      container: {
        type: "MESOS",
        mesos: { image: { type: "DOCKER", docker: { name: positional[0] } } },
        // Port mappings go with the first network (its portmap plugin publishes them).
        ...(networks.length > 0 ? { network_infos: networks.map((name, i) => ({ name, ...(i === 0 && ports.length > 0 ? { port_mappings: ports } : {}) })) } : {}),
      },
    },
  });
  if (launch.status === 202) return fail("run", `container ID '${id}' is already in use`);
  if (launch.status !== 200) return fail("run", launch.text || `HTTP ${launch.status}`);
  if (ports.some((p) => p.host_port === 0)) await printPorts(opts, id);

  let exited = false;
  const sandbox = workDir ? join(workDir, "containers", id) : undefined;
  const streams = sandbox
    ? Promise.all([follow(join(sandbox, "stdout"), process.stdout, () => exited), follow(join(sandbox, "stderr"), process.stderr, () => exited)])
    : Promise.resolve();
  const forward = (sig: NodeJS.Signals, num: number) => process.on(sig, () => void api(opts, { type: "KILL_CONTAINER", kill_container: { container_id: { value: id }, signal: num } }));
  forward("SIGINT", 9);
  forward("SIGTERM", 15);
  const wait = await api(opts, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
  exited = true;
  await streams;
  if (wait.status !== 200) return fail("run", `WAIT_CONTAINER: HTTP ${wait.status} ${wait.text}`);
  const result = (JSON.parse(wait.text) as { wait_container: { exit_status?: number; message?: string } }).wait_container;
  if (result.message) process.stderr.write(`ucr run: ${result.message}\n`);
  if (!keep) await api(opts, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } });
  return exitCodeOf(result.exit_status ?? 9);
}

const RUN_USAGE = "ucr run [--name ID] [--cpus N] [--mem MB] [--network NAME]... [-p [HOST:]CONTAINER[/PROTO]]... [--keep] IMAGE [-- CMD...]";

/** The host ports the agent chose (host port 0), on stderr: `ucr run: 31000 -> 80/tcp`. */
async function printPorts(opts: ClientOptions, id: string): Promise<void> {
  const r = await api(opts, { type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
  if (r.status !== 200) return;
  type Info = { port_mappings?: Array<{ host_port: number; container_port: number; protocol?: string }> };
  const list = (JSON.parse(r.text) as { get_containers: { containers?: Array<{ container_id: { value: string }; container_status?: { network_infos?: Info[] } }> } })
    .get_containers.containers;
  for (const info of list?.find((c) => c.container_id.value === id)?.container_status?.network_infos ?? []) {
    for (const m of info.port_mappings ?? []) process.stderr.write(`ucr run: ${m.host_port} -> ${m.container_port}/${m.protocol ?? "tcp"}\n`);
  }
}

export async function psMain(args: readonly string[]): Promise<number> {
  const parsed = clientOptions("ps", args);
  if (!parsed) return 2;
  const { opts, rest } = parsed;
  if (rest.length > 0) return fail("ps", `unexpected argument '${rest[0]}' (usage: ucr ps [--agent HOST:PORT])`, 2);
  const r = await api(opts, { type: "GET_CONTAINERS", get_containers: { show_standalone: true, show_nested: true } });
  if (r.status !== 200) return fail("ps", `HTTP ${r.status} ${r.text}`);
  const containers = (JSON.parse(r.text) as { get_containers: { containers?: Array<Record<string, any>> } }).get_containers.containers ?? [];
  const rows = containers.map((c) => {
    const st = c.resource_statistics ?? {};
    return [
      c.container_id.value as string,
      c.container_status?.executor_pid !== undefined ? `running (pid ${c.container_status.executor_pid})` : c.resource_statistics ? "starting" : "exited",
      st.cpus_limit !== undefined ? String(st.cpus_limit) : "-",
      st.mem_limit_bytes !== undefined ? `${Math.round(st.mem_limit_bytes / 1048576)}MB` : "-",
      st.mem_total_bytes !== undefined ? `${(st.mem_total_bytes / 1048576).toFixed(1)}MB` : "-",
    ];
  });
  const header = ["CONTAINER", "STATUS", "CPUS", "MEM LIMIT", "MEM USED"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()}\n`);
  return 0;
}

async function byId(command: "kill" | "rm", args: readonly string[]): Promise<number> {
  const parsed = clientOptions(command, args);
  if (!parsed) return 2;
  const { opts, rest } = parsed;
  let signal: number | undefined;
  const ids: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const m = /^--signal(?:=(.*))?$/.exec(rest[i]!);
    if (command === "kill" && m) signal = Number(m[1] ?? rest[++i]);
    else if (rest[i]!.startsWith("--")) return fail(command, `unknown flag '${rest[i]}'`, 2);
    else ids.push(rest[i]!);
  }
  if (ids.length === 0) return fail(command, `expected a container ID (usage: ucr ${command}${command === "kill" ? " [--signal N]" : ""} ID...)`, 2);
  let code = 0;
  for (const id of ids) {
    const r =
      command === "kill"
        ? await api(opts, { type: "KILL_CONTAINER", kill_container: { container_id: { value: id }, ...(signal ? { signal } : {}) } })
        : await api(opts, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } });
    if (r.status !== 200) code = fail(command, `${id}: ${r.text || `HTTP ${r.status}`}`);
    else process.stdout.write(`${id}\n`);
  }
  return code;
}

export const killMain = (args: readonly string[]) => byId("kill", args);
export const rmMain = (args: readonly string[]) => byId("rm", args);

/** `ucr prune [--exclude IMAGE]...`: PRUNE_IMAGES on the agent; what went is in its log. */
export async function pruneMain(args: readonly string[]): Promise<number> {
  const parsed = clientOptions("prune", args);
  if (!parsed) return 2;
  const { opts, rest } = parsed;
  const excluded: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const m = /^--exclude(?:=(.*))?$/.exec(rest[i]!);
    if (!m) return fail("prune", `unexpected argument '${rest[i]}' (usage: ucr prune [--exclude IMAGE]...)`, 2);
    const value = m[1] ?? rest[++i];
    if (value === undefined) return fail("prune", "--exclude needs an image name", 2);
    excluded.push(value);
  }
  const r = await api(opts, {
    type: "PRUNE_IMAGES",
    prune_images: { excluded_images: excluded.map((name) => ({ type: "DOCKER", docker: { name } })) },
  });
  if (r.status !== 200) return fail("prune", r.text || `HTTP ${r.status}`);
  process.stdout.write("pruned (the agent's log lists what was removed and the bytes freed)\n");
  return 0;
}
