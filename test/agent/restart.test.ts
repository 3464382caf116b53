// Containers outlive the agent: SIGKILL the agent, restart it on the same work_dir, and
// the containers are there again, running or exited with the right status.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";
import { blankPage } from "../../src/runtime/state.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-recovery-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const images = join(work, "images");
let imagesReady: Promise<void> | undefined;
/** The `alpine` archive both tests launch from, made once. */
function alpineArchive(): Promise<void> {
  imagesReady ??= (async () => {
    mkdirSync(images);
    const layout = join(work, "busybox");
    buildBusyboxImage(layout, { tag: "1" });
    await saveArchive(layout, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  })();
  return imagesReady;
}

const agentArgs = (wd: string) => [
  `--work_dir=${wd}`,
  `--runtime_dir=${join(wd, "run")}`,
  `--docker_registry=${images}`,
  "--image_providers=docker",
  "--isolation=filesystem/linux,docker/runtime",
];
const launch = (id: string, script: string) => ({
  type: "LAUNCH_CONTAINER",
  launch_container: {
    container_id: { value: id },
    command: { value: script },
    container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
  },
});
const wait = (id: string) => ({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
const remove = (id: string) => ({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } });

test.skipIf(!isRoot)("agent SIGKILL and restart: running and exited containers are recovered (needs root)", async () => {
  await alpineArchive();
  const wd = join(work, "wd");
  const args = agentArgs(wd);

  const first = await startAgent({ args, keepWorkDir: true });
  expect((await first.call(launch("long", "sleep 300"))).status).toBe(200);
  const shortLaunch = await first.call(launch("short", "sleep 1; exit 3"));
  expect({ status: shortLaunch.status, text: await shortLaunch.text() }).toEqual({ status: 200, text: "" });
  expect(await first.stop("SIGKILL")).toBe(137);

  // While no agent runs, "short" exits; an unreadable checkpoint appears beside them.
  await Bun.sleep(1800);
  mkdirSync(join(wd, "run/containers/garbled"), { recursive: true });
  writeFileSync(join(wd, "run/containers/garbled/container.json"), "{not json");
  // ...and what an agent killed right after it took a spare runtime dir leaves: a blank page.
  mkdirSync(join(wd, "run/containers/blank"), { recursive: true });
  writeFileSync(join(wd, "run/containers/blank/container.json"), blankPage());
  mkdirSync(join(wd, "containers/blank"), { recursive: true });

  const second = await startAgent({ args, keepWorkDir: true });
  try {
    expect(second.log()).toMatch(/recovered 1 running and 1 exited container\(s\); removed 1 with unreadable checkpoints \(garbled\)/);
    expect(second.log()).toContain("container blank: a runtime dir without a checkpoint");
    expect(existsSync(join(wd, "run/containers/blank"))).toBe(false);
    expect(existsSync(join(wd, "containers/blank"))).toBe(false);
    const list = (await (await second.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
      get_containers: { containers: Array<{ container_id: { value: string }; container_status: { executor_pid?: number } }> };
    };
    const ids = list.get_containers.containers.map((c) => c.container_id.value).sort();
    expect(ids).toEqual(["long", "short"]);
    expect(list.get_containers.containers.find((c) => c.container_id.value === "long")!.container_status.executor_pid).toBeGreaterThan(1);

    const short = await second.call(wait("short"));
    expect(await short.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 3 << 8 } });

    expect((await second.call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: "long" } } })).status).toBe(200);
    const long = await second.call(wait("long"));
    expect(await long.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
    for (const id of ["long", "short"]) {
      expect((await second.call(remove(id))).status).toBe(200);
    }
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(wd);
  } finally {
    expect(await second.stop()).toBe(0);
  }
});

test.skipIf(!isRoot)(
  "a checkpoint from another boot, or whose pid now names a later process, is a container that ended (needs root)",
  async () => {
    await alpineArchive();
    const wd = join(work, "wd-reboot");
    const args = agentArgs(wd);
    const first = await startAgent({ args, keepWorkDir: true });
    for (const id of ["rebooted", "reused"]) expect((await first.call(launch(id, "sleep 300"))).status).toBe(200);
    expect(await first.stop("SIGKILL")).toBe(137);

    // What a host crash leaves on a disk runtime dir: checkpoints without status files, naming
    // pids that, after the boot, may belong to anything. A live process stands in for that,
    // started a few clock ticks after the containers: a process is known by its pid and its
    // start time in ticks (10 ms), and one that started in the same tick is the same to anyone.
    await Bun.sleep(50);
    const stranger = Bun.spawn(["sleep", "60"]);
    try {
      for (const id of ["rebooted", "reused"]) {
        const dir = join(wd, "run/containers", id);
        const checkpoint = JSON.parse(readFileSync(join(dir, "container.json"), "utf8")) as {
          pid: number;
          pidStart?: number;
          bootId?: string;
        };
        expect(checkpoint.bootId).toBe(readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim());
        expect(checkpoint.pidStart).toBeGreaterThan(0);
        process.kill(checkpoint.pid, "SIGKILL");
        const status = join(dir, "status");
        for (let i = 0; i < 200 && !existsSync(status); i++) await Bun.sleep(10);
        rmSync(status, { force: true });
        checkpoint.pid = stranger.pid;
        if (id === "rebooted") checkpoint.bootId = "00000000-0000-4000-8000-000000000000";
        writeFileSync(join(dir, "container.json"), JSON.stringify(checkpoint));
      }

      const second = await startAgent({ args, keepWorkDir: true });
      try {
        expect(second.log()).toMatch(/recovered 0 running and 2 exited container\(s\)/);
        expect(await (await second.call(wait("rebooted"))).json()).toEqual({
          type: "WAIT_CONTAINER",
          wait_container: { exit_status: 9, message: "The host restarted while the container was running" },
        });
        expect(await (await second.call(wait("reused"))).json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
        // Nothing was sent to the process that now has the pid.
        expect(stranger.exitCode).toBeNull();
        for (const id of ["rebooted", "reused"]) expect((await second.call(remove(id))).status).toBe(200);
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      stranger.kill("SIGKILL");
    }
  },
);
