// Hostile images against the container runtime, for real: images whose mount points, /etc
// files, volume targets and working directory are links to a sentinel directory on the host
// (absolute and ../../.. forms), special files where the runtime puts its own, device nodes
// and setuid files, users out of range, passwd files that never end; and a non-root image.
// Each test asserts the clear error or the safe outcome AND that the sentinel (what the
// links point at) is exactly as before: no file created, changed or mounted over.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { climbTo, getentEntries, rootBlockDevice, saveHostileImage, snapshot } from "../helpers/hostile-images.ts";
import type { TarEntry } from "../helpers/images.ts";
import { call as callAgent, removeAllContainers } from "../agent/support.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-hostile-");
/** What every link of the images points at; it must never change. */
const sentinel = join(work, "sentinel");
let agent: RunningAgent;

const FD_RANGE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
/** What the copy backend's images link to. */
const copySentinel = join(work, "copy-sentinel");
const PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP = "root:x:0:\napp:x:1000:\n";

function hostileImages(): Array<[string, TarEntry[] | TarEntry[][], Record<string, unknown>?]> {
  const disk = rootBlockDevice();
  return [
    ["mnt-abs", [{ name: "mnt", type: "symlink", linkname: join(sentinel, "mnt") }]],
    ["mnt-rel", [{ name: "mnt", type: "symlink", linkname: climbTo(join(sentinel, "mnt")) }]],
    ["sandbox-link", [{ name: "mnt/mesos/sandbox", type: "symlink", linkname: join(sentinel, "sandbox") }]],
    [
      "etc-links",
      [
        { name: "etc/hosts", type: "symlink", linkname: join(sentinel, "hosts") },
        { name: "etc/hostname", type: "symlink", linkname: climbTo(join(sentinel, "hostname")) },
        { name: "etc/resolv.conf", type: "fifo" },
      ],
    ],
    ["proc-link", [{ name: "proc", type: "symlink", linkname: sentinel }]],
    ["sys-link", [{ name: "sys", type: "symlink", linkname: climbTo(sentinel) }]],
    ["dev-file", [{ name: "dev", content: "not a directory\n" }]],
    [
      "vol-links",
      [
        { name: "data", type: "symlink", linkname: join(sentinel, "data") },
        { name: "data2", type: "symlink", linkname: climbTo(join(sentinel, "data2")) },
        { name: "vol-fifo", type: "fifo" },
        { name: "vol-file", content: "a file\n" },
      ],
    ],
    [
      "devices",
      [
        // /dev/zero's numbers: harmless, and readable wherever device nodes work (this machine
        // refuses to open block devices even to root on the host, so evil-disk alone shows nothing).
        { name: "evil-zero", type: "character-device", devmajor: 1, devminor: 5, mode: 0o666 },
        ...(disk ? [{ name: "evil-disk", type: "block-device" as const, devmajor: disk.major, devminor: disk.minor, mode: 0o666 }] : []),
        { name: "bin/suid-sh", content: readFileSync("/bin/busybox"), mode: 0o4755 },
      ],
    ],
    [
      "users",
      [
        {
          name: "etc/passwd",
          content:
            PASSWD +
            "wrap:x:4294967296:0::/:/bin/sh\nminus:x:4294967295:0::/:/bin/sh\n" +
            "badgid:x:1001:4294967296::/:/bin/sh\nvictim:x:1002:1002::/:/bin/sh\n",
        },
        { name: "etc/group", content: `${GROUP}wrapgroup:x:4294967296:victim\n` },
      ],
    ],
    ["passwd-zero", [{ name: "etc/passwd", type: "symlink", linkname: "/dev/zero" }]],
    [
      "passwd-huge",
      [
        {
          name: "etc/passwd",
          content:
            PASSWD +
            "x"
              .repeat(80)
              .concat("\n")
              .repeat((5 * 1024 * 1024) / 81),
        },
      ],
    ],
    ["passwd-fifo", [{ name: "etc/passwd", type: "fifo" }]],
    ["group-zero", [{ name: "etc/group", type: "symlink", linkname: "/dev/zero" }]],
    ["workdir-link", [{ name: "work", type: "symlink", linkname: join(sentinel, "wd") }], { WorkingDir: "/work" }],
    // For the copy backend: a later layer's file, whiteout and opaque directory over an
    // earlier layer's links out.
    [
      "copy-file-over-link",
      [[{ name: "etc/x", type: "symlink", linkname: join(copySentinel, "target") }], [{ name: "etc/x", content: "the image's\n" }]],
    ],
    [
      "copy-delete-through-link",
      [
        [
          { name: "d", type: "symlink", linkname: copySentinel },
          { name: "o", type: "symlink", linkname: join(copySentinel, "opq") },
        ],
        [
          { name: "d", type: "directory" },
          { name: "d/.wh.secret", content: "" },
          { name: "o", type: "directory" },
          { name: "o/.wh..wh..opq", content: "" },
        ],
      ],
    ],
    ...FD_RANGE.map((fd): [string, TarEntry[], Record<string, unknown>] => [`workdir-fd${fd}`, [], { WorkingDir: `/proc/self/fd/${fd}` }]),
    [
      "nonroot",
      [
        ...getentEntries(),
        { name: "etc/passwd", content: `${PASSWD}app100:x:100:101:app 100:/home/app100:/bin/sh\n` },
        { name: "etc/group", content: `${GROUP}grp101:x:101:\n` },
        { name: "home/app100", type: "directory", uid: 100, gid: 101 },
      ],
      { User: "100:101" },
    ],
  ];
}

beforeAll(async () => {
  if (!isRoot) return;
  mkdirSync(join(sentinel, "keep"), { recursive: true });
  writeFileSync(join(sentinel, "keep", "file"), "the host's\n");
  writeFileSync(join(sentinel, "hosts"), "host file, not the container's\n");
  mkdirSync(join(copySentinel, "opq"), { recursive: true });
  writeFileSync(join(copySentinel, "target"), "the host's\n");
  writeFileSync(join(copySentinel, "secret"), "the host's\n");
  writeFileSync(join(copySentinel, "opq", "a"), "the host's\n");
  const images = join(work, "images");
  const scratch = join(work, "layouts");
  mkdirSync(images);
  mkdirSync(scratch);
  await Promise.all(hostileImages().map(([name, entries, config]) => saveHostileImage(scratch, images, name, entries, config)));
  agent = await startAgent({
    args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
  });
}, 120_000);

afterAll(async () => {
  if (agent) {
    await removeAllContainers(agent);
    expect(await agent.stop()).toBe(0);
  }
  rmSync(work, { recursive: true, force: true });
});

/** One JSON call to this file's agent. */
const call = (body: unknown) => callAgent(agent, body);

let n = 0;
function launch(id: string, image: string, script: string, extra: Record<string, unknown> = {}) {
  const { command, container, ...rest } = extra as { command?: Record<string, unknown>; container?: Record<string, unknown> };
  return call({
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: { value: id },
      command: { value: script, ...command },
      container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: image } } }, ...container },
      ...rest,
    },
  });
}

/** Launch `script` in `image`, wait, and return what it did; the sentinel is checked unchanged. */
async function run(image: string, script: string, extra: Record<string, unknown> = {}) {
  const before = snapshot(sentinel);
  const id = `h${n++}`;
  const launched = await launch(id, image, script, extra);
  expect({ status: launched.status, text: launched.text }).toEqual({ status: 200, text: "" });
  const wait = await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
  expect(wait.status).toBe(200);
  const sandbox = join(agent.workDir, "containers", id);
  const result = {
    id,
    exit: (wait.json!.wait_container as { exit_status: number }).exit_status,
    stdout: readFileSync(join(sandbox, "stdout"), "utf8"),
    stderr: readFileSync(join(sandbox, "stderr"), "utf8"),
    sandbox,
  };
  expect(snapshot(sentinel)).toBe(before);
  return result;
}

/** A launch that must be refused (400) with `message`, leaving no sandbox and the sentinel as it was. */
async function refused(image: string, message: RegExp, extra: Record<string, unknown> = {}) {
  const before = snapshot(sentinel);
  const id = `r${n++}`;
  const r = await launch(id, image, "echo should-not-run", extra);
  expect({ status: r.status, text: r.text }).toEqual({ status: 400, text: expect.stringMatching(message) });
  expect(existsSync(join(agent.workDir, "containers", id))).toBe(false);
  expect((await call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } })).status).toBe(404);
  expect(snapshot(sentinel)).toBe(before);
}

async function remove(id: string) {
  expect((await call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } })).status).toBe(200);
}

describe.skipIf(!isRoot)("hostile images (need root: namespaces and mounts)", () => {
  test("a sandbox path through a link (/mnt, or the sandbox itself) is resolved inside the rootfs", async () => {
    for (const image of ["mnt-abs", "mnt-rel", "sandbox-link"]) {
      const r = await run(image, "echo inside > $MESOS_SANDBOX/out && cat $MESOS_SANDBOX/out && ls -d /mnt/mesos/sandbox/.");
      expect({ image, exit: r.exit, stdout: r.stdout }).toEqual({ image, exit: 0, stdout: "inside\n/mnt/mesos/sandbox/.\n" });
      expect(readFileSync(join(r.sandbox, "out"), "utf8")).toBe("inside\n");
      await remove(r.id);
    }
    expect(readdirSync(sentinel).sort()).toEqual(["hosts", "keep"]);
  });

  test("/etc/hosts, /etc/hostname and /etc/resolv.conf as links or a fifo are replaced by the runtime's files", async () => {
    const script = [
      "cat /etc/hostname",
      'grep -c "$(hostname)" /etc/hosts',
      "for f in hosts hostname resolv.conf; do " +
        "test -L /etc/$f && echo $f:link; test -p /etc/$f && echo $f:fifo; test -f /etc/$f && echo $f:file; done",
      "echo x > /etc/hosts 2>/dev/null && echo hosts-writable || echo hosts-read-only",
    ].join("; ");
    const r = await run("etc-links", script);
    expect(r.stdout.trim().split("\n")).toEqual([r.id, "1", "hosts:file", "hostname:file", "resolv.conf:file", "hosts-read-only"]);
    expect(r.exit).toBe(0);
    expect(readFileSync(join(sentinel, "hosts"), "utf8")).toBe("host file, not the container's\n");
    expect(existsSync(join(sentinel, "hostname"))).toBe(false);
    await remove(r.id);
  });

  test("/proc, /sys or /dev that is a link or a file: the launch is refused, naming it", async () => {
    await refused(
      "proc-link",
      /the image's \/proc is a symlink to '[^']*sentinel': ucr mounts proc only on a directory, never through a link/,
    );
    await refused("sys-link", /the image's \/sys is a symlink to '(\.\.\/)+tmp\/[^']*sentinel': ucr mounts sysfs only on a directory/);
    await refused("dev-file", /the image's \/dev is a regular file: ucr mounts its \/dev tmpfs only on a directory/);
  });

  test("volume targets through links land inside the rootfs; a target of the wrong type is refused", async () => {
    const hostDir = join(work, "volume-source");
    mkdirSync(hostDir, { recursive: true });
    const hostFile = join(work, "volume-file");
    writeFileSync(hostFile, "file volume\n");
    const volumes = [
      { container_path: "/data/x", host_path: hostDir, mode: "RW" },
      { container_path: "/data2", mode: "RW", source: { type: "HOST_PATH", host_path: { path: hostDir } } },
    ];
    const r = await run("vol-links", "echo via-data > /data/x/a; cat /data2/a; readlink /data", { container: { volumes } });
    expect(r.stdout).toBe(`via-data\n${join(sentinel, "data")}\n`);
    expect(r.exit).toBe(0);
    expect(readFileSync(join(hostDir, "a"), "utf8")).toBe("via-data\n");
    await remove(r.id);

    await refused("vol-links", /\/vol-fifo in the container is a fifo: the mount point for volume .* must be a regular file/, {
      container: { volumes: [{ container_path: "/vol-fifo", host_path: hostFile, mode: "RO" }] },
    });
    await refused("vol-links", /\/vol-file in the container is a regular file: the mount point for volume .* must be a directory/, {
      container: { volumes: [{ container_path: "/vol-file", host_path: hostDir, mode: "RW" }] },
    });
  });

  test("an image's device nodes do not work in the container; its setuid file changes only in the container", async () => {
    const disk = rootBlockDevice();
    const script = [
      "head -c 1 /evil-zero > /dev/null 2>&1 && echo zero-readable || echo zero-refused",
      "head -c 1 /dev/zero | wc -c",
      ...(disk ? ["head -c 512 /evil-disk > /dev/null 2>&1 && echo disk-readable || echo disk-refused"] : []),
      "stat -c %a /bin/suid-sh",
      "chmod 0755 /bin/suid-sh && echo tampered >> /bin/suid-sh && stat -c %a /bin/suid-sh",
    ].join("; ");
    for (const user of ["root", "app"]) {
      const r = await run("devices", script, { command: { user } });
      const expected = ["zero-refused", "1", ...(disk ? ["disk-refused"] : []), "4755", ...(user === "root" ? ["755"] : [])];
      expect({ user, lines: r.stdout.trim().split("\n") }).toEqual({ user, lines: expected });
      await remove(r.id);
    }
    // The store's copy of the setuid file is the image's, byte for byte and mode for mode.
    const found = Bun.spawnSync(["find", join(agent.workDir, "store"), "-name", "suid-sh", "-type", "f"])
      .stdout.toString()
      .trim()
      .split("\n");
    expect(found.length).toBe(1);
    expect(statSync(found[0]!).mode & 0o7777).toBe(0o4755);
    expect(readFileSync(found[0]!).equals(readFileSync("/bin/busybox"))).toBe(true);
  });

  test("users: ids out of 0..2^32-2 and names of any length are refused; the workload never runs as root", async () => {
    const cases: Array<[string, RegExp]> = [
      ["4294967296", /uid: '4294967296' is not a valid id \(a number from 0 to 4294967294\)/],
      ["4294967295", /uid: '4294967295' is not a valid id/],
      ["-1", /uid: '-1' is not a valid id/],
      ["app:4294967296", /gid: '4294967296' is not a valid id/],
      ["99999999999999999999", /uid: '99999999999999999999' is not a valid id/],
      ["wrap", /uid of user 'wrap' in the image's \/etc\/passwd: '4294967296' is not a valid id/],
      ["minus", /uid of user 'minus' in the image's \/etc\/passwd: '4294967295' is not a valid id/],
      ["badgid", /gid of user 'badgid' in the image's \/etc\/passwd: '4294967296' is not a valid id/],
      ["victim", /gid of group 'wrapgroup' in the image's \/etc\/group: '4294967296' is not a valid id/],
      ["u".repeat(100_000), /user 'u{64}\.\.\. \(100000 characters\)' is not in the image's \/etc\/passwd/],
    ];
    for (const [user, message] of cases) {
      const r = await run("users", "id -u", { command: { user } });
      expect({ user: user.slice(0, 20), exit: r.exit, stdout: r.stdout }).toEqual({ user: user.slice(0, 20), exit: 127 << 8, stdout: "" });
      expect(r.stderr).toMatch(message);
      expect(r.stderr.length).toBeLessThan(1000);
      await remove(r.id);
    }
    const ok = await run("users", "id -u; id -g", { command: { user: "4294967294:4294967294" } });
    expect({ exit: ok.exit, stdout: ok.stdout }).toEqual({ exit: 0, stdout: "4294967294\n4294967294\n" });
    await remove(ok.id);
  });

  test("passwd and group files that are not regular files, or too large, are refused", async () => {
    const cases: Array<[string, string | undefined, RegExp]> = [
      ["passwd-zero", "app", /the image's \/etc\/passwd is a character device \(resolved to \/dev\/zero\), not a regular file/],
      ["passwd-zero", undefined, /the image's \/etc\/passwd is a character device/], // root's HOME comes from it too
      ["passwd-fifo", "app", /the image's \/etc\/passwd is a fifo \(resolved to \/etc\/passwd\), not a regular file/],
      ["passwd-huge", "app", /the image's \/etc\/passwd is \d+ bytes, more than the 4194304 ucr reads/],
      ["group-zero", "root", /the image's \/etc\/group is a character device \(resolved to \/dev\/zero\)/],
    ];
    for (const [image, user, message] of cases) {
      const r = await run(image, "id -u", user ? { command: { user } } : {});
      expect({ image, exit: r.exit, stdout: r.stdout }).toEqual({ image, exit: 127 << 8, stdout: "" });
      expect(r.stderr).toMatch(message);
      await remove(r.id);
    }
  });

  test("the working directory is resolved inside the container: a link out, or a descriptor under /proc/self/fd", async () => {
    const r = await run("workdir-link", "pwd -P; ls -d /tmp");
    expect(r.stdout).toBe(`${join(sentinel, "wd")}\n/tmp\n`); // inside the rootfs: made there
    expect(r.exit).toBe(0);
    await remove(r.id);
    for (const fd of FD_RANGE) {
      const w = await run(`workdir-fd${fd}`, "pwd -P; ls ..");
      // Never a host directory: either no such directory in the container, or (0-2) not one.
      expect({ fd, exit: w.exit, stdout: w.stdout }).toEqual({ fd, exit: 127 << 8, stdout: "" });
      expect(w.stderr).toMatch(new RegExp(`cannot use the working directory /proc/self/fd/${fd}`));
      await remove(w.id);
    }
  });

  test("no descriptor of the agent, the launcher or the init stage reaches the workload", async () => {
    // Several launches: the first may start the launcher, the next ones take a warm init stage.
    for (let i = 0; i < 3; i++) {
      // The shell's own descriptors (no pipe: a pipeline's ends would be the shell's for a while).
      const r = await run("etc-links", "ls /proc/$$/fd; readlink /proc/$$/fd/0");
      expect(r.stdout).toBe("0\n1\n2\n/dev/null\n");
      await remove(r.id);
    }
  });
});

describe.skipIf(!isRoot)("a nested container's sandbox, in its parent's (needs root)", () => {
  // What the parent's workload can do to its own sandbox, done here from the host: the same files.
  test("links or directories the parent's workload put there are not followed, used or removed through", async () => {
    const before = snapshot(sentinel);
    const parent = { value: `nparent${n++}` };
    expect((await launch(parent.value, "etc-links", "exec sleep 60")).status).toBe(200);
    const parentSandbox = join(agent.workDir, "containers", parent.value);
    const nested = (value: string) =>
      call({
        type: "LAUNCH_CONTAINER",
        launch_container: { container_id: { value, parent }, command: { value: "echo child > $MESOS_SANDBOX/out" } },
      });

    // containers/ is a link out: refused, nothing made there.
    symlinkSync(sentinel, join(parentSandbox, "containers"));
    const viaLink = await nested("kid");
    expect({ status: viaLink.status, text: viaLink.text }).toEqual({
      status: 500,
      text: expect.stringMatching(/\/containers is a symlink \(to '[^']*sentinel'\)/),
    });
    rmSync(join(parentSandbox, "containers"));

    // containers/<id>/ made by the workload beforehand, with a link for stdout: refused.
    mkdirSync(join(parentSandbox, "containers", "kid2"), { recursive: true });
    symlinkSync(join(sentinel, "kid2-stdout"), join(parentSandbox, "containers", "kid2", "stdout"));
    const planted = await nested("kid2");
    expect({ status: planted.status, text: planted.text }).toEqual({
      status: 500,
      text: expect.stringMatching(/containers\/kid2: it exists already/),
    });

    // A child that ran; then containers/ becomes a link to a directory holding a "kid3":
    // REMOVE must not delete the sentinel's kid3.
    expect((await nested("kid3")).status).toBe(200);
    const child = { container_id: { value: "kid3", parent } };
    expect((await call({ type: "WAIT_CONTAINER", wait_container: child })).json).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: { exit_status: 0 },
    });
    expect(readFileSync(join(parentSandbox, "containers", "kid3", "out"), "utf8")).toBe("child\n");
    const decoy = join(work, "decoy");
    mkdirSync(join(decoy, "kid3"), { recursive: true });
    writeFileSync(join(decoy, "kid3", "precious"), "the host's\n");
    const realContainers = join(parentSandbox, "containers.real");
    renameSync(join(parentSandbox, "containers"), realContainers);
    symlinkSync(decoy, join(parentSandbox, "containers"));
    expect((await call({ type: "REMOVE_NESTED_CONTAINER", remove_nested_container: { container_id: child.container_id } })).status).toBe(
      200,
    );
    expect(readFileSync(join(decoy, "kid3", "precious"), "utf8")).toBe("the host's\n");

    // A child with its own image and a sandbox-path volume: bound through no link, and it works.
    rmSync(join(parentSandbox, "containers"));
    renameSync(realContainers, join(parentSandbox, "containers"));
    const imaged = { value: "kid4", parent };
    const withVolume = await call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: imaged,
        command: { value: "echo via-volume > /data/f" },
        container: {
          type: "MESOS",
          mesos: { image: { type: "DOCKER", docker: { name: "etc-links" } } },
          volumes: [
            { container_path: "/data", mode: "RW", source: { type: "SANDBOX_PATH", sandbox_path: { type: "SELF", path: "work/x" } } },
          ],
        },
      },
    });
    expect({ status: withVolume.status, text: withVolume.text }).toEqual({ status: 200, text: "" });
    expect((await call({ type: "WAIT_CONTAINER", wait_container: { container_id: imaged } })).json).toEqual({
      type: "WAIT_CONTAINER",
      wait_container: { exit_status: 0 },
    });
    expect(readFileSync(join(parentSandbox, "containers", "kid4", "work", "x", "f"), "utf8")).toBe("via-volume\n");

    await call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
    await call({ type: "WAIT_CONTAINER", wait_container: { container_id: parent } });
    await remove(parent.value);
    expect(existsSync(join(decoy, "kid3", "precious"))).toBe(true);
    expect(snapshot(sentinel)).toBe(before);
  });
});

describe.skipIf(!isRoot)("the copy backend with hostile layers (needs root)", () => {
  test("a later layer's file, whiteout or opaque directory never reaches through an earlier layer's link", async () => {
    const copy = await startAgent({
      args: [
        `--docker_registry=${join(work, "images")}`,
        "--image_providers=docker",
        "--isolation=filesystem/linux,docker/runtime",
        "--image_provisioner_backend=copy",
      ],
    });
    const before = snapshot(copySentinel);
    try {
      const launch = (id: string, image: string, script: string) =>
        copy.call({
          type: "LAUNCH_CONTAINER",
          launch_container: {
            container_id: { value: id },
            command: { value: script },
            container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: image } } } },
          },
        });
      // A file over a link replaces the link, as overlayfs shows it.
      const r = await launch("file", "copy-file-over-link", "cat /etc/x; test -L /etc/x && echo link || echo file");
      expect({ status: r.status, text: await r.text() }).toEqual({ status: 200, text: "" });
      await copy.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "file" } } });
      expect(readFileSync(join(copy.workDir, "containers", "file", "stdout"), "utf8")).toBe("the image's\nfile\n");
      expect((await copy.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "file" } } })).status).toBe(200);
      // A later layer's directory over an earlier layer's link replaces the link (as a layer
      // applied by docker or umoci does); the deletions below it happen in the rootfs, never on
      // the host (the sentinel check below).
      const d = await launch("del", "copy-delete-through-link", "true");
      expect({ status: d.status, text: await d.text() }).toEqual({ status: 200, text: "" });
      await copy.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "del" } } });
      expect((await copy.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "del" } } })).status).toBe(200);
    } finally {
      expect(await copy.stop()).toBe(0);
    }
    expect(snapshot(copySentinel)).toBe(before);
  });
});

describe.skipIf(!isRoot)("a non-root image (needs root)", () => {
  test("writes /dev/null and its sandbox, resolves its hostname, reads its memory limit, has HOME", async () => {
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
    const limitFile = v2 ? "/sys/fs/cgroup/memory.max" : "/sys/fs/cgroup/memory/memory.limit_in_bytes";
    const script = [
      "id -u; id -g",
      "echo hi > /dev/null && echo devnull-ok",
      "ls -l /dev/null | cut -c1-10",
      "echo mine > $MESOS_SANDBOX/mine && echo sandbox-ok",
      "stat -c %u:%g $MESOS_SANDBOX",
      "getent hosts $(hostname) | tr -s ' \\t' ' '",
      `cat ${limitFile}`,
      `echo 1 2>/dev/null > ${limitFile} && echo limit-writable || echo limit-read-only`,
      "echo HOME=$HOME",
    ].join("; ");
    const r = await run("nonroot", script, { resources: [{ name: "mem", type: "SCALAR", scalar: { value: 64 } }] });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split("\n")).toEqual([
      "100",
      "101",
      "devnull-ok",
      "crw-rw-rw-",
      "sandbox-ok",
      "100:101",
      `127.0.1.1 ${r.id}`,
      String(64 * 1048576),
      "limit-read-only",
      "HOME=/home/app100",
    ]);
    expect(r.exit).toBe(0);
    // Mesos gives the sandbox to the container's user: the directory and what was in it.
    for (const p of [r.sandbox, join(r.sandbox, "stdout"), join(r.sandbox, "stderr"), join(r.sandbox, "mine")]) {
      const st = lstatSync(p);
      expect({ p, owner: `${st.uid}:${st.gid}` }).toEqual({ p, owner: "100:101" });
    }
    await remove(r.id);
  });

  test("root gets HOME from the image's passwd; each container sees its own cgroups only", async () => {
    const r = await run("nonroot", "echo HOME=$HOME; ls /sys/fs/cgroup | tr '\\n' ' '", { command: { user: "root" } });
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
    expect(r.stdout.split("\n")[0]).toBe("HOME=/root");
    if (!v2) {
      // v1 (this host): one directory per hierarchy the container is in, named as on the host
      // ("cpu,cpuacct" where co-mounted, with cpu and cpuacct as links to it).
      const hierarchies = readdirSync("/sys/fs/cgroup");
      const expected = new Set<string>();
      for (const k of ["cpu", "cpuacct", "memory", "pids", "devices"]) {
        const h = hierarchies.find((x) => x.split(",").includes(k) && lstatSync(join("/sys/fs/cgroup", x)).isDirectory());
        if (h === undefined) continue; // pids and devices where the host has them
        expected.add(h).add(k);
      }
      expect(r.stdout.split("\n")[1]!.trim().split(" ").sort()).toEqual([...expected].sort());
    }
    expect(r.exit).toBe(0);
    await remove(r.id);
  });
});
