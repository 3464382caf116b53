// Appc images by simple discovery: ACIs made here with GNU tar, served over HTTP on
// loopback, fetched with their dependencies, and run (needs root); staging an agent killed
// mid-fetch left is removed at the next start, a live process's is not.
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { newStagingDir } from "../../src/util/staging.ts";
import { eventually } from "../agent/support.ts";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { hostArch } from "../helpers/images.ts";
import { startProxy } from "../helpers/proxy.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-appc-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Writes <dir>/<file> as an ACI: a (gzipped) tar of `manifest` and `rootfs/`. */
function aci(dir: string, file: string, manifest: Record<string, unknown>, fill: (rootfs: string) => void): void {
  const stage = join(work, `stage-${file}`);
  mkdirSync(join(stage, "rootfs"), { recursive: true });
  writeFileSync(join(stage, "manifest"), JSON.stringify({ acKind: "ImageManifest", acVersion: "0.8.11", ...manifest }));
  fill(join(stage, "rootfs"));
  mkdirSync(join(dir, file, ".."), { recursive: true });
  expect(Bun.spawnSync(["tar", "--numeric-owner", "-C", stage, "-czf", join(dir, file), "manifest", "rootfs"]).exitCode).toBe(0);
}

/** Serves the files under `dir` on loopback, recording the paths asked for. */
function serve(dir: string): { server: ReturnType<typeof Bun.serve>; requests: string[] } {
  const requests: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const path = new URL(req.url).pathname;
      requests.push(path);
      const file = Bun.file(join(dir, path));
      return (await file.exists()) ? new Response(file) : new Response("not found", { status: 404 });
    },
  });
  return { server, requests };
}

test.skipIf(!isRoot)("an Appc image and its dependency, by simple discovery over HTTP (needs root)", async () => {
  const served = join(work, "served");
  const arch = hostArch();
  const labels = (version: string) => [
    { name: "version", value: version },
    { name: "os", value: "linux" },
    { name: "arch", value: arch },
  ];
  aci(served, `example.com/base-1.0.0-linux-${arch}.aci`, { name: "example.com/base", labels: labels("1.0.0") }, (rootfs) => {
    mkdirSync(join(rootfs, "bin"));
    copyFileSync("/bin/busybox", join(rootfs, "bin/busybox"));
    for (const applet of ["sh", "cat", "ls"]) symlinkSync("busybox", join(rootfs, "bin", applet));
    mkdirSync(join(rootfs, "etc"));
    writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/:/bin/sh\n");
  });
  aci(
    served,
    `example.com/app-2.0.0-linux-${arch}.aci`,
    { name: "example.com/app", labels: labels("2.0.0"), dependencies: [{ imageName: "example.com/base", labels: labels("1.0.0") }] },
    (rootfs) => {
      mkdirSync(join(rootfs, "opt"));
      writeFileSync(join(rootfs, "opt/app.txt"), "app layer\n");
    },
  );
  const { server, requests } = serve(served);
  const store = join(work, "appc-store");
  const agent = await startAgent({
    args: [
      "--image_providers=appc",
      "--isolation=filesystem/linux",
      `--appc_simple_discovery_uri_prefix=http://127.0.0.1:${server.port}/`,
      `--appc_store_dir=${store}`,
    ],
  });
  try {
    const launch = (id: string, name: string, version: string) =>
      agent.call({
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: { value: id },
          command: { value: "cat /opt/app.txt; ls /bin/busybox" },
          container: {
            type: "MESOS",
            mesos: { image: { type: "APPC", appc: { name, labels: { labels: [{ key: "version", value: version }] } } } },
          },
        },
      });
    const r = await launch("a1", "example.com/app", "2.0.0");
    expect({ status: r.status, text: await r.text() }).toEqual({ status: 200, text: "" });
    const wait = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "a1" } } });
    expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
    expect(readFileSync(join(agent.workDir, "containers/a1/stdout"), "utf8")).toBe("app layer\n/bin/busybox\n");
    expect(requests).toEqual([`/example.com/app-2.0.0-linux-${arch}.aci`, `/example.com/base-1.0.0-linux-${arch}.aci`]);
    // Stored by ID (sha512 of the tar), and reused: a second launch fetches nothing.
    const ids = readdirSync(join(store, "images"));
    expect(ids).toHaveLength(2);
    for (const id of ids) expect(id).toMatch(/^sha512-[0-9a-f]{128}$/);
    expect((await launch("a2", "example.com/app", "2.0.0")).status).toBe(200);
    expect(requests).toHaveLength(2);

    const missing = await launch("a3", "example.com/app", "9.9.9");
    expect({ status: missing.status, text: await missing.text() }).toEqual({
      status: 400,
      text: expect.stringMatching(
        new RegExp(`fetching http://127\\.0\\.0\\.1:\\d+/example\\.com/app-9\\.9\\.9-linux-${arch}\\.aci: HTTP 404`),
      ),
    });
    const docker = await agent.call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "d" },
        command: { value: "true" },
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
      },
    });
    expect(await docker.text()).toMatch(/Docker images are not enabled/);
    for (const id of ["a1", "a2"]) {
      await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
      expect((await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    }
  } finally {
    expect(await agent.stop()).toBe(0);
    server.stop(true);
  }
});

/** Serves `example.com/tool` 1.0.0 (busybox, made once); `requests` lists the ACI paths asked for. */
function toolServer(): { server: ReturnType<typeof Bun.serve>; requests: string[]; path: string } {
  const served = join(work, "served-tool");
  const path = `/example.com/tool-1.0.0-linux-${hostArch()}.aci`;
  if (!existsSync(join(served, path))) {
    aci(served, path.slice(1), { name: "example.com/tool", labels: [{ name: "version", value: "1.0.0" }] }, (rootfs) => {
      mkdirSync(join(rootfs, "bin"));
      copyFileSync("/bin/busybox", join(rootfs, "bin/busybox"));
      symlinkSync("busybox", join(rootfs, "bin/sh"));
      writeFileSync(join(rootfs, "tool.txt"), "tool image\n");
    });
  }
  return { ...serve(served), path };
}

/** Agent flags on work dir `wd` with Appc images from `prefix` kept in `store`, so a restart finds the same state. */
const appcAgent = (wd: string, store: string, prefix: string) => ({
  args: [
    `--work_dir=${wd}`,
    `--runtime_dir=${join(wd, "run")}`,
    "--image_providers=appc",
    "--isolation=filesystem/linux",
    `--appc_simple_discovery_uri_prefix=${prefix}`,
    `--appc_store_dir=${store}`,
  ],
});

const launchTool = (id: string) => ({
  type: "LAUNCH_CONTAINER",
  launch_container: {
    container_id: { value: id },
    command: { value: "cat /tool.txt" },
    container: {
      type: "MESOS",
      mesos: { image: { type: "APPC", appc: { name: "example.com/tool", labels: { labels: [{ key: "version", value: "1.0.0" }] } } } },
    },
  },
});

/** Runs the tool image as container `id` on `agent` (on work dir `wd`) and checks its output and exit; then removes it. */
async function runTool(agent: RunningAgent, wd: string, id: string): Promise<void> {
  const r = await agent.call(launchTool(id));
  expect({ status: r.status, text: await r.text() }).toEqual({ status: 200, text: "" });
  const wait = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
  expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
  expect(readFileSync(join(wd, "containers", id, "stdout"), "utf8")).toBe("tool image\n");
  expect((await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
}

test.skipIf(!isRoot)(
  "an agent killed during an Appc fetch: the next one removes its staging and fetches the image again (needs root)",
  async () => {
    const { server, requests, path } = toolServer();
    // A slow link for the first fetch only: the agent is killed while the ACI is still coming.
    const proxy = await startProxy(`http://127.0.0.1:${server.port}`, [
      { kind: "throttle", bytesPerSecond: 128 * 1024, path: /\.aci$/, method: "GET", times: 1 },
    ]);
    const wd = join(work, "wd-killed");
    const store = join(work, "store-killed");
    const staging = join(store, "staging");
    const on = appcAgent(wd, store, `${proxy.url}/`);
    try {
      const first = await startAgent(on);
      const launching = first.call(launchTool("k1")).catch(() => undefined);
      const underway = () =>
        proxy.requests().some((r) => r.path === path && r.bytes > 0) &&
        existsSync(staging) &&
        readdirSync(staging).some((n) => existsSync(join(staging, n, "tree")));
      expect(await eventually(underway, 20_000)).toBe(true);
      expect(await first.stop("SIGKILL")).toBe(137);
      await launching;
      // What the kill left: the dead agent's staging, named by its pid, and no image.
      const left = readdirSync(staging);
      expect(left).toEqual([expect.stringMatching(new RegExp(`^${first.proc.pid}\\.`))]);
      expect(existsSync(join(store, "images")) ? readdirSync(join(store, "images")) : []).toEqual([]);

      const second = await startAgent(on);
      try {
        expect(second.log()).toContain("appc store: removed 1 unfinished staging dir(s) left by an earlier run");
        expect(readdirSync(staging)).toEqual([]);
        await runTool(second, wd, "k2");
        expect(requests).toEqual([path, path]); // fetched again, in full this time
        expect(readdirSync(join(store, "images"))).toEqual([expect.stringMatching(/^sha512-[0-9a-f]{128}$/)]);
        expect(readdirSync(staging)).toEqual([]);
        // k1 died with the first agent; the second reports it and removes it.
        expect((await second.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "k1" } } })).status).toBe(200);
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      await proxy.stop();
      server.stop(true);
      rmSync(wd, { recursive: true, force: true });
    }
  },
  60_000,
);

test.skipIf(!isRoot)(
  "at start the agent removes a dead process's Appc staging, keeps a live one's and the images (needs root)",
  async () => {
    const { server, requests, path } = toolServer();
    const wd = join(work, "wd-start");
    const store = join(work, "store-start");
    const staging = join(store, "staging");
    const on = appcAgent(wd, store, `http://127.0.0.1:${server.port}/`);
    try {
      const first = await startAgent(on);
      await runTool(first, wd, "s1");
      expect(await first.stop()).toBe(0);
      expect(requests).toEqual([path]);
      const images = readdirSync(join(store, "images"));
      expect(images).toHaveLength(1);
      const rootfsIno = statSync(join(store, "images", images[0]!, "rootfs")).ino;

      // A process that ran and was reaped left one; this test process, as a `ucr` command
      // sharing the store would, holds another while the agent starts.
      const gone = Bun.spawn(["true"]);
      await gone.exited;
      const dead = join(staging, `${gone.pid}.1.dead`);
      mkdirSync(join(dead, "tree/rootfs/bin"), { recursive: true });
      writeFileSync(join(dead, "tree/manifest"), "{}");
      const live = newStagingDir(staging);
      mkdirSync(join(live, "tree/rootfs"), { recursive: true });

      const second = await startAgent(on);
      try {
        expect(second.log()).toContain("appc store: removed 1 unfinished staging dir(s) left by an earlier run");
        expect(existsSync(dead)).toBe(false);
        expect(readdirSync(staging)).toEqual([basename(live)]);
        expect(existsSync(join(live, "tree/rootfs"))).toBe(true);
        expect(readdirSync(join(store, "images"))).toEqual(images);
        expect(statSync(join(store, "images", images[0]!, "rootfs")).ino).toBe(rootfsIno);
        // The image still runs, from the same tree (a fetch by name finds the same ID and keeps it).
        await runTool(second, wd, "s2");
        expect(statSync(join(store, "images", images[0]!, "rootfs")).ino).toBe(rootfsIno);
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      server.stop(true);
      rmSync(wd, { recursive: true, force: true });
    }
  },
  60_000,
);
