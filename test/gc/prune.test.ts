// Image GC against a real agent and store: PRUNE_IMAGES keeps what running, exited and
// nested containers and image volumes use, and what is excluded; automatic GC on a small
// tmpfs store frees least recently used images down to the headroom; concurrent launches,
// pulls and prunes leave every container's rootfs intact; a GC cut short is finished later.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { BUSYBOX_CONFIG, addImage, busyboxLayerTar, saveArchive, tarDir } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-gc-");
const images = join(work, "images");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** An image with the busybox layer (unless `alone`) plus one layer of its own (`bytes` of data). */
async function makeImage(name: string, opts: { alone?: boolean; bytes?: number } = {}): Promise<void> {
  const src = join(work, `src-${name}`);
  mkdirSync(src, { recursive: true });
  const data = Buffer.alloc(opts.bytes ?? 64);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(Math.floor(Math.random() * 2 ** 32), i); // incompressible enough
  writeFileSync(join(src, `${name}.bin`), data);
  const layout = join(work, `layout-${name}`);
  addImage(layout, {
    tag: "1",
    layers: [
      ...(opts.alone ? [] : [{ tar: busyboxLayerTar(), compression: "gzip" as const }]),
      { tar: tarDir(src), compression: "gzip" as const },
    ],
    config: BUSYBOX_CONFIG,
  });
  await saveArchive(layout, join(images, `${name}.tar`), `${name}:latest`, { srcTag: "1" });
}

function agentArgs(extra: string[] = []): string[] {
  return [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime", ...extra];
}

async function call(agent: RunningAgent, body: unknown): Promise<{ status: number; text: string }> {
  const res = await agent.call(body);
  return { status: res.status, text: await res.text() };
}

const launch = (
  agent: RunningAgent,
  id: Record<string, unknown>,
  image: string | undefined,
  script: string,
  extra: Record<string, unknown> = {},
) =>
  call(agent, {
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: id,
      command: { value: script },
      ...(image ? { container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: image } } }, ...extra } } : {}),
    },
  });

function storeImages(workDir: string): string[] {
  return readdirSync(join(workDir, "store/docker/images"))
    .map((f) => JSON.parse(readFileSync(join(workDir, "store/docker/images", f), "utf8")).reference as string)
    .sort();
}

/** Every record's layers are there; every layer dir belongs to some record (after a prune). */
function expectConsistent(workDir: string, orphansAllowed = false): void {
  const store = join(workDir, "store/docker");
  const used = new Set<string>();
  for (const f of readdirSync(join(store, "images"))) {
    const rec = JSON.parse(readFileSync(join(store, "images", f), "utf8")) as { layers: string[] };
    for (const l of rec.layers) {
      used.add(l.slice(7));
      expect(existsSync(join(store, "layers", l.slice(7), "layer.json"))).toBe(true);
    }
  }
  if (!orphansAllowed) for (const dir of readdirSync(join(store, "layers"))) expect(used.has(dir)).toBe(true);
  expect(readdirSync(join(store, "gc"))).toEqual([]);
}

beforeAll(async () => {
  mkdirSync(images, { recursive: true });
  for (const name of ["alpine", "rich", "xtra", "nest", "vol", "keep", "unused"])
    await makeImage(name, { alone: name === "vol" || name === "keep" });
});

describe.skipIf(!isRoot)("PRUNE_IMAGES (needs root)", () => {
  test("what containers use and what is excluded stays; the rest goes, shared layers stay", async () => {
    const wd = join(work, "wd-prune");
    for (const name of ["keep", "unused"])
      expect((await runUcr(["pull", name, `--docker_registry=${images}`, `--work_dir=${wd}`])).code).toBe(0);
    const agent = await startAgent({ args: [`--work_dir=${wd}`, ...agentArgs()], keepWorkDir: true });
    try {
      expect((await launch(agent, { value: "running" }, "rich", "sleep 60")).status).toBe(200);
      expect((await launch(agent, { value: "exited" }, "xtra", "true")).status).toBe(200);
      await call(agent, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: "exited" } } });
      expect(
        (
          await launch(agent, { value: "parent" }, "alpine", "sleep 60", {
            volumes: [{ container_path: "/opt/vol", mode: "RO", image: { type: "DOCKER", docker: { name: "vol" } } }],
          })
        ).status,
      ).toBe(200);
      expect((await launch(agent, { value: "child", parent: { value: "parent" } }, "nest", "sleep 60")).status).toBe(200);
      const before = storeImages(wd);
      expect(before).toHaveLength(7);

      const bad = await call(agent, {
        type: "PRUNE_IMAGES",
        prune_images: { excluded_images: [{ type: "DOCKER", docker: { name: "Not/Valid" } }] },
      });
      expect(bad).toEqual({ status: 400, text: expect.stringMatching(/^Failed to prune images: invalid image reference 'Not\/Valid'/) });
      expect(storeImages(wd)).toEqual(before); // nothing happened

      // "keep" excluded by its short name although the store spells it out in full.
      const pruned = await call(agent, {
        type: "PRUNE_IMAGES",
        prune_images: { excluded_images: [{ type: "DOCKER", docker: { name: "keep" } }] },
      });
      expect(pruned).toEqual({ status: 200, text: "" });
      expect(storeImages(wd)).toEqual(["alpine", "keep", "nest", "rich", "vol", "xtra"].map((n) => `docker.io/library/${n}:latest`));
      expect(agent.log()).toMatch(
        /image gc: removed 1 image\(s\) \(docker\.io\/library\/unused:latest\), 1 layer\(s\), 1 config\(s\); freed \d+ bytes/,
      );
      expectConsistent(wd);
      // The running containers still see their images.
      const list = (await (
        await agent.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true, show_nested: true } })
      ).json()) as {
        get_containers: { containers: Array<{ container_id: { value: string }; container_status: { executor_pid?: number } }> };
      };
      for (const c of list.get_containers.containers.filter((x) => x.container_status.executor_pid)) {
        expect(existsSync(`/proc/${c.container_status.executor_pid}/root/bin/busybox`)).toBe(true);
      }

      // Once the containers are removed, their images go too (except the excluded one, next time not).
      for (const id of [{ value: "running" }, { value: "parent" }]) {
        await call(agent, { type: "KILL_CONTAINER", kill_container: { container_id: id } });
        await call(agent, { type: "WAIT_CONTAINER", wait_container: { container_id: id } });
        expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: { container_id: id } })).status).toBe(200);
      }
      expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "exited" } } })).status).toBe(200);
      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expect(storeImages(wd)).toEqual([]);
      expectConsistent(wd);
      expect(readdirSync(join(wd, "store/docker/layers"))).toEqual([]);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });

  test("a GC cut short (agent killed) is finished: leftovers removed at start, orphans at the next prune", async () => {
    const wd = join(work, "wd-killed");
    expect((await runUcr(["pull", "alpine", `--docker_registry=${images}`, `--work_dir=${wd}`])).code).toBe(0);
    const store = join(wd, "store/docker");
    // What a kill between the steps leaves: a layer renamed into gc/, an orphan layer dir.
    mkdirSync(join(store, "gc", `${"a".repeat(64)}.1`, "rootfs/deep"), { recursive: true });
    mkdirSync(join(store, "layers", "b".repeat(64), "rootfs"), { recursive: true });
    writeFileSync(join(store, "layers", "b".repeat(64), "layer.json"), "{}");
    const agent = await startAgent({ args: [`--work_dir=${wd}`, ...agentArgs()], keepWorkDir: true });
    try {
      expect(readdirSync(join(store, "gc"))).toEqual([]);
      expectConsistent(wd, true);
      expect((await launch(agent, { value: "c" }, "alpine", "sleep 60")).status).toBe(200);
      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expectConsistent(wd);
      expect(storeImages(wd)).toEqual(["docker.io/library/alpine:latest"]);
      await call(agent, { type: "KILL_CONTAINER", kill_container: { container_id: { value: "c" } } });
      await call(agent, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: "c" } } });
      await call(agent, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "c" } } });
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });

  test("a pull in another process (holding the store lock) makes PRUNE wait, not delete under it", async () => {
    const wd = join(work, "wd-lock");
    expect((await runUcr(["pull", "unused", `--docker_registry=${images}`, `--work_dir=${wd}`])).code).toBe(0);
    const agent = await startAgent({ args: [`--work_dir=${wd}`, ...agentArgs()], keepWorkDir: true });
    try {
      const { DockerStore } = await import("../../src/images/store.ts");
      const unlock = new DockerStore(join(wd, "store/docker")).lockShared(); // as `ucr pull` does
      let done = false;
      const prune = call(agent, { type: "PRUNE_IMAGES" }).then((r) => {
        done = true;
        return r;
      });
      await Bun.sleep(400);
      expect(done).toBe(false);
      expect(storeImages(wd)).toEqual(["docker.io/library/unused:latest"]);
      unlock();
      expect(await prune).toEqual({ status: 200, text: "" });
      expect(storeImages(wd)).toEqual([]);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });

  test("containers whose images cannot be accounted for make PRUNE refuse (500)", async () => {
    const wd = join(work, "wd-old");
    const agent = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${wd}/run`, ...agentArgs()], keepWorkDir: true });
    expect((await launch(agent, { value: "old" }, "alpine", "sleep 60")).status).toBe(200);
    expect(await agent.stop("SIGKILL")).toBe(137);
    // Rewrite its checkpoint as an older agent would have written it: no image reference.
    const cp = join(wd, "run/containers/old/container.json");
    const record = JSON.parse(readFileSync(cp, "utf8")) as Record<string, unknown>;
    delete record.imageRef;
    writeFileSync(cp, JSON.stringify(record));
    const again = await startAgent({ args: [`--work_dir=${wd}`, `--runtime_dir=${wd}/run`, ...agentArgs()], keepWorkDir: true });
    try {
      const r = await call(again, { type: "PRUNE_IMAGES" });
      expect(r).toEqual({ status: 500, text: expect.stringMatching(/container old was checkpointed without the images it uses/) });
      expect(storeImages(wd)).toEqual(["docker.io/library/alpine:latest"]);
      await call(again, { type: "KILL_CONTAINER", kill_container: { container_id: { value: "old" } } });
      await call(again, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: "old" } } });
      expect((await call(again, { type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "old" } } })).status).toBe(200);
      expect((await call(again, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expect(storeImages(wd)).toEqual([]);
    } finally {
      expect(await again.stop()).toBe(0);
    }
  });

  test("launches, pulls and prunes at the same time: running containers keep their rootfs, the store stays whole", async () => {
    const wd = join(work, "wd-stress");
    const agent = await startAgent({ args: [`--work_dir=${wd}`, ...agentArgs()], keepWorkDir: true });
    try {
      const names = ["alpine", "rich", "xtra", "nest"];
      const deadline = Date.now() + 6000;
      let launched = 0;
      let prunes = 0;
      const launcher = async (worker: number) => {
        while (Date.now() < deadline) {
          const id = { value: `s${worker}-${launched++}` };
          const r = await launch(agent, id, names[launched % names.length]!, "sleep 30");
          expect({ status: r.status, text: r.text }).toEqual({ status: 200, text: "" });
          // Half of them end and are removed at once, letting their images go.
          if (launched % 2 === 0) {
            await call(agent, { type: "KILL_CONTAINER", kill_container: { container_id: id } });
            await call(agent, { type: "WAIT_CONTAINER", wait_container: { container_id: id } });
            expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: { container_id: id } })).status).toBe(200);
          }
        }
      };
      const pruner = async () => {
        while (Date.now() < deadline) {
          expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
          prunes++;
          await Bun.sleep(20);
        }
      };
      await Promise.all([launcher(0), launcher(1), launcher(2), pruner(), pruner()]);
      expect(launched).toBeGreaterThan(8);
      expect(prunes).toBeGreaterThan(4);
      const list = (await (await agent.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
        get_containers: { containers: Array<{ container_id: { value: string }; container_status: { executor_pid?: number } }> };
      };
      const live = list.get_containers.containers.filter((c) => c.container_status.executor_pid);
      expect(live.length).toBeGreaterThan(3);
      for (const c of live) {
        const root = `/proc/${c.container_status.executor_pid}/root`;
        expect(existsSync(`${root}/bin/busybox`)).toBe(true);
        expect(readdirSync(root).length).toBeGreaterThan(3);
      }
      expectConsistent(wd, true);
      for (const c of list.get_containers.containers) {
        await call(agent, { type: "KILL_CONTAINER", kill_container: { container_id: c.container_id } });
        await call(agent, { type: "WAIT_CONTAINER", wait_container: { container_id: c.container_id } });
        await call(agent, { type: "REMOVE_CONTAINER", remove_container: { container_id: c.container_id } });
      }
      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expectConsistent(wd);
      expect(storeImages(wd)).toEqual([]);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);
});

describe.skipIf(!isRoot)("automatic GC (needs root: a tmpfs mount)", () => {
  test("on a 64 MiB store over its headroom, least recently used images go until it is under", async () => {
    const mnt = join(work, "tmpfs-store");
    mkdirSync(mnt, { recursive: true });
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]).exitCode).toBe(0);
    try {
      const names: string[] = [];
      for (let i = 1; i <= 5; i++) {
        names.push(`big${i}`);
        await makeImage(`big${i}`, { alone: true, bytes: 9 * 1024 * 1024 });
      }
      const wd = join(work, "wd-auto");
      for (const n of names) {
        expect((await runUcr(["pull", n, `--docker_registry=${images}`, `--work_dir=${wd}`, `--docker_store_dir=${mnt}`])).code).toBe(0);
        await Bun.sleep(20); // distinct last-used times
      }
      const usage = () => {
        const st = require("node:fs").statfsSync(mnt) as { blocks: number; bfree: number };
        return (st.blocks - st.bfree) / st.blocks;
      };
      expect(usage()).toBeGreaterThan(0.6);
      const config = JSON.stringify({ image_disk_headroom: 0.5, image_disk_watch_interval: { nanoseconds: 100_000_000 } });
      const agent = await startAgent({
        args: [`--work_dir=${wd}`, `--docker_store_dir=${mnt}`, `--image_gc_config=${config}`, ...agentArgs()],
        keepWorkDir: true,
      });
      try {
        for (let i = 0; i < 100 && usage() > 0.5; i++) await Bun.sleep(50);
        expect(usage()).toBeLessThanOrEqual(0.5);
        const left = readdirSync(join(mnt, "images")).map(
          (f) => JSON.parse(readFileSync(join(mnt, "images", f), "utf8")).reference as string,
        );
        // The oldest went first, and only as many as needed.
        expect(left.length).toBeGreaterThan(0);
        expect(left.length).toBeLessThan(5);
        const kept = names.slice(5 - left.length).map((n) => `docker.io/library/${n}:latest`);
        expect(left.sort()).toEqual(kept.sort());
        expect(agent.log()).toMatch(/automatic image gc: [\d.]+% used, over the 50% threshold/);
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    } finally {
      Bun.spawnSync(["umount", mnt]);
    }
  }, 60_000);

  test("a bad --image_gc_config stops the agent naming the field", async () => {
    const r = await runUcr(["agent", "--port=0", `--work_dir=${join(work, "bad-gc")}`, '--image_gc_config={"image_disk_headroom":2}']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/flag '--image_gc_config' at image_disk_headroom: must be from 0\.0 to 1\.0/);
  });
});
