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
