// Confinement end to end, in real containers as root: a hostile-workload probe (static C,
// test/fixtures/hostile-probe.c) run under ucr's defaults and, side by side, under podman (the
// anchor); each grant a request can get when the agent's flags allow it, and the 400s when
// they do not; and the agent's start-up checks of the flags.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { buildFixture, noCompiler } from "../helpers/cc.ts";
import { runCommand } from "../helpers/command.ts";
import { DEFAULT_SET, removeContainersAndStop } from "../helpers/confinement.ts";
import { BUSYBOX_CONFIG, addImage, busyboxLayerTar, saveArchive, tarDir } from "../helpers/images.ts";
import { type Podman, startPodman } from "../helpers/podman.ts";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? "needs root (namespaces, mounts, setuid files)" : noCompiler({ static: true });
const work = tempDir("ucr-confine-");
const images = join(work, "images");
const profiles = join(work, "profiles");
let agent: RunningAgent | undefined;
let privileged: RunningAgent | undefined;
let podman: Podman | string = "not started";

/** A real block device of this host, for mknod (only ever opened read-only, and only if mknod works). */
function blockDevice(): string {
  const devs = existsSync("/sys/dev/block") ? readdirSync("/sys/dev/block") : [];
  return devs.find((d) => !d.startsWith("7:") && !d.startsWith("1:")) ?? devs[0] ?? "7:0";
}
const DEVICE = blockDevice();

const PRIVILEGED_BOUNDING = [...DEFAULT_SET, "SYS_ADMIN", "NET_ADMIN", "MKNOD"];
/** The privileged agent's pids limit (the default agent has the default, 2048). */
const PIDS_LIMIT = 100;

beforeAll(async () => {
  if (!isRoot) return;
  mkdirSync(images);
  mkdirSync(profiles);
  writeProfiles();
  if (skip) return;
  // The probe image: busybox, the probe, a setuid-root copy and a copy with a file capability.
  const stage = join(work, "stage");
  mkdirSync(stage);
  await buildFixture("hostile-probe", join(stage, "probe"), { static: true });
  copyFileSync(join(stage, "probe"), join(stage, "probe-suid"));
  chmodSync(join(stage, "probe-suid"), 0o4755);
  copyFileSync(join(stage, "probe"), join(stage, "probe-cap"));
  const setcap = await runCommand(["setcap", "cap_dac_override+ep", join(stage, "probe-cap")]);
  if (setcap.code !== 0) throw new Error(`setcap: ${setcap.stderr}`);
  const layout = join(work, "layout");
  addImage(layout, {
    tag: "1",
    layers: [
      { tar: busyboxLayerTar(), compression: "gzip", createdBy: "busybox" },
      { tar: tarDir(stage, { format: "posix", xattrs: true }), compression: "gzip", createdBy: "probe" },
    ],
    config: BUSYBOX_CONFIG,
  });
  await saveArchive(layout, join(images, "probe.tar"), "probe:latest", { srcTag: "1" });

  const common = [`--docker_registry=${images}`, "--image_providers=docker"];
  agent = await startAgent({ args: [...common, "--isolation=filesystem/linux,docker/runtime"] });
  privileged = await startAgent({
    args: [
      ...common,
      "--isolation=filesystem/linux,docker/runtime,linux/capabilities,linux/seccomp,linux/nnp",
      `--seccomp_config_dir=${profiles}`,
      `--bounding_capabilities=${JSON.stringify({ capabilities: PRIVILEGED_BOUNDING })}`,
      `--default_container_pids_limit=${PIDS_LIMIT}`,
    ],
  });
  podman = await startPodman(join(work, "podman"), join(images, "probe.tar"));
});

/**
 * Profiles for linux/seccomp: the older format Mesos' parser needs (every key spelled out) and
 * today's Docker format, each refusing mkdir with its own errno; and one that does not parse.
 */
function writeProfiles(): void {
  const denyMkdir = (errnoRet?: number) => [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO", ...(errnoRet ? { errnoRet } : {}) }];
  writeFileSync(
    join(profiles, "mesos-format.json"),
    JSON.stringify({
      defaultAction: "SCMP_ACT_ALLOW",
      archMap: [
        { architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86"] },
        { architecture: "SCMP_ARCH_AARCH64", subArchitectures: [] },
      ],
      syscalls: denyMkdir().map((e) => ({ ...e, args: null, comment: "", includes: {}, excludes: {} })),
    }),
  );
  writeFileSync(join(profiles, "docker-format.json"), JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: denyMkdir(13) }));
  writeFileSync(
    join(profiles, "broken.json"),
    `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_SOMETIMES"}]}`,
  );
}

afterAll(async () => {
  await removeContainersAndStop([agent, privileged]);
  if (typeof podman !== "string") await podman.close();
  rmSync(work, { recursive: true, force: true });
});

let n = 0;
type Launch = Record<string, unknown>;

/** `script` runs under /bin/sh; PROBE (and any script starting with "/probe ") runs the probe itself, without a shell. */
async function launch(
  a: RunningAgent,
  id: { value: string; parent?: unknown },
  script: string,
  extra: { user?: string; linux?: Launch } = {},
) {
  // Not through busybox sh: it leaves SIGQUIT ignored when it execs a lone command.
  const direct = script.startsWith("/probe ");
  const command = direct ? { shell: false, value: "/probe", arguments: script.split(" ") } : { value: script };
  const res = await a.call({
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: id,
      command: { ...command, ...(extra.user ? { user: extra.user } : {}) },
      container: {
        type: "MESOS",
        mesos: { image: { type: "DOCKER", docker: { name: "probe" } } },
        ...(extra.linux ? { linux_info: extra.linux } : {}),
      },
    },
  });
  return { status: res.status, text: await res.text() };
}

/** Launches `script` in the probe image, waits, and returns its stdout (the launch must succeed). */
async function run(
  a: RunningAgent,
  script: string,
  extra: { user?: string; linux?: Launch } = {},
): Promise<{ id: string; stdout: string; stderr: string }> {
  const id = `cf${n++}`;
  const l = await launch(a, { value: id }, script, extra);
  expect(l).toEqual({ status: 200, text: "" });
  const wait = await a.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
  expect(wait.status).toBe(200);
  const sandbox = join(a.workDir, "containers", id);
  return { id, stdout: readFileSync(join(sandbox, "stdout"), "utf8"), stderr: readFileSync(join(sandbox, "stderr"), "utf8") };
}

function table(output: string): Map<string, string> {
  return new Map(
    output
      .trim()
      .split("\n")
      .filter((l) => l.includes("\t"))
      .map((l) => l.split("\t") as [string, string]),
  );
}

/** Rows that report /proc/self/status, not an attempt. */
const STATUS_ROWS = ["NoNewPrivs", "Seccomp", "CapEff", "CapBnd", "SigIgn", "SigBlk"];

const denied = (result: string | undefined) => result !== undefined && !result.startsWith("OK") && result !== "no answer";

/** Under ucr's defaults (and so under Docker's rules, with podman's capability set). */
const EXPECTED: Record<string, RegExp> = {
  "mount tmpfs": /^EPERM$/,
  "mknod b + open": /^mknod EPERM$/,
  "unshare(CLONE_NEWUSER)": /^EPERM$/,
  "unshare(CLONE_NEWNS)": /^EPERM$/,
  "keyctl(JOIN_SESSION_KEYRING)": /^EPERM$/,
  "reboot(bad cmd)": /^EPERM$/,
  'init_module(NULL,0,"")': /^(EPERM|ENOSYS)$/,
  "settimeofday(NULL,NULL)": /^EPERM$/,
  "SIOCSIFFLAGS lo (unchanged)": /^EPERM$/,
  "socket(AF_INET,SOCK_RAW)": /^EPERM$/,
  'chroot("/")': /^OK$/, // SYS_CHROOT is in the default set, as in podman's and Docker's
  "bpf(BPF_MAP_CREATE)": /^EPERM$/,
  "ptrace(TRACEME)": /^OK$/, // allowed by all (kernel >= 4.8)
  "open /proc/sys/... O_WRONLY": /^EROFS$/, // the host kernel's sysctls, read-only
  "read /proc/timer_list": /^0 bytes$/, // masked by /dev/null
  "read /proc/keys": /^0 bytes$/,
  "list /sys/firmware": /^empty$/, // masked by an empty read-only tmpfs
  "fork until refused": /^\d+ then EAGAIN$/, // the pids cgroup (--default_container_pids_limit)
  "setuid-root exec as nobody": /^REFUSED/,
  "setcap exec as nobody": /^REFUSED/,
  NoNewPrivs: /^1$/,
  Seccomp: /^2$/,
  CapEff: /^00000000800405fb$/,
  CapBnd: /^00000000800405fb$/,
  // Every signal default and none blocked at exec, whatever the init stage's runtime ignored.
  SigIgn: /^0000000000000000$/,
  SigBlk: /^0000000000000000$/,
};

/** Why ucr refuses what podman allows, for the printed table. */
const WHY: Record<string, string> = {
  "unshare(CLONE_NEWUSER)": "podman's seccomp profile allows unshare; ucr's (Docker's rules) needs CAP_SYS_ADMIN for it",
  "keyctl(JOIN_SESSION_KEYRING)": "podman's profile allows keyctl (runc gives a private session keyring); Docker's rules never do",
  "setuid-root exec as nobody": "podman does not set no_new_privs by default; ucr always does (as runc's and crun's default spec)",
  "setcap exec as nobody": "same: without no_new_privs a file capability is gained at exec",
  'init_module(NULL,0,"")': "both refuse; which errno depends on seccomp order and kernel module support",
};

describe.skipIf(skip !== null)(`containers are confined by default (${skip ?? "root, gcc -static"})`, () => {
  let ucrTable: Map<string, string>;

  test("the hostile probe under ucr's defaults: every attempt refused that must be", async () => {
    const r = await run(agent!, `/probe run ${DEVICE}`);
    ucrTable = table(r.stdout);
    const wrong = Object.entries(EXPECTED)
      .filter(([name, want]) => !want.test(ucrTable.get(name) ?? "(missing)"))
      .map(([name, want]) => `${name}: ${ucrTable.get(name) ?? "(missing)"}, want ${want}`);
    expect(wrong).toEqual([]);
  });

  test.skipIf(!Bun.which("podman"))(
    "side by side with podman (skipped where podman is not installed): ucr refuses at least everything podman refuses",
    async () => {
      if (typeof podman === "string") throw new Error(`podman is installed but cannot run the probe: ${podman}`);
      const r = await podman.run("localhost/probe:latest", ["/probe", "run", DEVICE]);
      expect(r.code).toBe(0);
      const theirs = table(r.stdout);
      const ours = ucrTable ?? table((await run(agent!, `/probe run ${DEVICE}`)).stdout);
      const rows = [...new Set([...ours.keys(), ...theirs.keys()])];
      const width = Math.max(...rows.map((k) => k.length));
      const lines = [`${"attempt".padEnd(width)}  ${"ucr (defaults)".padEnd(34)}  podman 4.3 (defaults)`];
      for (const k of rows) lines.push(`${k.padEnd(width)}  ${(ours.get(k) ?? "-").padEnd(34)}  ${theirs.get(k) ?? "-"}`);
      const differences = rows.filter((k) => denied(ours.get(k)) && !denied(theirs.get(k)) && !STATUS_ROWS.includes(k));
      for (const k of differences) lines.push(`  ${k}: ucr refuses, podman allows: ${WHY[k] ?? "(see the table)"}`);
      console.log(`\n${lines.join("\n")}\n  podman: ${podman.notes.join("; ")}\n`);
      // The rule: whatever podman refuses, ucr refuses too.
      const weaker = rows.filter((k) => !STATUS_ROWS.includes(k) && denied(theirs.get(k)) && !denied(ours.get(k)));
      expect(weaker).toEqual([]);
      // And podman refuses what its capability set and profile should refuse (the anchor works).
      expect(theirs.get("mount tmpfs")).toBe("EPERM");
      expect(theirs.get("CapEff")).toBe("00000000800405fb");
    },
  );

  test("a non-root workload keeps no capabilities; no_new_privs and the filter are there", async () => {
    const r = await run(agent!, "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; id -u", { user: "nobody" });
    expect(r.stdout).toContain("CapPrm:\t0000000000000000");
    expect(r.stdout).toContain("CapEff:\t0000000000000000");
    expect(r.stdout).toContain("CapAmb:\t0000000000000000");
    expect(r.stdout).toContain("CapBnd:\t00000000800405fb");
    expect(r.stdout).toContain("NoNewPrivs:\t1");
    expect(r.stdout).toContain("Seccomp:\t2");
    expect(r.stdout.trim().endsWith("65534")).toBe(true);
  });

  test("a nested container is confined the same way", async () => {
    const parent = { value: `cfp${n++}` };
    expect(await launch(agent!, parent, "exec sleep 60")).toEqual({ status: 200, text: "" });
    const child = { value: "probe", parent };
    expect(await launch(agent!, child, `/probe run ${DEVICE}`)).toEqual({ status: 200, text: "" });
    expect((await agent!.call({ type: "WAIT_CONTAINER", wait_container: { container_id: child } })).status).toBe(200);
    const t = table(readFileSync(join(agent!.workDir, "containers", parent.value, "containers", "probe", "stdout"), "utf8"));
    const rows = ["mount tmpfs", "unshare(CLONE_NEWUSER)", "keyctl(JOIN_SESSION_KEYRING)", "NoNewPrivs", "Seccomp", "CapEff"];
    rows.push("open /proc/sys/... O_WRONLY", "read /proc/timer_list", "read /proc/keys", "list /sys/firmware", "SigIgn", "SigBlk");
    for (const k of rows) expect(t.get(k)).toMatch(EXPECTED[k]!);
    await agent!.call({ type: "KILL_CONTAINER", kill_container: { container_id: parent } });
  });

  test("a fork bomb stops at the pids limit (default 2048: the probe, its attempt and 2046 forks)", async () => {
    const forks = Number(/^(\d+) then EAGAIN$/.exec(ucrTable?.get("fork until refused") ?? "")?.[1]);
    expect(forks).toBeGreaterThan(1000);
    expect(forks).toBeLessThan(2048);
  });

  test("signals: SIGPIPE is not ignored, so `yes | head` ends (the probe's SigIgn/SigBlk rows show every signal)", async () => {
    // Before: the init stage's runtime ignored SIGPIPE and the workload inherited it; yes spun on EPIPE (status 137 here).
    const r = await run(agent!, "timeout -s KILL 20 sh -c 'yes | head -n 2'; echo status=$?");
    expect(r.stdout).toBe("y\ny\nstatus=0\n");
  });

  test("without the linux/capabilities and linux/seccomp isolators the fields are refused, not ignored", async () => {
    const caps = await launch(agent!, { value: `cf${n++}` }, "true", {
      linux: { effective_capabilities: { capabilities: ["SYS_ADMIN"] } },
    });
    expect(caps.status).toBe(400);
    expect(caps.text).toContain("linux_info.effective_capabilities needs the linux/capabilities isolator");
    const sec = await launch(agent!, { value: `cf${n++}` }, "true", { linux: { seccomp: { unconfined: true } } });
    expect(sec.status).toBe(400);
    expect(sec.text).toContain("linux_info.seccomp needs the linux/seccomp isolator");
    const unknown = await launch(agent!, { value: `cf${n++}` }, "true", {
      linux: { bounding_capabilities: { capabilities: ["CAP_SYS_ADMIN"] } },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.text).toContain('unknown capability "CAP_SYS_ADMIN"');
  });
});

describe.skipIf(skip !== null)(`explicit privilege: granted only when asked and allowed, and logged (${skip ?? "root"})`, () => {
  test("a container given CAP_SYS_ADMIN can mount; the agent logs the grant with its ID", async () => {
    const r = await run(privileged!, `/probe run ${DEVICE}`, {
      linux: { effective_capabilities: { capabilities: ["SYS_ADMIN", ...DEFAULT_SET] } },
    });
    const t = table(r.stdout);
    expect(t.get("mount tmpfs")).toBe("OK");
    expect(t.get("unshare(CLONE_NEWNS)")).toBe("OK");
    // The bounding set is the agent's (Mesos' rule when only effective capabilities are asked).
    expect(t.get("CapEff")).toBe("00000000802405fb");
    expect(t.get("CapBnd")).toBe("00000000882415fb");
    const granted = "\\{ NET_ADMIN, SYS_ADMIN, MKNOD \\}";
    expect(privileged!.log()).toMatch(new RegExp(`privilege: container ${r.id} is granted ${granted} beyond ucr's defaults`));
  });

  test("a container given MKNOD makes a block device node but cannot open it: the devices cgroup refuses", async () => {
    const linux = { effective_capabilities: { capabilities: [...DEFAULT_SET, "MKNOD"] } };
    const r = await run(privileged!, `/probe run ${DEVICE}`, { linux });
    const t = table(r.stdout);
    expect(t.get("mknod b + open")).toBe("open EPERM");
    const granted = "\\{ NET_ADMIN, SYS_ADMIN, MKNOD \\} beyond ucr's defaults \\(effective \\{ [A-Z_, ]*MKNOD";
    expect(privileged!.log()).toMatch(new RegExp(`privilege: container ${r.id} is granted ${granted}`));
    // And the pids limit the agent was given.
    const forks = Number(/^(\d+) then EAGAIN$/.exec(t.get("fork until refused") ?? "")?.[1]);
    expect(forks).toBeGreaterThan(PIDS_LIMIT / 2);
    expect(forks).toBeLessThan(PIDS_LIMIT);
  });

  test("a container that asks for nothing gets the defaults even where the agent allows more", async () => {
    const t = table((await run(privileged!, `/probe run ${DEVICE}`)).stdout);
    expect(t.get("mount tmpfs")).toBe("EPERM");
    expect(t.get("CapBnd")).toBe("00000000800405fb");
    expect(t.get("unshare(CLONE_NEWUSER)")).toBe("EPERM");
  });

  test("a non-root workload keeps the capabilities it asked for (ambient), and only those", async () => {
    const r = await run(privileged!, "grep -E '^Cap(Eff|Amb|Bnd)' /proc/self/status", {
      user: "nobody",
      linux: {
        effective_capabilities: { capabilities: ["NET_BIND_SERVICE"] },
        bounding_capabilities: { capabilities: ["NET_BIND_SERVICE"] },
      },
    });
    expect(r.stdout).toBe("CapEff:\t0000000000000400\nCapBnd:\t0000000000000400\nCapAmb:\t0000000000000400\n");
  });

  test("seccomp.unconfined removes the filter (and is logged)", async () => {
    const r = await run(privileged!, "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status", { linux: { seccomp: { unconfined: true } } });
    expect(r.stdout).toBe("NoNewPrivs:\t1\nSeccomp:\t0\n");
    expect(privileged!.log()).toContain(`privilege: container ${r.id} runs without a seccomp filter`);
  });

  test("profiles from --seccomp_config_dir in the older Mesos format and today's Docker format both apply", async () => {
    const old = await run(privileged!, "mkdir /tmp/x 2>&1; echo done", { linux: { seccomp: { profile_name: "mesos-format.json" } } });
    expect(old.stdout).toMatch(/Operation not permitted\ndone\n$/);
    const now = await run(privileged!, "mkdir /tmp/x 2>&1; echo done", { linux: { seccomp: { profile_name: "docker-format.json" } } });
    expect(now.stdout).toMatch(/Permission denied\ndone\n$/);
    expect(privileged!.log()).toContain(`Using Seccomp profile 'docker-format.json' for container ${now.id}`);
  });

  test.each([
    [
      { bounding_capabilities: { capabilities: ["SYS_MODULE"] } },
      /^Bounding capabilities '\{ SYS_MODULE \}', but only '\{ CHOWN, .*SYS_ADMIN, MKNOD, SETFCAP \}' are allowed$/,
    ],
    [
      { effective_capabilities: { capabilities: ["SYS_BOOT"] } },
      /^Requested capabilities '\{ SYS_BOOT \}', but only '\{ CHOWN, .* \}' are allowed$/,
    ],
    [
      { effective_capabilities: { capabilities: ["SYS_ADMIN"] }, bounding_capabilities: { capabilities: ["CHOWN"] } },
      /^Requested capabilities '\{ SYS_ADMIN \}', but only '\{ CHOWN \}' are allowed$/,
    ],
    [
      { capability_info: { capabilities: ["CHOWN"] }, effective_capabilities: { capabilities: ["CHOWN"] } },
      /^Only one of 'capability_info' or 'effective_capabilities' is allowed$/,
    ],
    [
      { seccomp: { unconfined: true, profile_name: "docker-format.json" } },
      /^Invalid Seccomp configuration: 'profile_name' given even though 'unconfined' Seccomp setting is enabled$/,
    ],
    [{ seccomp: {} }, /^Missing Seccomp profile name$/],
    [{ seccomp: { unconfined: false } }, /^Missing Seccomp profile name$/],
    [{ seccomp: { profile_name: "../mesos-format.json" } }, /^Failed to read Seccomp profile file '.*': the profile name must be relative/],
    [{ seccomp: { profile_name: "nothere.json" } }, /^Failed to read Seccomp profile file '.*nothere\.json': ENOENT$/],
    [
      { seccomp: { profile_name: "broken.json" } },
      /^Failed to parse Seccomp profile '.*broken\.json': syscalls\[0\]\.action: unknown action "SCMP_ACT_SOMETIMES"/,
    ],
  ])("refused with 400: %j", async (linux, message) => {
    const r = await launch(privileged!, { value: `cf${n++}` }, "true", { linux });
    expect(r.status).toBe(400);
    expect(r.text).toMatch(message);
  });

  test("a default profile from --seccomp_profile_name applies to containers that name none", async () => {
    const a = await startAgent({
      args: [
        `--docker_registry=${images}`,
        "--image_providers=docker",
        "--isolation=filesystem/linux,docker/runtime,linux/seccomp",
        `--seccomp_config_dir=${profiles}`,
        "--seccomp_profile_name=docker-format.json",
      ],
    });
    try {
      const r = await run(a, "mkdir /tmp/y 2>&1; echo done");
      expect(r.stdout).toMatch(/Permission denied\ndone\n$/);
      const flags = (await (await a.call({ type: "GET_FLAGS" })).json()) as {
        get_flags: { flags: Array<{ name: string; value: string }> };
      };
      expect(flags.get_flags.flags).toContainEqual({ name: "seccomp_profile_name", value: "docker-format.json" });
      const ref = { container_id: { value: r.id } };
      expect((await a.call({ type: "REMOVE_CONTAINER", remove_container: ref })).status).toBe(200);
    } finally {
      expect(await a.stop()).toBe(0);
    }
  });

  test("the deprecated capability_info counts as effective capabilities", async () => {
    const t = table(
      (await run(privileged!, `/probe run ${DEVICE}`, { linux: { capability_info: { capabilities: ["SYS_ADMIN"] } } })).stdout,
    );
    expect(t.get("mount tmpfs")).toBe("OK");
    expect(t.get("CapEff")).toBe("0000000000200000");
  });
});

describe.skipIf(!isRoot)("the agent's flags are checked at start-up, with Mesos' words", () => {
  const start = (...args: string[]) =>
    runUcr(["agent", "--port=0", `--work_dir=${join(work, "flags")}`, `--runtime_dir=${join(work, "flags-run")}`, ...args]);

  test.each([
    [['--effective_capabilities={"capabilities":["CHOWN"]}'], 2, /flag '--effective_capabilities' needs the linux\/capabilities isolator/],
    [
      [
        "--isolation=linux/capabilities",
        '--allowed_capabilities={"capabilities":["CHOWN","KILL"]}',
        '--bounding_capabilities={"capabilities":["CHOWN"]}',
      ],
      2,
      /Allowed capabilities are not a subset of the bounding capabilites: --effective_capabilities \{ CHOWN, KILL \}, --bounding_capabilities \{ CHOWN \}/,
    ],
    [
      ["--isolation=linux/capabilities", '--bounding_capabilities={"capabilities":["FLY"]}'],
      2,
      /flag '--bounding_capabilities' at capabilities\.0: unknown capability "FLY"/,
    ],
    [["--isolation=linux/seccomp"], 2, /Missing required `--seccomp_config_dir` flag/],
    [[`--seccomp_config_dir=${profiles}`], 2, /flag '--seccomp_config_dir' needs the linux\/seccomp isolator/],
    [
      ["--isolation=linux/seccomp", `--seccomp_config_dir=${profiles}`, "--seccomp_profile_name=/etc/x.json"],
      2,
      /must be a path relative to --seccomp_config_dir/,
    ],
    [
      ["--isolation=linux/seccomp", `--seccomp_config_dir=${profiles}`, "--seccomp_profile_name=broken.json"],
      1,
      /flag '--seccomp_profile_name': Failed to parse Seccomp profile '.*broken\.json'/,
    ],
  ])("%j: exit %d", async (args, code, message) => {
    const r = await start(...args);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code, stderr: expect.stringMatching(message) });
  });
});
