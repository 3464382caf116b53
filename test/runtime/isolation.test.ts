// LinuxInfo and friends in real containers, each seen from inside: rlimits (posix/rlimits),
// ipc_mode and shm_size (namespaces/ipc), host-path mount propagation (HOST_TO_CONTAINER and
// BIDIRECTIONAL, with shared mounts this test makes in its own temp dir), the hostname on the
// host network, --allowed_devices with linux/devices, the devices cgroup from a container on
// the host's filesystem, the pids limit, sandbox paths (PARENT, legacy relative host_path),
// SECRET environment variables and per-image registry credentials (Image.docker.config); the
// refusals through the API; and every isolator ucr does not implement stopping the agent.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import { loadFlags } from "../../src/config/flags.ts";
import { ISOLATORS } from "../../src/config/isolators.ts";
import { type RunningAgent, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { runCommand } from "../helpers/command.ts";
import { DEFAULT_SET, removeContainersAndStop } from "../helpers/confinement.ts";
import { buildBusyboxImage, pushImage, saveArchive } from "../helpers/images.ts";
import { type Registry, startRegistry } from "../helpers/registry.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-isolation-");
const shared = join(work, "shared"); // bind-mounted on itself and made shared by this test
let plain: RunningAgent | undefined;
let full: RunningAgent | undefined;
let registry: Registry | undefined;
const mounts: string[] = [];

const ALL = [
  "filesystem/linux",
  "docker/runtime",
  "namespaces/ipc",
  "namespaces/pid",
  "posix/rlimits",
  "environment_secret",
  "linux/devices",
  "cgroups/devices",
  "cgroups/pids",
  "linux/capabilities",
];

async function sh(cmd: string): Promise<void> {
  const r = await runCommand(["sh", "-c", cmd]);
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
}

beforeAll(async () => {
  if (!isRoot) return;
  const images = join(work, "images");
  mkdirSync(images);
  const layout = join(work, "busybox");
  buildBusyboxImage(layout, { tag: "1" });
  await saveArchive(layout, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  registry = await startRegistry({ auth: "basic" });
  await pushImage(layout, `${registry.host}/private:1`, { exact: true, creds: registry.creds });
  mkdirSync(join(shared, "vol"), { recursive: true });
  await sh(`mount --bind ${shared} ${shared} && mount --make-shared ${shared}`);
  mounts.push(shared);
  const common = [`--docker_registry=${images}`, "--image_providers=docker"];
  plain = await startAgent({ args: [...common, "--isolation=filesystem/linux,docker/runtime"] });
  full = await startAgent({
    args: [
      ...common,
      `--isolation=${ALL.join(",")}`,
      `--bounding_capabilities=${JSON.stringify({ capabilities: [...DEFAULT_SET, "SYS_ADMIN"] })}`,
      `--allowed_devices=${JSON.stringify({ allowed_devices: [{ device: { path: "/dev/fuse" }, access: { read: true, write: true } }] })}`,
      "--default_container_shm_size=32MB",
    ],
  });
});

afterAll(async () => {
  await removeContainersAndStop([plain, full]);
  await registry?.stop();
  for (const m of mounts.reverse()) await runCommand(["umount", "-l", m]);
  rmSync(work, { recursive: true, force: true });
});

let n = 0;
type Body = Record<string, unknown>;

function body(id: { value: string; parent?: unknown }, script: string, container: Body = {}, extra: Body = {}): Body {
  const image = container.noImage ? {} : { mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } };
  const { noImage: _, ...rest } = container;
  return {
    type: "LAUNCH_CONTAINER",
    launch_container: { container_id: id, command: { value: script }, container: { type: "MESOS", ...image, ...rest }, ...extra },
  };
}

async function launch(a: RunningAgent, id: { value: string; parent?: unknown }, script: string, container: Body = {}, extra: Body = {}) {
  const res = await a.call(body(id, script, container, extra));
  return { status: res.status, text: await res.text() };
}

async function wait(a: RunningAgent, id: { value: string; parent?: unknown }): Promise<void> {
  expect((await a.call({ type: "WAIT_CONTAINER", wait_container: { container_id: id } })).status).toBe(200);
}

function sandboxOf(a: RunningAgent, id: { value: string; parent?: { value: string } }): string {
  return id.parent ? join(a.workDir, "containers", id.parent.value, "containers", id.value) : join(a.workDir, "containers", id.value);
}

/** Launches `script`, waits, returns its stdout and stderr (the launch must succeed). */
async function run(a: RunningAgent, script: string, container: Body = {}, extra: Body = {}) {
  const id = { value: `is${n++}` };
  expect(await launch(a, id, script, container, extra)).toEqual({ status: 200, text: "" });
  await wait(a, id);
  const sandbox = sandboxOf(a, id);
  return { id: id.value, stdout: readFileSync(join(sandbox, "stdout"), "utf8"), stderr: readFileSync(join(sandbox, "stderr"), "utf8") };
}

const skip = !isRoot ? "needs root (namespaces, mounts, cgroups)" : null;

describe.skipIf(skip !== null)(`rlimits (posix/rlimits) (${skip ?? "root"})`, () => {
  test("set before exec, for a non-root user too; both values unset is unlimited", async () => {
    const script = "grep -E '^Max (open files|core file size|file size)' /proc/self/limits";
    const rlimits = [
      { type: "RLMT_NOFILE", soft: 123, hard: "456" },
      { type: "RLMT_CORE" },
      { type: "RLMT_FSIZE", soft: 1048576, hard: 2097152 },
    ];
    const r = await run(full!, script, { rlimit_info: { rlimits } }, { command: { value: script, user: "nobody" } });
    expect(r.stdout).toMatch(/^Max file size\s+1048576\s+2097152\s+bytes\s*$/m);
    expect(r.stdout).toMatch(/^Max core file size\s+unlimited\s+unlimited\s+bytes\s*$/m);
    expect(r.stdout).toMatch(/^Max open files\s+123\s+456\s+files\s*$/m);
  });

  const agentHard = () => BigInt(readFileSync(`/proc/${full!.proc.pid}/limits`, "utf8").match(/^Max open files\s+\d+\s+(\d+)/m)![1]!);
  const holdsSysResource = ((BigInt(`0x${/^CapEff:\s*(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1]}`) >> 24n) & 1n) === 1n;

  test.skipIf(!holdsSysResource)(
    "above the agent's own hard limit: granted and logged with the container ID (needs CAP_SYS_RESOURCE)",
    async () => {
      const above = agentHard() + 1000n;
      const r = await run(full!, "grep '^Max open files' /proc/self/limits", {
        rlimit_info: { rlimits: [{ type: "RLMT_NOFILE", soft: 123, hard: String(above) }] },
      });
      expect(r.stdout).toMatch(new RegExp(`^Max open files\\s+123\\s+${above}\\s`));
      expect(full!.log()).toContain(
        `privilege: container ${r.id} is granted RLMT_NOFILE 123/${above}, above the agent's own hard limit ${agentHard()}`,
      );
    },
  );

  test.skipIf(holdsSysResource)(
    "above the agent's own hard limit without CAP_SYS_RESOURCE (this machine withholds it): 400, not a failed exec",
    async () => {
      const above = agentHard() + 1000n;
      expect(
        await launch(full!, { value: `is${n++}` }, "true", {
          rlimit_info: { rlimits: [{ type: "RLMT_NOFILE", soft: 123, hard: String(above) }] },
        }),
      ).toEqual({
        status: 400,
        text:
          `container.rlimit_info: RLMT_NOFILE hard limit ${above} is above the agent's own (${agentHard()}), ` +
          "and this agent does not hold CAP_SYS_RESOURCE to raise it",
      });
    },
  );

  test("refused: without the isolator, a value the kernel cannot take, Mesos' rules", async () => {
    const limit = (r: Body) => ({ rlimit_info: { rlimits: [r] } });
    expect(await launch(plain!, { value: `is${n++}` }, "true", limit({ type: "RLMT_CORE" }))).toEqual({
      status: 400,
      text: expect.stringMatching(/^container\.rlimit_info: needs the posix\/rlimits isolator/),
    });
    expect(await launch(full!, { value: `is${n++}` }, "true", limit({ type: "RLMT_NOFILE" }))).toEqual({
      status: 400,
      text: expect.stringMatching(/RLMT_NOFILE unlimited is above this kernel's most open files per process \(fs\.nr_open = \d+\)/),
    });
    expect(await launch(full!, { value: `is${n++}` }, "true", limit({ type: "RLMT_AS", hard: 5 }))).toEqual({
      status: 400,
      text: expect.stringMatching(/Invalid rlimit values/),
    });
  });
});

/** The inode of an IPC namespace, as /proc/<pid>/ns/ipc names it. */
const ipcOf = (pid: number | "self") => readlinkSync(`/proc/${pid}/ns/ipc`);
/** The tmpfs size at /dev/shm from a mountinfo text, in KiB. */
const shmSize = (mountinfo: string) => /^\S+ \S+ \S+ \S+ \/dev\/shm .* - tmpfs \S+ \S*size=(\d+)k/m.exec(mountinfo)?.[1];

describe.skipIf(skip !== null)(`ipc_mode and shm_size (namespaces/ipc) (${skip ?? "root"})`, () => {
  test("by default a container has its own IPC namespace and a 64MB /dev/shm (32MB with --default_container_shm_size)", async () => {
    const script = "readlink /proc/self/ns/ipc; cat /proc/self/mountinfo";
    const [a, b] = [await run(plain!, script), await run(full!, script)];
    expect(a.stdout.split("\n")[0]).not.toBe(ipcOf("self"));
    expect(shmSize(a.stdout)).toBe("65536");
    expect(shmSize(b.stdout)).toBe("32768");
  });

  test("PRIVATE with shm_size: its own namespace and /dev/shm, which a nested SHARE_PARENT container shares", async () => {
    const parent = { value: `is${n++}` };
    const script = "readlink /proc/self/ns/ipc > /mnt/mesos/sandbox/ns; cat /proc/self/mountinfo > /mnt/mesos/sandbox/mi; exec sleep 60";
    expect(await launch(full!, parent, script, { linux_info: { ipc_mode: "PRIVATE", shm_size: 16 } })).toEqual({ status: 200, text: "" });
    const sandbox = sandboxOf(full!, parent);
    for (let i = 0; i < 100 && !existsSync(join(sandbox, "mi")); i++) await Bun.sleep(50);
    await Bun.sleep(100);
    expect(shmSize(readFileSync(join(sandbox, "mi"), "utf8"))).toBe("16384");
    const parentNs = readFileSync(join(sandbox, "ns"), "utf8").trim();
    expect(parentNs).not.toBe(ipcOf("self"));

    const child = { value: "c", parent };
    const share = "echo from-child > /dev/shm/hello; readlink /proc/self/ns/ipc";
    expect(await launch(full!, child, share, { linux_info: { ipc_mode: "SHARE_PARENT" } })).toEqual({ status: 200, text: "" });
    await wait(full!, child);
    expect(readFileSync(join(sandboxOf(full!, child), "stdout"), "utf8").trim()).toBe(parentNs);
    // The parent's /dev/shm is the tmpfs the agent mounted in its runtime dir: the child's file is there.
    const runtime = join(full!.workDir, "run", "containers", parent.value, "shm");
    expect(readFileSync(join(runtime, "hello"), "utf8")).toBe("from-child\n");

    // A nested PRIVATE one gets a namespace of its own.
    const own = { value: "own", parent };
    expect(await launch(full!, own, "readlink /proc/self/ns/ipc; ls /dev/shm", { linux_info: { ipc_mode: "PRIVATE" } })).toEqual({
      status: 200,
      text: "",
    });
    await wait(full!, own);
    const [ns, listing] = readFileSync(join(sandboxOf(full!, own), "stdout"), "utf8").split("\n");
    expect(ns).not.toBe(parentNs);
    expect(listing).toBe("");

    await full!.call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
    await wait(full!, parent);
    expect((await full!.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: parent } })).status).toBe(200);
    // Removed with it: the tmpfs is unmounted, nothing is left in the agent's mount table.
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(runtime);
  });

  test("SHARE_PARENT at the top level: the agent's IPC namespace and /dev/shm (logged)", async () => {
    const name = `ucr-isolation-${process.pid}-${n}`;
    try {
      const r = await run(full!, `readlink /proc/self/ns/ipc; echo shared > /dev/shm/${name}`, {
        linux_info: { ipc_mode: "SHARE_PARENT" },
      });
      expect(r.stdout.trim()).toBe(ipcOf(full!.proc.pid));
      expect(readFileSync(`/dev/shm/${name}`, "utf8")).toBe("shared\n");
      expect(full!.log()).toContain(`privilege: container ${r.id} shares the agent's IPC namespace and /dev/shm`);
    } finally {
      rmSync(`/dev/shm/${name}`, { force: true });
    }
  });

  test("refused: a nested SHARE_PARENT whose parent's /dev/shm is its own; ipc fields without namespaces/ipc", async () => {
    const parent = { value: `is${n++}` };
    expect(await launch(full!, parent, "exec sleep 60")).toEqual({ status: 200, text: "" });
    expect(await launch(full!, { value: "c", parent }, "true", { linux_info: { ipc_mode: "SHARE_PARENT" } })).toEqual({
      status: 400,
      text:
        `container.linux_info.ipc_mode: The shared memory of container ${parent.value} cannot be shared with any other ` +
        "containers because it is only in the container's own mount namespace",
    });
    await full!.call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
    expect(await launch(plain!, { value: `is${n++}` }, "true", { linux_info: { ipc_mode: "PRIVATE" } })).toEqual({
      status: 400,
      text: expect.stringMatching(/^container\.linux_info\.ipc_mode: needs the namespaces\/ipc isolator/),
    });
  });
});

const pidNsOf = (pid: number | "self") => readlinkSync(`/proc/${pid}/ns/pid`);

describe.skipIf(skip !== null)(`share_pid_namespace (namespaces/pid) (${skip ?? "root"})`, () => {
  test("a nested container has its own PID namespace (Mesos' default), or its parent's when it asks; it ends with its parent", async () => {
    const parent = { value: `is${n++}` };
    expect(await launch(full!, parent, "readlink /proc/self/ns/pid > /mnt/mesos/sandbox/ns; exec sleep 60")).toEqual({
      status: 200,
      text: "",
    });
    const sandbox = sandboxOf(full!, parent);
    for (let i = 0; i < 100 && !(existsSync(join(sandbox, "ns")) && readFileSync(join(sandbox, "ns"), "utf8").endsWith("\n")); i++)
      await Bun.sleep(50);
    const parentNs = readFileSync(join(sandbox, "ns"), "utf8").trim();

    const own = { value: "own", parent };
    const script = "readlink /proc/self/ns/pid; echo $$; ls /proc | grep -c '^[0-9]'";
    expect(await launch(full!, own, script)).toEqual({ status: 200, text: "" });
    await wait(full!, own);
    const [ownNs, ownPid, ownProcs] = readFileSync(join(sandboxOf(full!, own), "stdout"), "utf8")
      .trim()
      .split("\n");
    expect(ownNs).not.toBe(parentNs);
    expect(ownPid).toBe("1");
    expect(Number(ownProcs)).toBeLessThan(4); // sh, ls, grep: not the parent's sleep

    const shared = { value: "shared", parent };
    expect(await launch(full!, shared, script, { linux_info: { share_pid_namespace: true } })).toEqual({ status: 200, text: "" });
    await wait(full!, shared);
    const [sharedNs, sharedPid] = readFileSync(join(sandboxOf(full!, shared), "stdout"), "utf8")
      .trim()
      .split("\n");
    expect(sharedNs).toBe(parentNs);
    expect(sharedPid).not.toBe("1");

    // A long-running child in its own namespace ends when its parent is killed.
    const sleeper = { value: "sleeper", parent };
    expect(await launch(full!, sleeper, "exec sleep 600")).toEqual({ status: 200, text: "" });
    await full!.call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
    const w = (await (await full!.call({ type: "WAIT_CONTAINER", wait_container: { container_id: sleeper } })).json()) as {
      wait_container: { exit_status: number };
    };
    expect(w.wait_container.exit_status).toBe(9);
  });

  test("a nested container in its own PID namespace whose parent died while no agent ran is ended by the next agent", async () => {
    const wd = join(work, "pid-restart");
    const args = [
      `--work_dir=${wd}`,
      `--runtime_dir=${join(wd, "run")}`,
      `--docker_registry=${join(work, "images")}`,
      "--image_providers=docker",
    ];
    const iso = "--isolation=filesystem/linux,docker/runtime,namespaces/pid";
    const first = await startAgent({ args: [...args, iso], keepWorkDir: true });
    const parent = { value: "p" };
    const child = { value: "c", parent };
    expect(await launch(first, parent, "exec sleep 600")).toEqual({ status: 200, text: "" });
    expect(await launch(first, child, "exec sleep 600")).toEqual({ status: 200, text: "" });
    const pidOf = (id: string) => Number(readFileSync(join(wd, "run", "containers", ...id.split("/")), "utf8"));
    const parentPid = pidOf("p/pid");
    const childPid = pidOf("p/containers/c/pid");
    expect(pidNsOf(childPid)).not.toBe(pidNsOf(parentPid));
    expect(await first.stop()).toBe(0); // containers outlive the agent
    process.kill(parentPid, "SIGKILL");
    await Bun.sleep(200);
    expect(existsSync(`/proc/${childPid}`)).toBe(true); // its own namespace: the parent's death alone does not end it
    const second = await startAgent({ args: [...args, iso], keepWorkDir: true });
    try {
      const w = (await (await second.call({ type: "WAIT_CONTAINER", wait_container: { container_id: child } })).json()) as {
        wait_container: { exit_status: number };
      };
      expect(w.wait_container.exit_status).toBe(9);
      expect(second.log()).toContain("container p.c: its parent p ended; killing it");
      expect((await second.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: parent } })).status).toBe(200);
    } finally {
      expect(await second.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  });

  test("a top-level container may share the agent's PID namespace (logged); --disallow_sharing_agent_pid_namespace refuses", async () => {
    const r = await run(full!, "readlink /proc/self/ns/pid; test -d /proc/1 && echo sees-host-init", {
      linux_info: { share_pid_namespace: true },
    });
    expect(r.stdout).toBe(`${pidNsOf(full!.proc.pid)}\nsees-host-init\n`);
    expect(full!.log()).toContain(`privilege: container ${r.id} shares the agent's PID namespace`);
    const a = await startAgent({ args: ["--isolation=namespaces/pid", "--disallow_sharing_agent_pid_namespace"] });
    try {
      const refused = await a.call(body({ value: "x" }, "true", { noImage: true, linux_info: { share_pid_namespace: true } }));
      expect({ status: refused.status, text: await refused.text() }).toEqual({
        status: 400,
        text: "container.linux_info.share_pid_namespace: Sharing agent pid namespace with top-level container is not allowed",
      });
    } finally {
      expect(await a.stop()).toBe(0);
    }
  });

  test("a nested container without an image cannot have a PID namespace of its own (it sees its parent's /proc)", async () => {
    const parent = { value: `is${n++}` };
    expect(await launch(full!, parent, "exec sleep 60")).toEqual({ status: 200, text: "" });
    const r = await launch(full!, { value: "c", parent }, "true", { noImage: true, linux_info: { share_pid_namespace: false } });
    expect(r.status).toBe(400);
    expect(r.text).toMatch(/^container\.linux_info\.share_pid_namespace: false needs a PID namespace of the container's own/);
    await full!.call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
  });
});

describe.skipIf(skip !== null)(`host path mount propagation (${skip ?? "root"})`, () => {
  test("HOST_TO_CONTAINER (and the default): a mount made on the host appears inside; one made inside stays there", async () => {
    const vol = join(shared, "vol");
    const id = { value: `is${n++}` };
    const script = [
      "mkdir -p /mnt/h/inside && mount -t tmpfs none /mnt/h/inside && echo mounted-inside",
      "for i in $(seq 200); do test -e /mnt/h/from-host/marker && break; sleep 0.05; done",
      "cat /mnt/h/from-host/marker",
    ].join("; ");
    const volume = {
      container_path: "/mnt/h",
      mode: "RW",
      source: { type: "HOST_PATH", host_path: { path: vol, mount_propagation: { mode: "HOST_TO_CONTAINER" } } },
    };
    const linux = { effective_capabilities: { capabilities: [...DEFAULT_SET, "SYS_ADMIN"] } };
    expect(await launch(full!, id, script, { volumes: [volume], linux_info: linux })).toEqual({ status: 200, text: "" });
    mkdirSync(join(vol, "from-host"), { recursive: true });
    await sh(`mount -t tmpfs none ${join(vol, "from-host")} && echo seen-from-host > ${join(vol, "from-host", "marker")}`);
    mounts.push(join(vol, "from-host"));
    await wait(full!, id);
    expect(readFileSync(join(sandboxOf(full!, id), "stdout"), "utf8")).toBe("mounted-inside\nseen-from-host\n");
    // The container's own tmpfs did not come out.
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(join(vol, "inside"));
  });

  test("BIDIRECTIONAL: a tmpfs mounted inside, under a shared host mount, appears on the host (what CSI plugins need)", async () => {
    const vol = join(shared, "vol");
    const script = "mkdir -p /mnt/b/csi && mount -t tmpfs none /mnt/b/csi && echo from-container > /mnt/b/csi/file && echo done";
    const volume = {
      container_path: "/mnt/b",
      mode: "RW",
      source: { type: "HOST_PATH", host_path: { path: vol, mount_propagation: { mode: "BIDIRECTIONAL" } } },
    };
    const r = await run(full!, script, {
      volumes: [volume],
      linux_info: { effective_capabilities: { capabilities: [...DEFAULT_SET, "SYS_ADMIN"] } },
    });
    mounts.push(join(vol, "csi"));
    expect(r.stdout).toBe("done\n");
    expect(readFileSync(join(vol, "csi", "file"), "utf8")).toBe("from-container\n");
    expect(readFileSync("/proc/self/mountinfo", "utf8")).toContain(` ${join(vol, "csi")} `);
    expect(full!.log()).toContain(`privilege: container ${r.id} gets host path ${vol} at /mnt/b with BIDIRECTIONAL mount propagation`);
  });

  test("BIDIRECTIONAL under a mount that is not shared is refused with Mesos' message", async () => {
    const dir = join(work, "private-vol");
    mkdirSync(dir, { recursive: true });
    const volume = {
      container_path: "/mnt/b",
      mode: "RW",
      source: { type: "HOST_PATH", host_path: { path: dir, mount_propagation: { mode: "BIDIRECTIONAL" } } },
    };
    const r = await launch(full!, { value: `is${n++}` }, "true", { volumes: [volume] });
    expect(r.status).toBe(400);
    expect(r.text).toContain(`Cannot setup bidirectional mount propagation for host path '${dir}' because it is not under a shared mount`);
  });
});

describe.skipIf(skip !== null)(`devices, pids, hostname, sandbox paths, secrets (${skip ?? "root"})`, () => {
  test("linux/devices makes --allowed_devices in /dev; the devices cgroup lets it be opened", async () => {
    const r = await run(full!, "ls -l /dev/fuse; exec 3<>/dev/fuse && echo opened");
    expect(r.stdout).toMatch(/^crw-rw-rw- .* 10, +229 .*\/dev\/fuse\nopened\n$/);
    expect(full!.log()).toContain(`privilege: container ${r.id} may use the --allowed_devices c 10:229 rw`);
  });

  test("a container on the host's filesystem sees the host's /dev but may open only the allowed devices", async () => {
    const r = await run(plain!, "head -c 1 /dev/zero | wc -c; cat /dev/loop-control 2>&1; head -c 1 /dev/kmsg 2>&1 >/dev/null", {
      noImage: true,
    });
    const [zero, loop, kmsg] = r.stdout.split("\n");
    expect(zero).toBe("1");
    expect(loop).toMatch(/\/dev\/loop-control.*Operation not permitted$/);
    expect(kmsg).toMatch(/\/dev\/kmsg.*Operation not permitted$/);
  });

  test("the pids limit is the container's pids.max; a container sees its own under /sys/fs/cgroup/pids", async () => {
    const r = await run(plain!, "cat /sys/fs/cgroup/pids/pids.max");
    expect(r.stdout).toBe("2048\n");
  });

  test("ContainerInfo.hostname on the host network: the UTS name, /etc/hostname and /etc/hosts", async () => {
    const r = await run(plain!, "hostname; cat /etc/hostname; grep plain.example /etc/hosts", { hostname: "plain.example" });
    expect(r.stdout).toBe("plain.example\nplain.example\n127.0.1.1\tplain.example\n");
  });

  test("a PARENT sandbox path, and a legacy relative host_path (a path in the sandbox)", async () => {
    const parent = { value: `is${n++}` };
    expect(await launch(full!, parent, "exec sleep 60")).toEqual({ status: 200, text: "" });
    const child = { value: "c", parent };
    const volumes = [
      { container_path: "/from-parent", mode: "RW", source: { type: "SANDBOX_PATH", sandbox_path: { type: "PARENT", path: "shared" } } },
      { container_path: "/legacy", mode: "RW", host_path: "work/legacy" },
    ];
    expect(await launch(full!, child, "echo p > /from-parent/f; echo l > /legacy/f", { volumes })).toEqual({ status: 200, text: "" });
    await wait(full!, child);
    expect(readFileSync(join(sandboxOf(full!, parent), "shared", "f"), "utf8")).toBe("p\n");
    expect(readFileSync(join(sandboxOf(full!, child), "work", "legacy", "f"), "utf8")).toBe("l\n");
    await full!.call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
  });

  test("SECRET environment variables by value (environment_secret); refused without it", async () => {
    const secret = { name: "TOKEN", type: "SECRET", secret: { type: "VALUE", value: { data: Buffer.from("s3cr3t").toString("base64") } } };
    const command = { value: "echo $TOKEN", environment: { variables: [secret] } };
    expect((await run(full!, "", {}, { command })).stdout).toBe("s3cr3t\n");
    expect(await launch(plain!, { value: `is${n++}` }, "", {}, { command })).toEqual({
      status: 400,
      text: expect.stringMatching(/^command\.environment\.variables\[0\]: needs the environment_secret isolator/),
    });
  });

  test("Image.docker.config: a pull with the request's registry credentials; without them the registry says no", async () => {
    const name = `${registry!.host}/private:1`;
    const config = { auths: { [registry!.host]: { auth: Buffer.from(registry!.creds!).toString("base64") } } };
    const image = (withConfig: boolean) => ({
      mesos: {
        image: {
          type: "DOCKER",
          docker: {
            name,
            ...(withConfig ? { config: { type: "VALUE", value: { data: Buffer.from(JSON.stringify(config)).toString("base64") } } } : {}),
          },
          cached: false,
        },
      },
    });
    // An agent whose default registry is that one (with an archive directory, names are archive files).
    const a = await startAgent({
      args: [`--docker_registry=${registry!.url}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
    });
    try {
      const denied = await a.call(body({ value: "denied" }, "true", image(false)));
      expect(denied.status).toBe(400);
      expect(await denied.text()).toMatch(/requires a user name and password/);
      const ok = await a.call(body({ value: "pulled" }, "true", image(true)));
      expect({ status: ok.status, text: await ok.text() }).toEqual({ status: 200, text: "" });
      expect((await a.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "pulled" } } })).status).toBe(200);
      expect((await a.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "pulled" } } })).status).toBe(200);
    } finally {
      expect(await a.stop()).toBe(0);
    }
  });
});

describe("every isolator name takes effect, is done anyway, or stops the agent naming it", () => {
  const unsupported = Object.entries(ISOLATORS).filter(([, i]) => i.kind === "unsupported");

  test.each(unsupported.map(([name, i]) => [name, i.note]))("%s: refused at start-up, with why", (name, note) => {
    expect(() => loadFlags([`--isolation=filesystem/linux,${name}`], {})).toThrow(
      `flag '--isolation': isolator '${name}' is not supported by ucr: ${note}`,
    );
  });

  test.skipIf(!isRoot)("the agent itself stops, naming the isolator; one done anyway is accepted and logged once as such", async () => {
    const dir = join(work, "iso-start");
    const r = await runUcr(["agent", "--port=0", `--work_dir=${dir}`, `--runtime_dir=${dir}/run`, "--isolation=posix/cpu,disk/xfs"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("flag '--isolation': isolator 'disk/xfs' is not supported by ucr");
    const a = await startAgent({ args: ["--isolation=namespaces/pid,filesystem/linux,cgroups/all,linux/nnp"] });
    try {
      const lines = a
        .log()
        .split("\n")
        .filter((l) => l.includes("isolator linux/nnp"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("isolator linux/nnp: ucr does this for every container anyway");
    } finally {
      expect(await a.stop()).toBe(0);
    }
  });

  test("every name Mesos knows is in the table, with a note", () => {
    for (const [name, i] of Object.entries(ISOLATORS)) expect({ name, note: i.note.length > 10 }).toEqual({ name, note: true });
    expect(() => loadFlags(["--isolation=magic/box"], {})).toThrow("unknown isolator 'magic/box'");
  });

  test("--allowed_devices is checked at start-up with Mesos' messages", async () => {
    if (!isRoot) return;
    const start = (value: unknown) =>
      runUcr([
        "agent",
        "--port=0",
        `--work_dir=${work}/dev-flags`,
        `--runtime_dir=${work}/dev-flags/run`,
        `--allowed_devices=${JSON.stringify(value)}`,
      ]);
    const cases: Array<[unknown, string]> = [
      [{ allowed_devices: [{ device: {}, access: { read: true } }] }, "Whitelisted device has no device path provided"],
      [
        { allowed_devices: [{ device: { path: "/dev/fuse" }, access: {} }] },
        "Could not whitelist device '/dev/fuse' without any access privileges",
      ],
      [
        { allowed_devices: [{ device: { path: "/dev/nothere" }, access: { read: true } }] },
        "Failed to obtain device ID for '/dev/nothere': ENOENT",
      ],
      [
        { allowed_devices: [{ device: { path: "/etc/hostname" }, access: { read: true } }] },
        "Failed to determine device type for '/etc/hostname'",
      ],
    ];
    for (const [value, message] of cases) {
      const r = await start(value);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 1, stderr: expect.stringContaining(message) });
    }
  });
});

describe.skipIf(skip !== null)(`what ucr refuses comes back as 400 (or 501) through the API (${skip ?? "root"})`, () => {
  test.each<[string, Body, Body, number, RegExp]>([
    ["DockerInfo", { docker: { image: "alpine" } }, {}, 400, /^container\.docker: DockerInfo is for Mesos' Docker containerizer/],
    [
      "a CSI volume",
      { volumes: [{ container_path: "/x", mode: "RW", source: { type: "CSI_VOLUME", csi_volume: { plugin_name: "p" } } }] },
      {},
      400,
      /CSI_VOLUME volumes/,
    ],
    ["gpus", {}, { resources: [{ name: "gpus", type: "SCALAR", scalar: { value: 1 } }] }, 400, /'gpus': GPUs are not supported/],
    [
      "share_pid_namespace without namespaces/pid",
      { linux_info: { share_pid_namespace: true } },
      {},
      400,
      /needs the namespaces\/pid isolator/,
    ],
  ])("%s", async (_, container, extra, status, message) => {
    const r = await launch(plain!, { value: `is${n++}` }, "true", container, extra);
    expect(r.status).toBe(status);
    expect(r.text).toMatch(message);
    // Refused before anything was made.
    expect(existsSync(join(plain!.workDir, "containers", `is${n - 1}`))).toBe(false);
  });
});
