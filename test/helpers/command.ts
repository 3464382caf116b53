// Running a command to completion from a test, with its output.

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `argv` (no stdin) until it exits or `timeoutMs` passes (then SIGKILL), and collects
 * its output. `env` replaces the environment; without it the test's own is inherited.
 */
export async function runCommand(argv: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CommandResult> {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", ...(opts.env ? { env: opts.env } : {}) });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}
