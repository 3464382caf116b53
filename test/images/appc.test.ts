// Appc images by simple discovery: ACIs made here with GNU tar, served over HTTP on
// loopback, fetched with their dependencies, and run (needs root).
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { hostArch } from "../helpers/images.ts";

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
  const requests: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const path = new URL(req.url).pathname;
      requests.push(path);
      const file = Bun.file(join(served, path));
      return (await file.exists()) ? new Response(file) : new Response("not found", { status: 404 });
    },
  });
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
