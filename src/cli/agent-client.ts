// How the client commands reach an agent: `--agent HOST:PORT` (or UCR_AGENT, default
// 127.0.0.1:5051), `--principal`/`--secret` (or UCR_PRINCIPAL/UCR_SECRET), and one-line errors.

export interface ClientOptions {
  /** Base URL, e.g. http://127.0.0.1:5051 (no trailing slash). */
  agent: string;
  auth?: string;
}

/** A usage mistake: the command says it and exits 2. */
export class UsageError extends Error {}

/** The agent could not be asked, or answered something unusable: one line, exit 1. */
export class AgentError extends Error {}

const DEFAULT_AGENT = "127.0.0.1:5051";

/** Splits the agent options from the rest of the arguments (which keep their order). */
export function splitClientOptions(args: readonly string[], env: NodeJS.ProcessEnv = process.env): { opts: ClientOptions; rest: string[] } {
  let agent = env.UCR_AGENT || DEFAULT_AGENT;
  let principal = env.UCR_PRINCIPAL;
  let secret = env.UCR_SECRET;
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
  const auth = principal ? { auth: `Basic ${Buffer.from(`${principal}:${secret ?? ""}`).toString("base64")}` } : {};
  return { opts: { agent: base.replace(/\/+$/, ""), ...auth }, rest };
}

export interface Answer {
  status: number;
  text: string;
}

/** One HTTP request to the agent; a connection failure is an AgentError naming the agent. */
export async function request(
  opts: ClientOptions,
  path: string,
  init: { method?: string; body?: unknown; long?: boolean } = {},
): Promise<Answer> {
  let res: Response;
  try {
    res = await fetch(`${opts.agent}${path}`, {
      // Bun gives up on a connection idle for 5 minutes; a WAIT or a LAUNCH that pulls is
      // silent for as long as the container runs or the pull takes.
      ...(init.long ? { timeout: false } : {}),
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: {
        ...(init.body !== undefined ? { "Content-Type": "application/json" } : {}),
        ...(opts.auth ? { Authorization: opts.auth } : {}),
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
  } catch (err) {
    throw new AgentError(
      `cannot reach the agent at ${opts.agent} (${oneLine((err as Error).message)}); ` +
        "start it with 'ucr agent' or pass --agent HOST:PORT (or set UCR_AGENT)",
    );
  }
  try {
    return { status: res.status, text: await res.text() };
  } catch (err) {
    throw new AgentError(`the agent at ${opts.agent} closed the connection while answering ${path} (${oneLine((err as Error).message)})`);
  }
}

/** POST /api/v1 with a JSON call; `long` for calls that answer when something ends. */
export function call(opts: ClientOptions, body: unknown, { long = false } = {}): Promise<Answer> {
  return request(opts, "/api/v1", { body, long });
}

/** The JSON of a 200 answer, or an AgentError with the agent's own message. */
export function expectJson<T>(opts: ClientOptions, what: string, answer: Answer): T {
  if (answer.status !== 200) throw new AgentError(`${what}: ${describeFailure(answer)}`);
  try {
    return JSON.parse(answer.text) as T;
  } catch {
    throw new AgentError(
      `${what}: the agent at ${opts.agent} answered 200 with something that is not JSON: ${oneLine(answer.text).slice(0, 200)}`,
    );
  }
}

/** "HTTP 401: Authentication required", or the agent's one-line message with its status. */
export function describeFailure(answer: Answer): string {
  const text = oneLine(answer.text);
  return text ? `${text} (HTTP ${answer.status})` : `HTTP ${answer.status}`;
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

/** `ucr COMMAND: message` on stderr; returns the exit code. */
export function fail(command: string, message: string, code = 1): number {
  process.stderr.write(`ucr ${command}: ${oneLine(message)}\n`);
  return code;
}

/**
 * Runs a client command: a UsageError exits 2, an AgentError (or any other failure) exits 1,
 * each as one line naming the command; never a stack trace.
 */
export async function clientCommand(command: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) return fail(command, err.message, 2);
    return fail(command, (err as Error).message ?? String(err));
  }
}

/** Left-aligned columns, two spaces apart, as `ps` and `images` print them. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map(
      (row) =>
        `${row
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}
