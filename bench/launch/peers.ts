// The peers bench/launch.ts runs beside ucr: a crun bundle from the same image, podman's
// limits, and the mount namespace without cgroup2 that both need on a hybrid host.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PATH } from "./options.ts";
import { checkStop, exec, mustRun, reason, state } from "./state.ts";

/** Is there a cgroup2 hierarchy with controllers at /sys/fs/cgroup/unified (crun refuses that)? */
export function hybridWithControllers(): boolean {
  try {
    return readFileSync("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").trim() !== "";
  } catch {
    return false;
  }
}

/**
 * crun 1.x refuses the hybrid layout when cgroup2 has controllers (here hugetlb), whatever
 * --cgroup-manager says: it checks before choosing a manager. It decides "hybrid" by statfs of
 * /sys/fs/cgroup/unified, so a private mount namespace without that mount makes it plain v1,
 * without touching the host's cgroups. One long-lived process holds that namespace and each
 * run enters it with nsenter (its cost is measured as its own row).
 */
export async function startHolder(dir: string): Promise<string[]> {
  checkStop();
  const ready = join(dir, "holder-ready");
  const holder = Bun.spawn(
    [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `umount -l /sys/fs/cgroup/unified && : > ${ready} && exec sleep infinity`,
    ],
    // Detached like the agent: cleanup after a Ctrl-C still needs the namespace for podman rm.
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH }, detached: true },
  );
  for (let i = 0; i < 100 && !existsSync(ready); i++) {
    if (holder.exitCode !== null) break;
    await Bun.sleep(20);
  }
  state.holder = holder;
  if (!existsSync(ready)) {
    const err = holder.exitCode !== null ? await new Response(holder.stderr as ReadableStream).text() : "timed out";
    throw new Error(`could not make a mount namespace without cgroup2: ${err.trim()}`);
  }
  return ["nsenter", `--mount=/proc/${holder.pid}/ns/mnt`];
}

/** crun bundle from the same image: rootfs by umoci, config.json by `crun spec`. */
export async function makeBundle(dir: string, archive: string): Promise<string> {
  const layout = join(dir, "oci");
  const bundle = join(dir, "bundle");
  await mustRun(["skopeo", "copy", "--quiet", `docker-archive:${archive}`, `oci:${layout}:t`]);
  await mustRun(["umoci", "unpack", "--image", `${layout}:t`, bundle]);
  // umoci wrote its own config.json; the brief's peer is crun's default spec.
  rmSync(join(bundle, "config.json"));
  const r = await exec(["sh", "-c", `cd '${bundle}' && crun spec`]);
  if (r.code !== 0) throw new Error(`crun spec: ${reason(r)}`);
  const specPath = join(bundle, "config.json");
  const spec = JSON.parse(readFileSync(specPath, "utf8")) as {
    process: { args: string[]; terminal: boolean };
    linux: { namespaces: { type: string }[] };
  };
  spec.process.args = ["/bin/true"];
  spec.process.terminal = false;
  // ucr keeps the host network (as Mesos does); so must crun, or it pays for a netns.
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "network");
  writeFileSync(specPath, JSON.stringify(spec, null, 2));
  return bundle;
}

const PODMAN_NPROC = 32768;

/** Hard limits podman's crun may set without CAP_SYS_RESOURCE (missing in this container). */
export function ulimitArgs(): string[] {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = (label: string) => {
    const v = new RegExp(`^${label}\\s+\\S+\\s+(\\S+)`, "m").exec(limits)?.[1];
    return v === undefined || v === "unlimited" ? undefined : Number(v);
  };
  const nofile = hard("Max open files");
  // podman lowers its own RLIMIT_NPROC to 32768 as it starts (strace shows the setrlimit), and
  // crun inherits that: a larger hard limit is refused, even one this shell has.
  const nproc = Math.min(hard("Max processes") ?? PODMAN_NPROC, PODMAN_NPROC);
  return [...(nofile ? ["--ulimit", `nofile=${nofile}:${nofile}`] : []), ...(nproc ? ["--ulimit", `nproc=${nproc}:${nproc}`] : [])];
}
