// Worker threads: started from the compiled binary (the agent refuses to start if one does
// not answer), and the gc worker's real operations through the RPC layer from source.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { linkSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startWorker } from "../../src/workers/pool.ts";
import type { WorkerClient } from "../../src/workers/rpc.ts";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { rejection } from "../helpers/async.ts";

test("the compiled binary starts every worker thread and each answers", async () => {
  const agent = await startAgent();
  try {
    const ready = [...agent.log().matchAll(/worker ([\w-]+) ready \(thread (\d+), [\d.]+ms\)/g)];
    const names = ready.map((m) => m[1]!);
    expect(names).toContain("pull");
    expect(names).toContain("gc");
    // Layers unpack in parallel: at least two extract workers.
    expect(names.filter((n) => n.startsWith("extract")).length).toBeGreaterThanOrEqual(2);
    const threads = ready.map((m) => Number(m[2]));
    expect(new Set(threads).size).toBe(ready.length);
    for (const t of threads) expect(t).toBeGreaterThan(0); // not the main thread (0)
    // The agent only listens after the workers answered.
    expect(agent.log().indexOf("worker gc ready")).toBeLessThan(agent.log().indexOf("agent listening"));
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});

describe("gc worker from source", () => {
  let gc: WorkerClient;
  const dir = tempDir("ucr-gcw-");
  beforeAll(() => {
    gc = startWorker("gc");
  });
  afterAll(() => {
    gc.terminate();
    rmSync(dir, { recursive: true, force: true });
  });

  test("ping answers from another thread", async () => {
    const pong = await gc.call<{ worker: string; threadId: number }>("ping");
    expect(pong.worker).toBe("gc");
    expect(pong.threadId).toBeGreaterThan(0);
  });

  test("du measures like du(1): allocated blocks, hard links once, symlinks not followed", async () => {
    const tree = join(dir, "tree");
    mkdirSync(join(tree, "a/b"), { recursive: true });
    writeFileSync(join(tree, "a/one"), Buffer.alloc(10_000, 1));
    writeFileSync(join(tree, "a/b/two"), Buffer.alloc(70_000, 2));
    linkSync(join(tree, "a/b/two"), join(tree, "hardlink"));
    symlinkSync("/usr", join(tree, "to-usr"));
    const usage = await gc.call<{ bytes: number; apparentBytes: number; entries: number }>("du", { path: tree });
    const du = Bun.spawnSync(["du", "-s", "-B1", tree]);
    expect(usage.bytes).toBe(Number(du.stdout.toString().split("\t")[0]));
    const apparent = Bun.spawnSync(["du", "-s", "-b", tree]);
    expect(usage.apparentBytes).toBe(Number(apparent.stdout.toString().split("\t")[0]));
    expect(usage.entries).toBe(6); // tree, a, b, one, two (its hard link not again), to-usr
  });

  test("remove deletes a tree inside its root and refuses anything else", async () => {
    const root = join(dir, "store");
    mkdirSync(join(root, "layers/x/y"), { recursive: true });
    writeFileSync(join(root, "layers/x/y/f"), "data");
    symlinkSync(dir, join(root, "layers/x/escape")); // must be unlinked, not followed
    expect(await gc.call("remove", { path: join(root, "layers/x"), within: root })).toEqual({ removed: true });
    expect(await Bun.file(join(root, "layers/x/y/f")).exists()).toBe(false);
    expect(await Bun.file(join(dir, "store/layers")).exists()).toBe(false); // dirs are not files…
    expect(Bun.spawnSync(["test", "-d", join(root, "layers")]).exitCode).toBe(0); // …the parent stays
    expect((await rejection(gc.call("remove", { path: root, within: root }))).message).toMatch(/refusing to remove .*: it is not inside/);
    expect((await rejection(gc.call("remove", { path: "/etc", within: root }))).message).toMatch(/refusing to remove \/etc/);
    expect((await rejection(gc.call("remove", { path: `${root}/../..`, within: root }))).message).toMatch(/refusing/);
  });

  test("an unknown operation is an error, not a hang", async () => {
    expect((await rejection(gc.call("explode"))).message).toMatch(/worker gc has no operation 'explode'/);
  });
});
