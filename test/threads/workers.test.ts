// Worker threads: the compiled agent starts them when first needed; a lazy worker stops when
// idle and starts again; and the disk worker's real operations through the RPC layer from source.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { linkSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lazyWorker, startWorker } from "../../src/threads/pool.ts";
import type { WorkerClient } from "../../src/threads/rpc.ts";
import { DISK_WORKER, type DiskOps } from "../../src/gc/disk.ts";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { rejection } from "../helpers/async.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const threadsOf = (pid: number) => readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim());

test.skipIf(!isRoot)(
  "the compiled agent starts its worker threads when first needed: pull and extract together, disk alone (needs root)",
  async () => {
    const work = tempDir("ucr-workers-");
    const images = join(work, "images");
    mkdirSync(images);
    buildBusyboxImage(join(work, "busybox"), { tag: "1" });
    await saveArchive(join(work, "busybox"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
    const agent = await startAgent({
      args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
    });
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
      // No image: no pull; its removal needs the disk worker only.
      expect((await launch("plain")).status).toBe(200);
      await waitAndRemove("plain");
      const started = () => [...agent.log().matchAll(/worker (\S+) started/g)].map((m) => m[1]!);
      expect(started()).toEqual(["disk"]);
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
  },
);

test("a lazy worker stops after its idle time and starts again at the next call, on a new thread", async () => {
  const w = lazyWorker(DISK_WORKER, "disk-lazy", 150);
  try {
    expect(w.running).toBe(false);
    const first = await w.call("ping");
    expect(w.running).toBe(true);
    for (let i = 0; i < 100 && w.running; i++) await Bun.sleep(20);
    expect(w.running).toBe(false);
    const second = await w.call("ping");
    expect(second.threadId).toBeGreaterThan(0);
    expect(second.threadId).not.toBe(first.threadId);
  } finally {
    w.terminate();
  }
  expect((await rejection(w.call("ping"))).message).toMatch(/worker disk-lazy was stopped/);
});

describe("disk worker from source", () => {
  let gc: WorkerClient<DiskOps>;
  const dir = tempDir("ucr-gcw-");
  beforeAll(() => {
    gc = startWorker(DISK_WORKER);
  });
  afterAll(() => {
    gc.terminate();
    rmSync(dir, { recursive: true, force: true });
  });

  test("ping answers from another thread", async () => {
    const pong = await gc.call("ping");
    expect(pong.worker).toBe("disk");
    expect(pong.threadId).toBeGreaterThan(0);
  });

  test("du measures like du(1): allocated blocks, hard links once, symlinks not followed", async () => {
    const tree = join(dir, "tree");
    mkdirSync(join(tree, "a/b"), { recursive: true });
    writeFileSync(join(tree, "a/one"), Buffer.alloc(10_000, 1));
    writeFileSync(join(tree, "a/b/two"), Buffer.alloc(70_000, 2));
    linkSync(join(tree, "a/b/two"), join(tree, "hardlink"));
    symlinkSync("/usr", join(tree, "to-usr"));
    const usage = await gc.call("du", { path: tree });
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
    // Not one of the disk worker's operations: only a caller that lies about its type can ask.
    const untyped = gc as unknown as WorkerClient<{ explode(): void }>;
    expect((await rejection(untyped.call("explode"))).message).toMatch(/worker disk has no operation 'explode'/);
  });
});

test("a call is typed by what its worker serves: a wrong name, argument or use of the answer does not compile", () => {
  // Checked by tsc (`bun run typecheck`, part of `bun run test`): each line marked below must
  // be a type error, or the typecheck fails. The function is never called.
  const misuse = (disk: WorkerClient<DiskOps>) => {
    // @ts-expect-error: the disk worker has no operation 'explode'
    void disk.call("explode");
    // @ts-expect-error: du takes { path }
    void disk.call("du", { dir: "/" });
    // @ts-expect-error: du answers bytes, apparentBytes and entries, no size
    void disk.call("du", { path: "/" }).then((usage) => usage.size);
    // @ts-expect-error: remove needs the root it must stay within
    void disk.call("remove", { path: "/tmp/x" });
  };
  expect(misuse.length).toBe(1);
});
