// /sys/fs/cgroup inside a container on cgroup v2, the layout this hybrid host does not run its
// containers on: init stage 2 itself (`ucr __init SPEC`, as the agent's fallback starts it)
// with a spec naming a real cgroup of the host's cgroup2 hierarchy (/sys/fs/cgroup/unified
// here, /sys/fs/cgroup on a v2 host). The v1 layout is tested through the agent in
// hostile.test.ts (the non-root image reads its memory limit).
import { afterAll, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ContainerCgroup } from "../../src/runtime/cgroups.ts";
import type { LaunchSpec } from "../../src/runtime/spec.ts";
import { requireBinary, tempDir } from "../helpers/agent.ts";
import { stageBusybox } from "../helpers/images.ts";
import { Confinement } from "../../src/agent/confinement.ts";
import { loadFlags } from "../../src/config/flags.ts";

const isRoot = process.getuid?.() === 0;
const cgroup2 = existsSync("/sys/fs/cgroup/cgroup.controllers")
  ? "/sys/fs/cgroup"
  : existsSync("/sys/fs/cgroup/unified/cgroup.procs")
    ? "/sys/fs/cgroup/unified"
    : undefined;
const dir = tempDir("ucr-cgmount-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.skipIf(!isRoot || !cgroup2)(
  "v2: the container's own cgroup is its /sys/fs/cgroup, read-only (needs root and a cgroup2 mount)",
  async () => {
    const cg = join(cgroup2!, `ucr-test-v2-${process.pid}`);
    mkdirSync(cg);
    try {
      const tree = join(dir, "tree");
      stageBusybox(tree);
      for (const d of ["target", "sandbox", "run"]) mkdirSync(join(dir, d));
      writeFileSync(join(dir, "run", "hostname"), "v2test\n");
      const cgroup = new ContainerCgroup({ kind: "v2", root: cgroup2! }, [cg]);
      const script = [
        "cat /sys/fs/cgroup/cgroup.procs",
        "test -e /sys/fs/cgroup/cgroup.controllers && echo interface-files",
        "echo x 2>/dev/null > /sys/fs/cgroup/ucr-probe && echo writable || echo read-only",
        'while read -r l; do case "$l" in *" /sys/fs/cgroup "*) set -- $l; echo "$4 $5 $6";; esac; done < /proc/self/mountinfo',
      ].join("; ");
      const spec: LaunchSpec = {
        id: "v2test",
        hostname: "v2test",
        rootfs: { backend: "copy", target: join(dir, "target"), source: tree },
        sandbox: { host: join(dir, "sandbox"), container: "/mnt/mesos/sandbox" },
        executable: "/bin/sh",
        argv: ["sh", "-c", script],
        env: { PATH: "/bin" },
        workingDir: "/",
        etc: { hostname: join(dir, "run", "hostname") },
        cgroupJoin: cgroup.join(),
        cgroupMounts: cgroup.mounts()!,
        // The agent's default confinement, as every container gets it.
        confine: new Confinement(loadFlags(["--work_dir=/tmp"], {}).values).forLaunch(undefined, "v2test"),
        stdout: join(dir, "sandbox", "stdout"),
        stderr: join(dir, "sandbox", "stderr"),
        statusFile: join(dir, "run", "status"),
        pidFile: join(dir, "run", "pid"),
      };
      expect(spec.cgroupMounts).toEqual({ kind: "v2", binds: [{ name: "", source: cg }] });
      const specPath = join(dir, "run", "launch.json");
      writeFileSync(specPath, JSON.stringify(spec));
      const out = openSync(spec.stdout!, "a");
      const err = openSync(spec.stderr!, "a");
      const proc = Bun.spawn([requireBinary(), "__init", specPath], { stdio: ["ignore", out, err, "pipe"], env: {} });
      closeSync(out);
      closeSync(err);
      const report = await Bun.file((proc as unknown as { stdio: number[] }).stdio[3]!).text();
      expect(report).toBe(""); // setup succeeded
      expect(await proc.exited).toBe(0);
      expect(readFileSync(spec.stderr!, "utf8")).toBe("");
      const lines = readFileSync(spec.stdout!, "utf8").trim().split("\n");
      // The workload is PID 1 of its namespace and in this cgroup; the mount's root is the cgroup.
      expect(lines[0]).toBe("1");
      expect(lines.slice(-3, -1)).toEqual(["interface-files", "read-only"]);
      expect(lines.at(-1)).toMatch(new RegExp(`^/${cg.slice(cgroup2!.length + 1)} /sys/fs/cgroup ro,nosuid,nodev,noexec`));
      expect(readFileSync(spec.statusFile, "utf8").trim()).toBe("0");
      expect(existsSync(join(cg, "ucr-probe"))).toBe(false);
    } finally {
      rmdirSync(cg);
    }
  },
);
