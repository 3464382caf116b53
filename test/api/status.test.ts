// Errors by kind: one table from kind to status at the API edge, kinds that survive the trip
// back from a worker thread, and one log line per failed call naming the call, the container
// and the reason.
import { afterAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { STATUS_OF_KIND, failureOf } from "../../src/api/status.ts";
import { ApiError } from "../../src/api/http.ts";
import { type UcrError, internal, invalid, kindOf, notFound, precondition, unavailable, unimplemented } from "../../src/errors.ts";
import { PullError } from "../../src/images/puller.ts";
import { NetworkError } from "../../src/network/cni.ts";
import { startWorker } from "../../src/threads/pool.ts";
import { WorkerError, type WorkerClient } from "../../src/threads/rpc.ts";
import { PULL_WORKER } from "../../src/images/resolve.ts";
import { rejection } from "../helpers/async.ts";
import { startAgent, tempDir } from "../helpers/agent.ts";

const scratch = tempDir("ucr-status-");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test("each kind answers with Mesos' status for it; a precondition is Mesos' 500", () => {
  expect(STATUS_OF_KIND).toEqual({
    invalid: 400,
    "not-found": 404,
    conflict: 409,
    precondition: 500,
    unimplemented: 501,
    unavailable: 503,
    internal: 500,
  });
  const cases: Array<[UcrError, number]> = [
    [invalid("bad"), 400],
    [notFound("gone"), 404],
    [precondition("still running"), 500],
    [unimplemented("later"), 501],
    [unavailable("stopping"), 503],
    [internal("disk full"), 500],
    [new PullError("alpine", "not found on the registry"), 400],
    [new NetworkError("internal", "the bridge plugin failed"), 500],
  ];
  for (const [err, status] of cases) expect(failureOf(err)).toEqual({ status, message: err.message, expected: true });
});

test("the edge's own errors keep their status and headers; anything else is a 500 with its message", () => {
  expect(failureOf(new ApiError(401, "Authentication required", { "WWW-Authenticate": "Basic" }))).toEqual({
    status: 401,
    message: "Authentication required",
    headers: { "WWW-Authenticate": "Basic" },
    expected: true,
  });
  const enospc = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
  expect(failureOf(enospc)).toEqual({ status: 500, message: "Internal error: ENOSPC: no space left on device, write", expected: false });
  expect(failureOf("a string")).toEqual({ status: 500, message: "Internal error: a string", expected: false });
  expect(kindOf(enospc)).toBe("internal");
});

test("a cause is kept, not flattened into the message", () => {
  const cause = new Error("connection refused");
  const err = new PullError("alpine", "cannot reach the registry", { cause });
  expect(err.message).toBe("pull alpine: cannot reach the registry");
  expect(err.cause).toBe(cause);
  expect(err.name).toBe("PullError");
  expect(invalid("x", cause).cause).toBe(cause);
});

test("an error thrown in a worker comes back with its name and kind", async () => {
  const pull = startWorker(PULL_WORKER);
  try {
    // An archive that is not a tar: the archive reader's ArchiveError, invalid.
    const file = join(scratch, "not-a.tar");
    writeFileSync(file, "x".repeat(2048));
    const err = await rejection(pull.call("archive", { file, name: "app:1" }));
    expect(err).toBeInstanceOf(WorkerError);
    expect({ name: err.name, kind: (err as WorkerError).kind }).toEqual({ name: "ArchiveError", kind: "invalid" });
    expect(failureOf(err).status).toBe(400);
    // A failure that is not one of ours stays internal across the thread too.
    const unknown = await rejection((pull as unknown as WorkerClient<{ explode(): void }>).call("explode"));
    expect((unknown as WorkerError).kind).toBe("internal");
    expect(failureOf(unknown).status).toBe(500);
  } finally {
    pull.terminate();
  }
});

test("a failed call is logged once with its call type, container ID and reason", async () => {
  const agent = await startAgent();
  try {
    const kill = await agent.call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: "nobody-here" } } });
    expect(kill.status).toBe(404);
    const remove = await agent.call({ type: "REMOVE_NESTED_CONTAINER", remove_nested_container: { container_id: { value: "top" } } });
    expect(remove.status).toBe(400);
    expect((await agent.call({ type: "GET_HEALTH" })).status).toBe(200);
  } finally {
    // Stopped first, so everything it logged has been read.
    expect(await agent.stop()).toBe(0);
  }
  const log = agent.log();
  expect(log).toMatch(
    /POST \/api\/v1 KILL_CONTAINER nobody-here 404 [\d.]+ms: Container 'nobody-here' cannot be found \(or is already killed\)\n/,
  );
  expect(log).toMatch(
    /POST \/api\/v1 REMOVE_NESTED_CONTAINER top 400 [\d.]+ms: Failed to validate agent::Call: Expecting 'container_id.parent' to be present\n/,
  );
  // A call that succeeds has no reason on its line.
  expect(log).toMatch(/POST \/api\/v1 GET_HEALTH 200 [\d.]+ms\n/);
});
