// Image GC never collects what a live container uses, by layer id from its checkpoint: a
// tag pulled again to other layers does not free the old ones under a running container,
// before or after an agent restart; once the container is removed they go.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { BUSYBOX_CONFIG, addImage, busyboxLayerTar, saveArchive, tarDir } from "../helpers/images.ts";
import { NOTHING, call, dockerArgs, isRoot, killBody, launchBody, leftovers, removeBody, waitBody } from "./support.ts";

const work = tempDir("ucr-gc-layers-");
const images = join(work, "images");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** `app:latest` in the archive dir: v1 is busybox plus a file; v2 is one unrelated layer. */
async function saveApp(version: 1 | 2): Promise<void> {
  const src = join(work, `src-${version}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, `v${version}.txt`), `version ${version}\n`);
  const layout = join(work, `layout-${version}`);
  const own = { tar: tarDir(src), compression: "gzip" as const };
  addImage(layout, {
    tag: "1",
    layers: version === 1 ? [{ tar: busyboxLayerTar(), compression: "gzip" as const }, own] : [own],
    config: BUSYBOX_CONFIG,
  });
  await saveArchive(layout, join(images, "app.tar"), "app:latest", { srcTag: "1" });
}

beforeAll(async () => {
  if (!isRoot) return;
  mkdirSync(images, { recursive: true });
  await saveApp(1);
});

/** What a command sees inside `holder`'s filesystem, run there as a nested container. */
async function inside(agent: RunningAgent, wd: string, n: number, script: string): Promise<string> {
  const child = { value: `look${n}`, parent: { value: "holder" } };
  const r = await call(agent, launchBody(child, script));
  expect({ status: r.status, text: r.text }).toEqual({ status: 200, text: "" });
  expect((await call(agent, waitBody(child))).json?.wait_container).toEqual({ exit_status: 0 });
  const out = readFileSync(join(wd, "containers/holder/containers", child.value, "stdout"), "utf8");
  expect((await call(agent, removeBody(child))).status).toBe(200);
  return out;
}

const layerDirs = (wd: string) => readdirSync(join(wd, "store/docker/layers")).sort();

describe.skipIf(!isRoot)("image GC and live containers (needs root)", () => {
  test("a tag pulled again to new layers: PRUNE keeps the old ones under the running container, across a restart", async () => {
    const wd = join(work, "wd");
    const args = { args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(images)], keepWorkDir: true };
    let agent = await startAgent(args);
    try {
      expect((await call(agent, launchBody("holder", "exec sleep 300", { image: "app" }))).status).toBe(200);
      const binCount = Number((await inside(agent, wd, 0, "ls /bin | wc -l")).trim());
      expect(binCount).toBeGreaterThan(5);
      const v1Layers = layerDirs(wd);
      expect(v1Layers.length).toBe(2);

      // The tag now names other layers; a forced pull records them for app:latest.
      await saveApp(2);
      const repull = await call(
        agent,
        launchBody("repull", "", { image: "app", cached: false, extra: { command: { shell: false, value: "/v2.txt" } } }),
      );
      expect(repull.status).toBe(200);
      await call(agent, waitBody("repull"));
      expect((await call(agent, removeBody("repull"))).status).toBe(200);

      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expect(Number((await inside(agent, wd, 1, "ls /bin | wc -l")).trim())).toBe(binCount);
      expect(await inside(agent, wd, 2, "cat /v1.txt")).toBe("version 1\n");
      for (const l of v1Layers) expect(layerDirs(wd)).toContain(l);

      // The next agent knows them from the checkpoint alone.
      expect(await agent.stop("SIGKILL")).toBe(137);
      agent = await startAgent(args);
      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expect(Number((await inside(agent, wd, 3, "ls /bin | wc -l")).trim())).toBe(binCount);
      for (const l of v1Layers) expect(layerDirs(wd)).toContain(l);

      // Removed, the container holds nothing: the next prune takes its layers.
      await call(agent, killBody("holder"));
      await call(agent, waitBody("holder"));
      expect((await call(agent, removeBody("holder"))).status).toBe(200);
      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      expect(layerDirs(wd)).toEqual([]);
      expect(leftovers(wd, agent.cgroupsRoot!)).toEqual(NOTHING);
    } finally {
      expect(await agent.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  }, 90_000);
});
