// Runs the built binary (dist/ucr) as a real agent process on a free loopback port, with
// its own work_dir, and talks to it over HTTP. Every test and benchmark that needs an agent
// uses this.
import { existsSync, mkdtempSync, readdirSync, rmSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitForPort } from "./async.ts";
import { type CommandResult, runCommand } from "./command.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const UCR = join(ROOT, "dist", "ucr");

export function requireBinary(): string {
  if (!existsSync(UCR)) {
    throw new Error(`${UCR} is missing: run the tests with \`bun run test\`, which builds it first`);
  }
  return UCR;
}

export function tempDir(prefix = "ucr-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RunningAgent {
  port: number;
  url: string;
  workDir: string;
  /** The cgroups root this agent was given (undefined when the test chose one). */
  cgroupsRoot: string | undefined;
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
  /** POST /api/v1 with a JSON body (object or raw string) and optional extra headers; resolves with the whole answer. */
  call(body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** The same, resolving as soon as the headers are in (streams, WAIT's early headers). */
  callStreaming(body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** SIGTERM (or the given signal), wait (at most `graceMs`, then SIGKILL), and return the exit code. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number>;
}

export interface StartOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Keep the work_dir after stop (default: removed). */
  keepWorkDir?: boolean;
  /** The binary to run (default dist/ucr; a benchmark runs a private copy). */
  binary?: string;
  /** In its own session: a Ctrl-C at the terminal does not reach it (a benchmark's cleanup still needs it). */
  detached?: boolean;
  /** How long it may take to listen (default 15 s). */
  listenTimeoutMs?: number;
}

export async function startAgent(options: StartOptions = {}): Promise<RunningAgent> {
  const ucr = options.binary ?? requireBinary();
  const args = options.args ?? [];
  // A dir of ours (removed at stop) for the work dir and the runtime dir the test does not
  // name; none when it names both (its dirs are its own to remove).
  const given = args.find((a) => a.startsWith("--work_dir="))?.slice("--work_dir=".length);
  const namesRuntime = args.some((a) => a.startsWith("--runtime_dir"));
  const ownDir = given === undefined || !namesRuntime ? tempDir() : undefined;
  const workDir = given ?? ownDir!;
  const hasWorkDir = args.some((a) => a.startsWith("--work_dir"));
  const hasPort = args.some((a) => a.startsWith("--port"));
  // Each agent its own cgroups root, so test runs side by side never share a container's cgroup.
  const hasCgroupsRoot = args.some((a) => a.startsWith("--cgroups_root"));
  // Named after the work dir, so an agent restarted on the same work dir gets the same root.
  const wdPath = workDir.replace(/\/+$/, "");
  const cgroupsRoot = `ucr-test/${wdPath.split("/").pop()}-${Bun.hash(wdPath).toString(16).slice(0, 8)}`;
  const proc = Bun.spawn(
    [
      ucr,
      "agent",
      ...(hasPort ? [] : ["--port=0"]),
      ...(hasWorkDir ? [] : [`--work_dir=${workDir}`]),
      ...(namesRuntime ? [] : [`--runtime_dir=${join(ownDir!, "run")}`]),
      ...(hasCgroupsRoot ? [] : [`--cgroups_root=${cgroupsRoot}`]),
      ...args,
    ],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...(options.env ?? {}) },
      detached: options.detached ?? false,
    },
  );
  let stderr = "";
  const decoder = new TextDecoder();
  const pump = (async () => {
    for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();

  const deadline = Date.now() + (options.listenTimeoutMs ?? 15_000);
  const port = await waitForPort(() => stderr, /agent listening on http:\/\/[^\s]*:(\d+)/, proc, deadline);
  if (!port) {
    proc.kill("SIGKILL");
    await proc.exited;
    await pump;
    throw new Error(`agent did not start (exit ${proc.exitCode}):\n${stderr}`);
  }
  const url = `http://127.0.0.1:${port}`;
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}/api/v1`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  return {
    port,
    url,
    workDir,
    cgroupsRoot: hasCgroupsRoot ? undefined : cgroupsRoot,
    proc,
    log: () => stderr,
    async call(body, headers = {}) {
      // WAIT_CONTAINER answers its headers at once and its body at exit: a call is over when
      // its whole answer is in, so a test that only looks at the status still waited for it.
      const res = await post(body, headers);
      return new Response(await res.arrayBuffer(), { status: res.status, statusText: res.statusText, headers: res.headers });
    },
    callStreaming: post,
    async stop(signal = "SIGTERM", graceMs?: number) {
      if (proc.exitCode === null) proc.kill(signal);
      if (graceMs !== undefined && !(await Promise.race([proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]))) {
        proc.kill("SIGKILL");
      }
      const code = await proc.exited;
      await pump;
      // Kept only when it is the work dir the test asked to keep (with the test's own work
      // dir it holds just this start's runtime dir, which no later start reuses).
      if (ownDir !== undefined && !(options.keepWorkDir && given === undefined)) rmSync(ownDir, { recursive: true, force: true });
      // Empty dirs only: a restarted agent on a kept work dir makes it again if it needs it.
      if (!hasCgroupsRoot) removeCgroupRoot(cgroupsRoot);
      return code;
    },
  };
}

/** Run `dist/ucr ARGS` to completion and collect its output. */
export async function runUcr(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<CommandResult> {
  return runCommand([requireBinary(), ...args], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, timeoutMs });
}

/**
 * Removes a test's cgroups root from every hierarchy, with the cgroups of the containers the
 * test left to the agent (an agent that stops keeps its containers, as Mesos' does, so their
 * cgroups stay), deepest first; rmdir refuses a cgroup that still holds a process, which stays.
 */
function removeCgroupRoot(root: string): void {
  const base = "/sys/fs/cgroup";
  let hierarchies: string[] = [];
  try {
    hierarchies = existsSync(join(base, "cgroup.controllers")) ? [base] : readdirSync(base).map((h) => join(base, h));
  } catch {
    return;
  }
  for (const h of hierarchies) {
    const dir = join(h, root);
    if (existsSync(dir)) removeCgroupTree(dir);
  }
}

function removeCgroupTree(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
    rmdirSync(dir);
  } catch {
    // a process still in it (its own test fails on that), or gone already
  }
}
