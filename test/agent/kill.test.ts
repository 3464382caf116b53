// KILL_CONTAINER in any state: a container still provisioning (its image trickling in
// through a throttling proxy, or a URI downloading slowly) is destroyed; its LAUNCH fails
// as Mesos' does ("Container destroyed during <stage>"), WAIT reports it killed without an
// exit status, the workload never starts, the pull still finishes for the cache, and
// nothing but the terminated record is left until REMOVE_CONTAINER.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, pushImage } from "../helpers/images.ts";
import { type ProxyServer, startProxy } from "../helpers/proxy.ts";
import { type Registry, startRegistry } from "../helpers/registry.ts";
import {
  NOTHING,
  call,
  dockerArgs,
  eventually,
  isRoot,
  launchBody,
  leftovers,
  listContainers,
  processesWith,
  removeBody,
  waitBody,
  killBody,
} from "./support.ts";

const work = tempDir("ucr-kill-");
let registry: Registry;
let proxy: ProxyServer;
let agent: RunningAgent;
const hostDir = join(work, "host");

beforeAll(async () => {
  if (!isRoot) return;
  registry = await startRegistry();
  const layout = join(work, "busybox");
  buildBusyboxImage(layout, { tag: "1" });
  await pushImage(layout, `${registry.host}/slow:1`, { exact: true });
  proxy = await startProxy(registry.url);
  mkdirSync(hostDir, { recursive: true });
  agent = await startAgent({ args: dockerArgs(proxy.url) });
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  await proxy?.stop();
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** The image, with a host directory the workload marks if it ever runs. */
const withHostDir = (image: string) => ({
  type: "MESOS",
  mesos: { image: { type: "DOCKER", docker: { name: image } } },
  volumes: [{ container_path: "/host", host_path: hostDir, mode: "RW" }],
});

describe.skipIf(!isRoot)("KILL_CONTAINER while provisioning (needs root)", () => {
  test("during a slow pull: destroyed at once, never runs, WAIT says killed; the pull still lands in the cache", async () => {
    // ~1 MB of layer at 192 KiB/s: the pull takes seconds.
    proxy.addFaults({ kind: "throttle", bytesPerSecond: 192 * 1024, path: /\/blobs\//, method: "GET", times: 2 });
    const launching = call(agent, launchBody("slow", "touch /host/started", { extra: { container: withHostDir("slow:1") } }));
    // Provisioning: its layer is on its way.
    expect(await eventually(() => proxy.requests().some((r) => /\/blobs\//.test(r.path) && r.bytes > 0), 20_000)).toBe(true);
    expect(await listContainers(agent)).toEqual([{ id: "slow", running: false }]);

    expect(await call(agent, killBody("slow"))).toMatchObject({ status: 200, text: "" });
    const wait = await call(agent, waitBody("slow"));
    expect(wait.json).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: {
        state: "TASK_KILLED",
        reason: "REASON_TASK_KILLED_DURING_LAUNCH",
        message: expect.stringMatching(/^Container destroyed during provisioning: KILL_CONTAINER arrived before its workload started/),
      },
    });
    expect(await launching).toMatchObject({ status: 400, text: "Container destroyed during provisioning" });
    // The layer is still arriving: WAIT and LAUNCH did not wait for it.
    expect(readdirSync(join(agent.workDir, "store/docker/images"))).toEqual([]);

    // The pull finishes for the cache; the workload never starts.
    expect(await eventually(() => readdirSync(join(agent.workDir, "store/docker/images")).length === 1, 60_000)).toBe(true);
    await Bun.sleep(300);
    expect(existsSync(join(hostDir, "started"))).toBe(false);
    // Only the terminated record is left, listed without a pid, until REMOVE.
    expect(leftovers(agent.workDir, agent.cgroupsRoot!)).toEqual({ ...NOTHING, runtimeDirs: ["slow"] });
    expect(await listContainers(agent)).toEqual([{ id: "slow", running: false }]);
    expect((await call(agent, killBody("slow"))).status).toBe(404);
    expect((await call(agent, launchBody("slow", "true", { image: "slow:1" }))).status).toBe(202);
    expect((await call(agent, removeBody("slow"))).status).toBe(200);
    expect(leftovers(agent.workDir, agent.cgroupsRoot!)).toEqual(NOTHING);
    expect((await call(agent, waitBody("slow"))).status).toBe(404);

    // The cache is warm: the next launch of the image pulls nothing.
    const manifests = proxy.count(/\/manifests\//);
    const again = await call(agent, launchBody("after", "true", { image: "slow:1" }));
    expect({ status: again.status, text: again.text }).toEqual({ status: 200, text: "" });
    expect((await call(agent, waitBody("after"))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
    expect(proxy.count(/\/manifests\//)).toBe(manifests);
    expect((await call(agent, removeBody("after"))).status).toBe(200);
  }, 90_000);

  test("during a slow URI download: the fetch is abandoned, the LAUNCH fails naming the stage", async () => {
    let sent = 0;
    const slow = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () =>
        new Response(
          new ReadableStream({
            async pull(ctl) {
              await Bun.sleep(100);
              sent++;
              ctl.enqueue(new Uint8Array(1024));
            },
          }),
        ),
    });
    try {
      const launching = call(
        agent,
        launchBody("fetching", "", {
          extra: {
            command: { value: "touch /host/started", uris: [{ value: `http://127.0.0.1:${slow.port}/big.bin`, extract: false }] },
            container: withHostDir("slow:1"),
          },
        }),
      );
      expect(await eventually(() => sent > 0, 20_000)).toBe(true);
      expect((await call(agent, killBody("fetching"))).status).toBe(200);
      expect(await launching).toMatchObject({ status: 400, text: "Container destroyed during fetching" });
      expect(existsSync(join(hostDir, "started"))).toBe(false);
      const wait = await call(agent, waitBody("fetching"));
      expect(wait.json?.wait_container).toMatchObject({ state: "TASK_KILLED", reason: "REASON_TASK_KILLED_DURING_LAUNCH" });
      expect(wait.json?.wait_container.exit_status).toBeUndefined();
      expect(leftovers(agent.workDir, agent.cgroupsRoot!)).toEqual({ ...NOTHING, runtimeDirs: ["fetching"] });
      expect((await call(agent, removeBody("fetching"))).status).toBe(200);
      expect(leftovers(agent.workDir, agent.cgroupsRoot!)).toEqual(NOTHING);
    } finally {
      slow.stop(true);
    }
  }, 60_000);

  test("while the launcher starts it: the workload it answers with is killed at once; WAIT says killed, with its status", async () => {
    // The launcher is the agent's own (its socket is in this agent's runtime dir); held
    // stopped, it answers the launch only once KILL_CONTAINER has arrived. A container
    // running keeps it from exiting idle meanwhile.
    expect((await call(agent, launchBody("keeper", "sleep 300", { image: "slow:1" }))).status).toBe(200);
    const socket = join(agent.workDir, "run", "launcher.sock");
    // The launcher that serves launches (its parent, `__launcher SOCKET`, is the reaper).
    const launcher = processesWith(`__launcher\0--serve\0${socket}`)[0];
    expect(launcher).toBeGreaterThan(1);
    process.kill(launcher!, "SIGSTOP");
    let launching;
    try {
      launching = call(agent, launchBody("starting", "sleep 300; : starting-marker", { image: "slow:1" }));
      expect(await eventually(() => existsSync(join(agent.workDir, "run/containers/starting/launch.json")) || undefined)).toBe(true);
      await Bun.sleep(100); // the request is on its way to the stopped launcher
      expect((await call(agent, killBody("starting"))).status).toBe(200);
    } finally {
      process.kill(launcher!, "SIGCONT");
    }
    expect(await launching).toMatchObject({ status: 400, text: "Container destroyed during launching" });
    expect((await call(agent, waitBody("starting"))).json).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: {
        exit_status: 9,
        state: "TASK_KILLED",
        reason: "REASON_TASK_KILLED_DURING_LAUNCH",
        message: "Container destroyed during launching: KILL_CONTAINER arrived as its workload started; it was killed",
      },
    });
    expect(processesWith("starting-marker")).toEqual([]);
    const left = leftovers(agent.workDir, agent.cgroupsRoot!);
    expect(left.runtimeDirs).toEqual(["keeper", "starting"]);
    expect([left.cgroups, left.sandboxes, left.rootfsDirs]).toEqual([["keeper"], ["keeper"], ["keeper"]]);
    expect((await call(agent, removeBody("starting"))).status).toBe(200);
    await call(agent, killBody("keeper"));
    await call(agent, waitBody("keeper"));
    expect((await call(agent, removeBody("keeper"))).status).toBe(200);
    expect(leftovers(agent.workDir, agent.cgroupsRoot!)).toEqual(NOTHING);
  }, 60_000);
});
