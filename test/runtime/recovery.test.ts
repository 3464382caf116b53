// Containers outlive the agent: SIGKILL the agent, restart it on the same work_dir, and
// the containers are there again, running or exited with the right status.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-recovery-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

test.skipIf(!isRoot)("agent SIGKILL and restart: running and exited containers are recovered (needs root)", async () => {
  const images = join(work, "images");
  mkdirSync(images);
  const layout = join(work, "busybox");
  buildBusyboxImage(layout, { tag: "1" });
  await saveArchive(layout, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  const wd = join(work, "wd");
  const args = [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, `--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"];
  const launch = (id: string, script: string) => ({
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: { value: id },
      command: { value: script },
      container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
    },
  });

  const first = await startAgent({ args, keepWorkDir: true });
  expect((await first.call(launch("long", "sleep 300"))).status).toBe(200);
  const shortLaunch = await first.call(launch("short", "sleep 1; exit 3"));
  expect({ status: shortLaunch.status, text: await shortLaunch.text() }).toEqual({ status: 200, text: "" });
  expect(await first.stop("SIGKILL")).toBe(137);

  // While no agent runs, "short" exits; an unreadable checkpoint appears beside them.
  await Bun.sleep(1800);
  mkdirSync(join(wd, "run/containers/garbled"), { recursive: true });
  writeFileSync(join(wd, "run/containers/garbled/container.json"), "{not json");

  const second = await startAgent({ args, keepWorkDir: true });
  try {
    expect(second.log()).toMatch(/recovered 1 running and 1 exited container\(s\); removed 1 with unreadable checkpoints \(garbled\)/);
    const list = (await (await second.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
      get_containers: { containers: Array<{ container_id: { value: string }; container_status: { executor_pid?: number } }> };
    };
    const ids = list.get_containers.containers.map((c) => c.container_id.value).sort();
    expect(ids).toEqual(["long", "short"]);
    expect(list.get_containers.containers.find((c) => c.container_id.value === "long")!.container_status.executor_pid).toBeGreaterThan(1);

    const short = await second.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "short" } } });
    expect(await short.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 3 << 8 } });

    expect((await second.call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: "long" } } })).status).toBe(200);
    const long = await second.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "long" } } });
    expect(await long.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
    for (const id of ["long", "short"]) {
      expect((await second.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    }
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(wd);
  } finally {
    expect(await second.stop()).toBe(0);
  }
});
