// Worker threads: the compiled agent starts them when first needed; a lazy worker stops when
// idle and starts again; and the gc worker's real operations through the RPC layer from source.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { linkSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lazyWorker, startWorker } from "../../src/workers/pool.ts";
import type { WorkerClient } from "../../src/workers/rpc.ts";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { rejection } from "../helpers/async.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const threadsOf = (pid: number) => readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim());

test.skipIf(!isRoot)("the compiled agent starts its worker threads when first needed: pull and extract together, gc alone (needs root)", async () => {
  const work = tempDir("ucr-workers-");
  const images = join(work, "images");
  mkdirSync(images);
  buildBusyboxImage(join(work, "busybox"), { tag: "1" });
  await saveArchive(join(work, "busybox"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  const agent = await startAgent({ args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"] });
  try {
    // Listening, and not one worker thread (Bun names them "Worker").
    expect(agent.log()).not.toMatch(/worker \S+ started/);
    expect(threadsOf(agent.proc.pid)).not.toContain("Worker");

    const launch = (id: string, image?: string) =>
      agent.call({
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: { value: id },
          command: { value: "true" },
          ...(image ? { container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: image } } } } } : {}),
        },
      });
    const waitAndRemove = async (id: string) => {
      await (await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } })).text();
      expect((await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    };
    // No image: no pull; its removal needs the gc worker only.
    expect((await launch("plain")).status).toBe(200);
    await waitAndRemove("plain");
    const started = () => [...agent.log().matchAll(/worker (\S+) started/g)].map((m) => m[1]!);
    expect(started()).toEqual(["gc"]);
    // A pull starts the pull worker and, beside it, every extract worker (at least two).
    expect((await launch("pulled", "alpine")).status).toBe(200);
    await waitAndRemove("pulled");
    const names = started();
    expect(names).toContain("pull");
    expect(names.filter((n) => n.startsWith("extract")).length).toBeGreaterThanOrEqual(2);
    expect(new Set(names).size).toBe(names.length);
    expect(threadsOf(agent.proc.pid).filter((t) => t === "Worker").length).toBeGreaterThanOrEqual(names.length - 1);
  } finally {
    expect(await agent.stop()).toBe(0);
    rmSync(work, { recursive: true, force: true });
  }
});

test("a lazy worker stops after its idle time and starts again at the next call, on a new thread", async () => {
  const w = lazyWorker("gc", "gc-lazy", 150);
  try {
    expect(w.running).toBe(false);
    const first = await w.call<{ threadId: number }>("ping");
    expect(w.running).toBe(true);
    for (let i = 0; i < 100 && w.running; i++) await Bun.sleep(20);
    expect(w.running).toBe(false);
    const second = await w.call<{ threadId: number }>("ping");
    expect(second.threadId).toBeGreaterThan(0);
    expect(second.threadId).not.toBe(first.threadId);
  } finally {
    w.terminate();
  }
  expect((await rejection(w.call("ping"))).message).toMatch(/worker gc-lazy was stopped/);
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
