// Helpers the benchmarks share.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface RunResult {
  code: number;
  ms: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  /** Added to PATH and HOME. */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Pipe and return stdout (otherwise as the runner's default). */
  stdout?: boolean;
}

/**
 * How a benchmark runs its commands: each is tracked in `live` while it runs (so cleanup
 * can kill it), killed at its timeout, and timed from spawn to exit. `checkStop` throws
 * once the benchmark is being interrupted, so nothing new starts then. Not piping stdout
 * by default keeps the harness's own cost out of timed commands that print nothing useful.
 */
export function commandRunner(defaults: { path: string; timeoutMs: number; stdout: boolean; checkStop: () => void }) {
  const live = new Set<Bun.Subprocess>();

  async function exec(cmd: string[], opts: ExecOptions = {}): Promise<RunResult> {
    defaults.checkStop();
    const timeoutMs = opts.timeoutMs ?? defaults.timeoutMs;
    const started = performance.now();
    let proc: Bun.Subprocess<"ignore", "pipe" | "ignore", "pipe">;
    try {
      proc = Bun.spawn(cmd, {
        stdin: "ignore",
        stdout: (opts.stdout ?? defaults.stdout) ? "pipe" : "ignore",
        stderr: "pipe",
        env: { PATH: defaults.path, HOME: process.env.HOME ?? "/root", ...opts.env },
      });
    } catch (e) {
      // A missing binary is a failed case, not a crashed benchmark.
      return {
        code: 127,
        ms: performance.now() - started,
        stdout: "",
        stderr: `cannot run ${cmd[0]}: ${(e as Error).message}`,
        timedOut: false,
      };
    }
    live.add(proc);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutMs);
    const [stdout, stderr, code] = await Promise.all([
      proc.stdout instanceof ReadableStream ? new Response(proc.stdout).text() : Promise.resolve(""),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const ms = performance.now() - started;
    clearTimeout(timer);
    live.delete(proc);
    return { code, ms, stdout, stderr, timedOut };
  }

  /** One line saying why a command failed, for a table. */
  function reason(r: RunResult): string {
    if (r.timedOut) return "timed out";
    const lines = `${r.stderr}\n${r.stdout}`
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "");
    const err = lines.find((l) => /error|fail|cannot|denied|invalid|not supported|not permitted/i.test(l)) ?? lines[lines.length - 1] ?? "";
    return `exit ${r.code}: ${err.slice(0, 200).replace(/\|/g, "/")}`;
  }

  /** Runs a setup command that must succeed; its stdout. */
  async function mustRun(cmd: string[], opts: ExecOptions = {}): Promise<string> {
    const r = await exec(cmd, { ...opts, stdout: true });
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${reason(r)}`);
    return r.stdout;
  }

  return { live, exec, reason, mustRun };
}

/** Mount points at or below `dir`, deepest first (podman's overlay can leave some behind). */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4]?.replace(/\\040/g, " ");
    if (mp && (mp === dir || mp.startsWith(`${dir}/`))) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Writes a report to bench/results/<name>-<date>[-quick].md (a quick run never overwrites
 * the day's full one) and says where, with the total time since `started`.
 */
export function writeResult(name: string, text: string, quick: boolean, started: number): void {
  const dir = join(import.meta.dir, "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().slice(0, 10)}${quick ? "-quick" : ""}.md`);
  writeFileSync(file, text);
  console.error(`wrote ${file} (total ${((performance.now() - started) / 1000).toFixed(0)}s)`);
}

/** Runs a benchmark's main, always cleans up, and exits 1 on failure (quietly once interrupted). */
export async function runBench(
  script: string,
  main: () => Promise<void>,
  cleanup: () => Promise<void>,
  interrupted: () => boolean,
): Promise<never> {
  let exitCode = 0;
  try {
    await main();
  } catch (e) {
    // An interrupt is reported by its signal handler; a stack trace would only be noise.
    if (!interrupted()) console.error(`${script}: ${(e as Error).stack ?? e}`);
    exitCode = 1;
  } finally {
    await cleanup();
  }
  process.exit(exitCode);
}

/**
 * One Operator API call in JSON to an agent (test/helpers/agent.ts starts them), bounded by
 * `timeoutMs`: its status and body text.
 */
export async function operatorCall(
  agent: { url: string },
  type: string,
  body: Record<string, unknown>,
  timeoutMs: number,
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${agent.url}/api/v1`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ type, ...body }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, text: await res.text() };
}

/** The agent's own "POST /api/v1 LAUNCH_CONTAINER 200 47.7ms" per container ID. */
export function serverLaunchMs(log: string[]): Map<string, number> {
  const out = new Map<string, number>();
  let last: string | undefined;
  for (const line of log) {
    // This ucr names the container on the call's line; an older one named it in the line before.
    const named = /POST \/api\/v1 LAUNCH_CONTAINER (\S+) 200 ([\d.]+)ms/.exec(line);
    if (named) {
      out.set(named[1]!, Number(named[2]));
      continue;
    }
    const running = /container (\S+) running \(pid/.exec(line);
    if (running) last = running[1];
    const call = /POST \/api\/v1 LAUNCH_CONTAINER 200 ([\d.]+)ms/.exec(line);
    if (call && last) {
      out.set(last, Number(call[1]));
      last = undefined;
    }
  }
  return out;
}
