// Promise helpers for tests that wait on worker threads.

/**
 * The error a promise rejects with. bun:test's `expect(p).rejects` waits on the promise
 * without letting worker messages in, so a promise that a worker thread settles would
 * never settle there; awaiting it normally does.
 */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)?.slice(0, 200)}`);
    },
    (err: Error) => err,
  );
}

/**
 * The port a starting server prints: polls `output()` for `pattern` (its first group is the
 * port) until the process exits or 15 s pass; 0 if it never appeared.
 */
export async function waitForPort(
  output: () => string,
  pattern: RegExp,
  proc: { exitCode: number | null },
  deadline = Date.now() + 15_000,
): Promise<number> {
  while (Date.now() < deadline) {
    const m = pattern.exec(output());
    if (m) return Number(m[1]);
    if (proc.exitCode !== null) return 0;
    await Bun.sleep(20);
  }
  return 0;
}
