// Standalone containers for real: the built agent, an `alpine` image made from
// busybox-static and saved with skopeo into an archive directory, real namespaces and
// overlay mounts (CI runs as root). The seeds' requests are sent as written.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { type RunningAgent, requireBinary, startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, buildRichImage, saveArchive } from "../helpers/images.ts";
import { call as callAgent, removeAllContainers } from "./support.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-containers-");
let agent: RunningAgent;

beforeAll(async () => {
  if (!isRoot) return;
  const images = join(work, "images");
  mkdirSync(images);
  const layout = join(work, "busybox");
  buildBusyboxImage(layout, { tag: "1" });
  await saveArchive(layout, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  const rich = join(work, "rich");
  buildRichImage(rich, { tag: "1", zstd: false });
  await saveArchive(rich, join(images, "rich.tar"), "rich:latest", { srcTag: "1" });
  agent = await startAgent({
    args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
  });
});
afterAll(async () => {
  if (agent) {
    // Leave nothing behind on the machine: every container killed, waited for and removed.
    await removeAllContainers(agent);
    expect(await agent.stop()).toBe(0);
  }
  rmSync(work, { recursive: true, force: true });
});

/** One JSON call to this file's agent. */
const call = (body: unknown) => callAgent(agent, body);

let n = 0;
/** LAUNCH_CONTAINER of `script` in `image` (alpine), not waiting for it. */
function start(id: string, script: string, extra: Record<string, unknown> = {}, image = "alpine") {
  return call({
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: { value: id },
      command: { value: script },
      container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: image } } } },
      ...extra,
    },
  });
}

/** Launch `script` in alpine, wait, and return the exit status and sandbox output. */
async function run(script: string, extra: Record<string, unknown> = {}, image = "alpine") {
  const id = `t${n++}`;
  const launch = await start(id, script, extra, image);
  expect({ status: launch.status, text: launch.text }).toEqual({ status: 200, text: "" });
  const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
  expect(wait.status).toBe(200);
  const sandbox = join(agent.workDir, "containers", id);
  return {
    id,
    wait: wait.json,
    exit: (wait.json!.wait_container as { exit_status: number }).exit_status,
    stdout: readFileSync(join(sandbox, "stdout"), "utf8"),
    stderr: readFileSync(join(sandbox, "stderr"), "utf8"),
    sandbox,
  };
}

describe.skipIf(!isRoot)("standalone containers (need root: namespaces and mounts)", () => {
  test("the seeds' LAUNCH, WAIT and KILL requests, as written", async () => {
    const launch = await call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "my-standalone-container-id" },
        command: { value: "sleep 100" },
        resources: [
          { name: "cpus", scalar: { value: 2.0 }, type: "SCALAR" },
          { name: "mem", scalar: { value: 1024.0 }, type: "SCALAR" },
          { name: "disk", scalar: { value: 1024.0 }, type: "SCALAR" },
        ],
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
      },
    });
    expect({ status: launch.status, body: launch.text }).toEqual({ status: 200, body: "" });
    const again = await call({
      type: "LAUNCH_CONTAINER",
      launch_container: { container_id: { value: "my-standalone-container-id" }, command: { value: "true" } },
    });
    expect({ status: again.status, body: again.text }).toEqual({ status: 202, body: "" });

    const list = await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
    const containers = (list.json!.get_containers as { containers: Array<Record<string, any>> }).containers;
    const mine = containers.find((c) => c.container_id.value === "my-standalone-container-id")!;
    expect(mine.container_status.executor_pid).toBeGreaterThan(1);
    expect((await call({ type: "GET_CONTAINERS" })).json).toEqual({ type: "GET_CONTAINERS", get_containers: { containers: [] } });

    const removeRunning = await call({
      type: "REMOVE_CONTAINER",
      remove_container: { container_id: { value: "my-standalone-container-id" } },
    });
    expect(removeRunning.status).toBe(500);
    expect(removeRunning.text).toMatch(/has not terminated yet/);

    const kill = await call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: "my-standalone-container-id" } } });
    expect({ status: kill.status, body: kill.text }).toEqual({ status: 200, body: "" });
    const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "my-standalone-container-id" } } });
    expect(wait.json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
    // Kept until removed: a second WAIT answers at once.
    expect(
      (await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "my-standalone-container-id" } } })).json,
    ).toEqual(wait.json);
    expect((await call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: "my-standalone-container-id" } } })).status).toBe(
      404,
    );

    const remove = await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "my-standalone-container-id" } } });
    expect(remove.status).toBe(200);
    expect(existsSync(join(agent.workDir, "containers", "my-standalone-container-id"))).toBe(false);
    expect(readdirSync(join(agent.workDir, "provisioner", "containers"))).not.toContain("my-standalone-container-id");
    expect((await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "my-standalone-container-id" } } })).status).toBe(
      404,
    );
  });

  test("exit statuses are raw wait(2) statuses", async () => {
    expect((await run("exit 0")).exit).toBe(0);
    expect((await run("exit 1")).exit).toBe(256);
  });

  test("KILL_CONTAINER delivers the signal it names to the workload", async () => {
    const id = `sig${n++}`;
    // PID 1 gets only signals it handles: trap TERM, as an init-aware workload would.
    const launch = await start(id, "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done");
    expect(launch.status).toBe(200);
    const stdout = join(agent.workDir, "containers", id, "stdout");
    for (let i = 0; i < 200 && !readFileSync(stdout, "utf8").includes("ready"); i++) await Bun.sleep(10);
    expect((await call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: id }, signal: 15 } })).status).toBe(200);
    const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
    expect(wait.json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 7 << 8 } });
    expect(readFileSync(stdout, "utf8")).toContain("got-term");
  });

  test("inside: the workload is PID 1, /proc shows only its processes, its own hostname, the image's root", async () => {
    const r = await run(
      "echo pid=$$; ls /proc | grep -E '^[0-9]+$' | wc -l; hostname; ls /; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo sandbox=$MESOS_SANDBOX; pwd; ls /bin/busybox",
    );
    expect(r.exit).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe("pid=1");
    expect(Number(lines[1])).toBeLessThanOrEqual(4); // sh, ls, grep and wc: nothing from the host
    expect(lines[2]).toBe(r.id);
    expect(hostname()).not.toBe(r.id);
    expect(r.stdout).toContain("sh -c echo pid=$$;");
    expect(r.stdout).toContain("sandbox=/mnt/mesos/sandbox");
    expect(r.stdout).toMatch(/^\/mnt\/mesos\/sandbox$/m);
    expect(r.stdout).toContain("/bin/busybox");
  });

  test("the sandbox is shared with the host; other writes stay in the container; host mounts are not visible", async () => {
    const marker = join(work, "host-only-marker");
    const r = await run(
      `echo from-inside > $MESOS_SANDBOX/out.txt; echo secret > /root/inside.txt; ls ${work} 2>&1; cat /proc/self/mountinfo | wc -l`,
    );
    expect(r.exit).toBe(0);
    expect(readFileSync(join(r.sandbox, "out.txt"), "utf8")).toBe("from-inside\n");
    expect(existsSync("/root/inside.txt")).toBe(false);
    expect(r.stdout).toMatch(/No such file or directory/); // the host's paths are not there
    expect(existsSync(marker)).toBe(false);
    // And none of the container's mounts leaked into the host.
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(join(agent.workDir, "provisioner"));
  });

  test("the image's Entrypoint, Cmd, Env, WorkingDir and User apply (shell=false, no value)", async () => {
    const ep = await run("", { command: { shell: false, arguments: ["from", "args"] } }, "rich");
    expect(ep.exit).toBe(0);
    // Entrypoint ["/bin/echo","entry"] + arguments (Cmd dropped).
    expect(ep.stdout).toBe("entry from args\n");
    const who = await run("id -u; id -g; pwd; echo $FOO", {}, "rich");
    expect(who.stdout.trim().split("\n")).toEqual(["1000", "1000", "/work", "bar"]);
  });

  test("CommandInfo.user with --switch_user: a name from the image's /etc/passwd", async () => {
    const r = await run("id -u; id -g", { command: { value: "id -u; id -g", user: "nobody" } });
    expect(r.stdout.trim().split("\n")).toEqual(["65534", "65534"]);
  });

  test("a missing executable: the container fails with 127 and says why in its stderr", async () => {
    const r = await run("", { command: { shell: false, value: "/no/such/program", arguments: ["x"] } });
    expect(r.wait).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 127 << 8 } });
    expect(r.stderr).toContain("executable '/no/such/program' not found");
  });

  test("launch failures are 400 with the reason, and leave nothing behind", async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ command: { shell: true } }, /Shell specified but no command value provided/],
      [{ command: { value: "true" }, container: { type: "DOCKER" } }, /The provided ContainerInfo is not supported/],
      [
        { command: { value: "true" }, container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "nothere" } } } } },
        /Failed to find archive for image 'nothere'/,
      ],
      [
        { command: { value: "true" }, container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "Bad/Name" } } } } },
        /invalid image reference 'Bad\/Name'/,
      ],
      [{ command: { value: "true" }, resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 1 }, role: "web" }] }, /reserved/],
    ];
    for (const [extra, pattern] of cases) {
      const id = `bad${n++}`;
      const r = await call({ type: "LAUNCH_CONTAINER", launch_container: { container_id: { value: id }, ...extra } });
      expect({ status: r.status, text: r.text }).toEqual({ status: 400, text: expect.stringMatching(pattern) });
      expect(existsSync(join(agent.workDir, "containers", id))).toBe(false);
      expect((await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } })).status).toBe(404);
    }
  });

  test("cpus and mem become cgroup limits; usage shows in GET_CONTAINERS", async () => {
    const id = `limits${n++}`;
    const r = await call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: id },
        command: { value: "head -c 3145728 /dev/zero > $MESOS_SANDBOX/blob; cat /proc/self/cgroup; sleep 5" },
        resources: [
          { name: "cpus", type: "SCALAR", scalar: { value: 0.5 } },
          { name: "mem", type: "SCALAR", scalar: { value: 96 } },
          { name: "disk", type: "SCALAR", scalar: { value: 64 } },
        ],
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
      },
    });
    expect(r.status).toBe(200);
    const stdout = join(agent.workDir, "containers", id, "stdout");
    for (let i = 0; i < 100 && !readFileSync(stdout, "utf8").includes("memory"); i++) await Bun.sleep(20);
    const list = await call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
    const mine = (list.json!.get_containers as { containers: Array<Record<string, any>> }).containers.find(
      (c) => c.container_id.value === id,
    )!;
    expect(mine.resource_statistics.mem_limit_bytes).toBe(96 * 1048576);
    expect(mine.resource_statistics.cpus_limit).toBe(0.5);
    expect(typeof mine.resource_statistics.mem_total_bytes).toBe("number");
    // disk is accounted (du of the sandbox and the rootfs changes), not enforced.
    expect(mine.resource_statistics.disk_limit_bytes).toBe(64 * 1048576);
    expect(mine.resource_statistics.disk_used_bytes).toBeGreaterThanOrEqual(3 * 1048576);
    // The limits are the kernel's: read them where the workload's /proc/self/cgroup says it is.
    const cgroups = readFileSync(stdout, "utf8");
    const memPath = /^\d+:memory:(.+)$/m.exec(cgroups)?.[1] ?? /^0::(.+)$/m.exec(cgroups)?.[1];
    expect(memPath).toBe(`/${agent.cgroupsRoot}/${id}`);
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
    const limit = readFileSync(
      v2 ? `/sys/fs/cgroup${memPath}/memory.max` : `/sys/fs/cgroup/memory${memPath}/memory.limit_in_bytes`,
      "utf8",
    ).trim();
    expect(Number(limit)).toBe(96 * 1048576);
    if (!v2) expect(readFileSync(`/sys/fs/cgroup/cpu${memPath}/cpu.shares`, "utf8").trim()).toBe("512");
    await call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: id } } });
    await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    expect(existsSync(v2 ? `/sys/fs/cgroup${memPath}` : `/sys/fs/cgroup/memory${memPath}`)).toBe(false);
  });

  test("a container allocating past its memory limit is OOM-killed, and WAIT says so", async () => {
    const r = await run("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done", {
      resources: [{ name: "mem", type: "SCALAR", scalar: { value: 48 } }],
    });
    expect(r.exit).toBe(9);
    const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: r.id } } });
    expect(wait.json).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: {
        exit_status: 9,
        state: "TASK_FAILED",
        reason: "REASON_CONTAINER_LIMITATION_MEMORY",
        limitation: { resources: [{ name: "mem", type: "SCALAR", scalar: { value: 48 } }] },
        message: expect.stringContaining("Memory limit exceeded"),
      },
    });
  });

  test("without an image: the host's filesystem, but its own PID namespace", async () => {
    const id = `host${n++}`;
    const r = await call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: id },
        command: { value: "echo $$; ls /proc | grep -cE '^[0-9]+$'; pwd; test -d /usr/lib && echo host-fs" },
      },
    });
    expect(r.status).toBe(200);
    await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
    const out = readFileSync(join(agent.workDir, "containers", id, "stdout"), "utf8")
      .trim()
      .split("\n");
    expect(out[0]).toBe("1");
    expect(Number(out[1])).toBeLessThanOrEqual(3); // sh, ls and grep
    expect(out[2]).toBe(join(agent.workDir, "containers", id));
    expect(out[3]).toBe("host-fs");
  });
});

describe.skipIf(!isRoot)("concurrency (needs root)", () => {
  test("50 concurrent launches of one uncached image: all run, the image is pulled once", async () => {
    const { startRegistry } = await import("../helpers/registry.ts");
    const { startProxy } = await import("../helpers/proxy.ts");
    const { pushImage } = await import("../helpers/images.ts");
    const registry = await startRegistry();
    const proxy = await startProxy(registry.url);
    const layout = join(work, "busybox");
    await pushImage(layout, `${registry.host}/busybox:1`, { exact: true });
    const second = await startAgent({
      args: [`--docker_registry=${proxy.url}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
    });
    try {
      const launches = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          second.call({
            type: "LAUNCH_CONTAINER",
            launch_container: {
              container_id: { value: `many${i}` },
              command: { value: "true" },
              container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "busybox:1" } } } },
            },
          }),
        ),
      );
      expect(launches.map((r) => r.status)).toEqual(Array(50).fill(200));
      expect(proxy.count(/\/manifests\//)).toBe(1);
      expect(proxy.requests().filter((r) => r.method === "GET" && /\/blobs\//.test(r.path)).length).toBe(2); // config + layer
      for (let i = 0; i < 50; i++) {
        const ref = { container_id: { value: `many${i}` } };
        const wait = await second.call({ type: "WAIT_CONTAINER", wait_container: ref });
        expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
        expect((await second.call({ type: "REMOVE_CONTAINER", remove_container: ref })).status).toBe(200);
      }
    } finally {
      expect(await second.stop()).toBe(0);
      await proxy.stop();
      await registry.stop();
    }
  }, 120_000);
});

describe.skipIf(!isRoot)("volumes (need root)", () => {
  test("host paths (RW and RO), a sandbox path, and an image mounted read-only", async () => {
    const hostDir = join(work, "host-volume");
    mkdirSync(hostDir, { recursive: true });
    await Bun.write(join(hostDir, "from-host.txt"), "hello from the host\n");
    const roDir = join(work, "host-ro");
    mkdirSync(roDir, { recursive: true });
    const script = [
      "cat /data/from-host.txt",
      "echo written > /data/from-container.txt",
      "echo nope > /ro/x 2>/dev/null && echo ro-writable || echo ro-refused",
      "echo scratch > $MESOS_SANDBOX/scratch/file && echo scratch-ok",
      "cat /opt/rich/etc/rich/keep.txt >/dev/null && echo image-ok",
      "test -e /opt/rich/etc/rich/old.txt && echo whiteout-broken || echo whiteout-ok",
      "touch /opt/rich/new 2>/dev/null && echo image-writable || echo image-refused",
    ].join("; ");
    const r = await run(script, {
      command: { value: script, user: "root" },
      container: {
        type: "MESOS",
        mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } },
        volumes: [
          { container_path: "/data", host_path: hostDir, mode: "RW" },
          { container_path: "/ro", mode: "RO", source: { type: "HOST_PATH", host_path: { path: roDir } } },
          { container_path: "scratch", mode: "RW", source: { type: "SANDBOX_PATH", sandbox_path: { type: "SELF", path: "work/scratch" } } },
          { container_path: "/opt/rich", mode: "RO", image: { type: "DOCKER", docker: { name: "rich" } } },
        ],
      },
    });
    expect(r.stderr).toMatch(/^(sh: can't create \/ro\/x: Read-only file system\n)?$/); // the shell's own word
    expect(r.stdout.trim().split("\n")).toEqual([
      "hello from the host",
      "ro-refused",
      "scratch-ok",
      "image-ok",
      "whiteout-ok",
      "image-refused",
    ]);
    expect(r.exit).toBe(0);
    expect(readFileSync(join(hostDir, "from-container.txt"), "utf8")).toBe("written\n");
    expect(readFileSync(join(r.sandbox, "work/scratch/file"), "utf8")).toBe("scratch\n");
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(hostDir);
  });

  test("bad volumes are 400 with the reason", async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ container_path: "/x", host_path: "/no/such/dir", mode: "RW" }, /Path '\/no\/such\/dir' in HOST_PATH volume does not exist/],
      [
        { container_path: "/x", mode: "RW", source: { type: "HOST_PATH", host_path: { path: "relative" } } },
        /Path 'relative' in HOST_PATH volume is not absolute/,
      ],
      [{ container_path: "../up", host_path: "/tmp", mode: "RW" }, /container_path must not contain '\.\.'/],
      [
        { container_path: "/x", mode: "RO", source: { type: "SANDBOX_PATH", sandbox_path: { type: "SELF", path: "../out" } } },
        /must be relative and stay inside the sandbox/,
      ],
      [
        { container_path: "/x", mode: "RW", image: { type: "DOCKER", docker: { name: "rich" } } },
        /an image volume must be mounted read-only/,
      ],
    ];
    for (const [volume, pattern] of cases) {
      const id = `vol${n++}`;
      const r = await call({
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: { value: id },
          command: { value: "true" },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } }, volumes: [volume] },
        },
      });
      expect({ status: r.status, text: r.text }).toEqual({ status: 400, text: expect.stringMatching(pattern) });
    }
  });
});

describe.skipIf(!isRoot)("nested containers (need root)", () => {
  const launchIn = (id: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    call({ type: "LAUNCH_CONTAINER", launch_container: { container_id: id, ...extra } });

  test("a child without an image shares its parent's filesystem, processes and hostname; its sandbox is under the parent's", async () => {
    const parent = { value: `parent${n++}` };
    expect(
      (
        await launchIn(parent, {
          command: { value: "echo from-parent > /tmp/marker; exec sleep 60" },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
        })
      ).status,
    ).toBe(200);
    await Bun.sleep(200);
    const child = { value: "child", parent };
    const launched = await launchIn(child, {
      command: { value: "cat /tmp/marker; hostname; echo $MESOS_SANDBOX; cat /proc/1/cmdline | tr '\\0' ' '" },
    });
    expect({ status: launched.status, text: launched.text }).toEqual({ status: 200, text: "" });
    const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: child } });
    expect(wait.json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
    const sandbox = join(agent.workDir, "containers", parent.value, "containers", "child");
    expect(readFileSync(join(sandbox, "stdout"), "utf8").trim().split("\n")).toEqual([
      "from-parent",
      parent.value,
      "/mnt/mesos/sandbox/containers/child",
      "sleep 60",
    ]);

    // A grandchild with its own image; then the rules on resources and cgroups.
    const grandchild = { value: "grand", parent: child };
    expect((await launchIn(grandchild, { command: { value: "true" } })).text).toMatch(/Parent container .*child is not running/);
    const imaged = { value: "imaged", parent };
    expect(
      (
        await launchIn(imaged, {
          command: { value: "ls /bin/busybox; sleep 60" },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
        })
      ).status,
    ).toBe(200);
    const deeper = { value: "deeper", parent: imaged };
    expect(
      (await launchIn(deeper, { command: { value: "true" }, resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 0.1 } }] })).text,
    ).toMatch(/Resources and limits can only be set on top-level containers and their direct children/);
    expect(
      (
        await launchIn(
          { value: "withres", parent },
          { command: { value: "true" }, resources: [{ name: "mem", type: "SCALAR", scalar: { value: 32 } }] },
        )
      ).text,
    ).toMatch(/set share_cgroups: false/);
    expect(
      (await launchIn({ value: "top" }, { command: { value: "true" }, container: { type: "MESOS", linux_info: { share_cgroups: true } } }))
        .text,
    ).toMatch(/A top-level container cannot share cgroups/);
    expect((await launchIn({ value: "orphan", parent: { value: "nobody" } }, { command: { value: "true" } })).text).toBe(
      "Parent container nobody does not exist",
    );
    expect(
      (
        await call({
          type: "LAUNCH_NESTED_CONTAINER",
          launch_nested_container: { container_id: { value: "x" }, command: { value: "true" } },
        })
      ).status,
    ).toBe(400);

    // Listing: nested ones only with show_nested; container_id is the value alone, the chain is in the status.
    const list = await call({ type: "GET_CONTAINERS", get_containers: { show_nested: true } });
    const entries = (list.json!.get_containers as { containers: Array<Record<string, any>> }).containers;
    const imagedEntry = entries.find((e) => e.container_id.value === "imaged")!;
    expect(imagedEntry.container_id).toEqual({ value: "imaged" });
    expect(imagedEntry.container_status.container_id).toEqual(imaged);
    expect(entries.some((e) => e.container_id.value === parent.value)).toBe(false);

    // Removing a running nested container is refused; killing the parent ends the children.
    const refused = await call({ type: "REMOVE_NESTED_CONTAINER", remove_nested_container: { container_id: imaged } });
    expect({ status: refused.status, text: refused.text }).toEqual({ status: 500, text: "Nested container has not terminated yet" });
    expect((await call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } })).status).toBe(200);
    const waitNested = await call({ type: "WAIT_NESTED_CONTAINER", wait_nested_container: { container_id: imaged } });
    expect(waitNested.json).toEqual({ type: "WAIT_NESTED_CONTAINER", wait_nested_container: { exit_status: 9 } });
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: child } })).status).toBe(200);
    expect(existsSync(sandbox)).toBe(false);
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: parent } })).status).toBe(200);
    expect((await call({ type: "WAIT_CONTAINER", wait_container: { container_id: imaged } })).status).toBe(404);
  });

  test("a nested container inherits its parent's user", async () => {
    const parent = { value: `uparent${n++}` };
    expect(
      (
        await launchIn(parent, {
          command: { value: "exec sleep 60", user: "nobody" },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
        })
      ).status,
    ).toBe(200);
    const child = { value: "c", parent };
    expect((await launchIn(child, { command: { value: "id -u" } })).status).toBe(200);
    await call({ type: "WAIT_CONTAINER", wait_container: { container_id: child } });
    expect(readFileSync(join(agent.workDir, "containers", parent.value, "containers", "c", "stdout"), "utf8").trim()).toBe("65534");
    await call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
    await call({ type: "WAIT_CONTAINER", wait_container: { container_id: parent } });
    expect((await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: parent } })).status).toBe(200);
  });
});

describe.skipIf(!isRoot)("URIs (need root)", () => {
  test("http and file URIs land in the sandbox before the command runs; archives are extracted", async () => {
    const files = join(work, "uri-files");
    mkdirSync(join(files, "pkg"), { recursive: true });
    await Bun.write(join(files, "pkg", "inside.txt"), "from the archive\n");
    expect(Bun.spawnSync(["tar", "-czf", join(files, "pkg.tar.gz"), "-C", files, "pkg"]).exitCode).toBe(0);
    await Bun.write(join(files, "tool.sh"), "#!/bin/sh\necho tool ran\n");
    await Bun.write(join(files, "plain.txt"), "plain\n");
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (req) => {
        const file = Bun.file(join(files, new URL(req.url).pathname));
        return (await file.exists()) ? new Response(file) : new Response("no such file", { status: 404 });
      },
    });
    try {
      const script = "cat pkg/inside.txt; ./tool.sh; cat renamed.txt";
      const r = await run(script, {
        command: {
          value: script,
          uris: [
            { value: `http://127.0.0.1:${server.port}/pkg.tar.gz` },
            { value: `http://127.0.0.1:${server.port}/tool.sh`, executable: true },
            { value: `file://${join(files, "plain.txt")}`, output_file: "renamed.txt" },
          ],
        },
      });
      expect(r.stdout).toBe("from the archive\ntool ran\nplain\n");
      const bad = await call({
        type: "LAUNCH_CONTAINER",
        launch_container: {
          container_id: { value: `uri${n++}` },
          command: { value: "true", uris: [{ value: `http://127.0.0.1:${server.port}/missing` }] },
          container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
        },
      });
      expect({ status: bad.status, text: bad.text }).toEqual({
        status: 400,
        text: expect.stringMatching(/^Failed to fetch 'http:\/\/127\.0\.0\.1:\d+\/missing': HTTP 404/),
      });
    } finally {
      server.stop(true);
    }
  });
});

describe.skipIf(!isRoot)("the launcher and the containers it forks (need root)", () => {
  const childrenOf = (ppid: number) =>
    readdirSync("/proc")
      .filter((e) => /^\d+$/.test(e))
      .map(Number)
      .filter((pid) => {
        try {
          return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) === ppid;
        } catch {
          return false;
        }
      });
  const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  const launcherOf = (socket: string) =>
    readdirSync("/proc")
      .filter((e) => /^\d+$/.test(e))
      .map(Number)
      .find((pid) => {
        try {
          return cmdline(pid).includes(`__launcher --serve ${socket}`);
        } catch {
          return false;
        }
      });

  test("one launcher parents every workload, each PID 1 of a namespace of its own; no process waits ahead of launches", async () => {
    const ids = [`w${n++}`, `w${n++}`];
    for (const id of ids) expect((await start(id, "exec sleep 30")).status).toBe(200);
    const pids = ids.map((id) => Number(readFileSync(join(agent.workDir, "run", "containers", id, "pid"), "utf8")));
    const parents = pids.map((pid) => Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]));
    expect(parents[0]).toBe(parents[1]!);
    expect(cmdline(parents[0]!)).toContain("__launcher");
    // Each workload is PID 1 of a PID namespace of its own, not the launcher's.
    const ns = (pid: number) => readlinkSync(`/proc/${pid}/ns/pid`);
    expect(new Set([ns(parents[0]!), ...pids.map(ns)]).size).toBe(3);
    // The launcher's children are the workloads, nothing else (no init stage started ahead).
    await Bun.sleep(100);
    expect(childrenOf(parents[0]!).sort()).toEqual([...pids].sort());
    for (const id of ids) {
      await call({ type: "KILL_CONTAINER", kill_container: { container_id: { value: id } } });
      const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
      expect((wait.json!.wait_container as { exit_status: number }).exit_status).toBe(9);
      expect((await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
    }
  });

  test("a launch starts no binary: with the agent's binary deleted from disk, containers still launch", async () => {
    // A private copy of the binary for an agent of its own, then removed: a fork needs no file,
    // a start of `ucr __init` would fail ("(deleted)").
    const dir = tempDir();
    const binary = join(dir, "ucr-copy");
    copyFileSync(requireBinary(), binary);
    chmodSync(binary, 0o755);
    const own = await startAgent({ binary });
    try {
      const launch = (id: string) =>
        callAgent(own, {
          type: "LAUNCH_CONTAINER",
          launch_container: {
            container_id: { value: id },
            command: { shell: true, value: "echo forked; exit 3" },
            resources: [],
          },
        });
      const wait = (id: string) => callAgent(own, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
      expect((await launch("first")).status).toBe(200); // starts the launcher from the file
      expect((await wait("first")).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 3 << 8 } });
      rmSync(binary);
      for (const id of ["second", "third"]) {
        expect((await launch(id)).status).toBe(200);
        expect((await wait(id)).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 3 << 8 } });
        expect(readFileSync(join(own.workDir, "containers", id, "stdout"), "utf8")).toBe("forked\n");
      }
    } finally {
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an agent with nothing running keeps its launcher, quiet (it says so), past the 12 s after which it used to exit: the next launch goes to it", async () => {
    const own = await startAgent();
    try {
      const launchWait = async (id: string) => {
        const launched = await callAgent(own, {
          type: "LAUNCH_CONTAINER",
          launch_container: { container_id: { value: id }, command: { shell: true, value: `echo ${id}` } },
        });
        expect(launched.status).toBe(200);
        const wait = await callAgent(own, { type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
        expect(wait.json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
        expect(readFileSync(join(own.workDir, "containers", id, "stdout"), "utf8")).toBe(`${id}\n`);
      };
      const socket = join(own.workDir, "run", "launcher.sock");
      await launchWait("first");
      const launched = Date.now();
      const launcher = launcherOf(socket);
      expect(launcher).toBeGreaterThan(0);
      const quiet = () => readFileSync(`${socket}.log`, "utf8").includes("idle: nothing runs");
      for (let i = 0; i < 400 && !quiet(); i++) await Bun.sleep(50);
      expect(quiet()).toBe(true);
      await Bun.sleep(Math.max(0, 13_000 - (Date.now() - launched)));
      expect(launcherOf(socket)).toBe(launcher);
      await launchWait("second");
      expect(launcherOf(socket)).toBe(launcher);
    } finally {
      await own.stop();
    }
  }, 40_000);

  test("a killed launcher: the next launch starts a new launcher", async () => {
    await run("true");
    const launcher = launcherOf(join(agent.workDir, "run", "launcher.sock"));
    expect(launcher).toBeGreaterThan(0);
    process.kill(launcher!, "SIGKILL");
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      gone = !existsSync(`/proc/${launcher}`) || readFileSync(`/proc/${launcher}/stat`, "utf8").includes(") Z ");
      if (!gone) await Bun.sleep(20);
    }
    expect(gone).toBe(true);
    const r = await run("echo again");
    expect(r).toMatchObject({ exit: 0, stdout: "again\n" });
  });

  test("a launch the launcher never read (stopped, then killed) goes to a new launcher, not a 400", async () => {
    await run("true"); // the launcher runs
    const socket = join(agent.workDir, "run", "launcher.sock");
    const launcher = launcherOf(socket)!;
    process.kill(launcher, "SIGSTOP");
    const id = `w${n++}`;
    try {
      const launching = start(id, "echo late");
      // Its request goes out right after the LAUNCHING checkpoint, to a launcher that reads nothing.
      const checkpoint = join(agent.workDir, "run", "containers", id, "container.json");
      for (let i = 0; i < 500 && !(existsSync(checkpoint) && readFileSync(checkpoint, "utf8").includes('"LAUNCHING"')); i++)
        await Bun.sleep(10);
      await Bun.sleep(100);
      process.kill(launcher, "SIGKILL");
      const launched = await launching;
      expect({ status: launched.status, text: launched.text }).toEqual({ status: 200, text: "" });
    } finally {
      try {
        process.kill(launcher, "SIGKILL");
      } catch {
        // gone
      }
    }
    const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
    expect((wait.json!.wait_container as { exit_status: number }).exit_status).toBe(0);
    expect(readFileSync(join(agent.workDir, "containers", id, "stdout"), "utf8")).toBe("late\n");
    expect(launcherOf(socket)).not.toBe(launcher);
  });

  test("a forked container gets the sandbox's stdout and stderr and no stdin", async () => {
    // Several in a row: the first may start the launcher, the next ones are forked by it.
    for (let i = 0; i < 3; i++) {
      const r = await run(`echo out${i}; echo err${i} >&2; readlink /proc/self/fd/0; cat; echo pid $$`);
      expect(r.exit).toBe(0);
      expect(r.stdout).toBe(`out${i}\n/dev/null\npid 1\n`);
      expect(r.stderr).toBe(`err${i}\n`);
    }
  });
});
