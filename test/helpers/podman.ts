// podman as an anchor for side-by-side tests: private storage under a temp dir, and on a hybrid
// cgroup host (cgroup2 with controllers at /sys/fs/cgroup/unified) run inside a mount namespace
// without that mount, which crun otherwise refuses (startCgroup2FreeNamespace; bench/ uses it too).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { type CommandResult, runCommand } from "./command.ts";

export interface Podman {
  /** `podman run --rm --network none` of `image` with `args`; extra run options before the image. */
  run(image: string, args: string[], extra?: string[]): Promise<CommandResult>;
  /** Removes its containers, storage mounts and the namespace holder; leaves `dir` to the caller. */
  close(): Promise<void>;
  /** How it was run, for the test's output. */
  notes: string[];
}

/** Is there a cgroup2 hierarchy with controllers at /sys/fs/cgroup/unified (crun refuses that)? */
export function hybridCgroup2(): boolean {
  try {
    return readFileSync("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").trim() !== "";
  } catch {
    return false;
  }
}

/** Hard limits this process may pass on (podman's default 1048576 needs CAP_SYS_RESOURCE). */
export function podmanUlimits(): string[] {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = (label: string) => {
    const v = new RegExp(`^${label}\\s+\\S+\\s+(\\S+)`, "m").exec(limits)?.[1];
    return v === undefined || v === "unlimited" ? undefined : Number(v);
  };
  const nofile = hard("Max open files");
  // podman lowers its own RLIMIT_NPROC to 32768 as it starts (strace shows the setrlimit), and
  // crun inherits that: a larger hard limit is refused, even one this shell has.
  const nproc = Math.min(hard("Max processes") ?? 32768, 32768);
  return [...(nofile ? ["--ulimit", `nofile=${nofile}:${nofile}`] : []), "--ulimit", `nproc=${nproc}:${nproc}`];
}

/** podman's global options for private state under `dir` (cgroupfs and file events: no systemd here). */
export function podmanGlobalArgs(dir: string): string[] {
  return [
    "podman",
    "--root",
    join(dir, "r"),
    "--runroot",
    join(dir, "rr"),
    "--tmpdir",
    join(dir, "t"),
    "--storage-driver",
    "overlay",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
  ];
}

/**
 * crun 1.x refuses the hybrid layout when cgroup2 has controllers, whatever --cgroup-manager
 * says. It decides "hybrid" by statfs of /sys/fs/cgroup/unified, so a private mount namespace
 * without that mount makes it plain v1, without touching the host's cgroups. Starts one
 * long-lived process holding such a namespace; `prefix` (nsenter into it) is set once it is
 * ready, else `error` says why. The caller kills `holder` in either case.
 */
export async function startCgroup2FreeNamespace(
  dir: string,
  options: { env?: Record<string, string>; detached?: boolean } = {},
): Promise<{ holder: Bun.Subprocess; prefix?: string[]; error?: string }> {
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
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", ...options },
  );
  for (let i = 0; i < 100 && !existsSync(ready) && holder.exitCode === null; i++) await Bun.sleep(20);
  if (existsSync(ready)) return { holder, prefix: ["nsenter", `--mount=/proc/${holder.pid}/ns/mnt`] };
  const error = holder.exitCode !== null ? await new Response(holder.stderr as ReadableStream).text() : "timed out";
  return { holder, error: `cannot make a mount namespace without cgroup2: ${error.trim()}` };
}

/**
 * Loads `archive` (docker save) into a private podman and returns a runner, or a string saying
 * why podman cannot be used here (the caller skips with it).
 */
export async function startPodman(dir: string, archive: string): Promise<Podman | string> {
  if (!Bun.which("podman")) return "podman is not installed (scripts/setup.sh installs it)";
  mkdirSync(dir, { recursive: true });
  const notes: string[] = [];
  let holder: Bun.Subprocess | undefined;
  let prefix: string[] = [];
  // cgroup dirs podman makes for conmon that were not here before (removed if empty at the end).
  const made = readdirSync("/sys/fs/cgroup")
    .map((ctl) => `/sys/fs/cgroup/${ctl}/libpod_parent`)
    .filter((d) => !existsSync(d) && existsSync(join(d, "..", "cgroup.procs")));
  if (hybridCgroup2()) {
    const ns = await startCgroup2FreeNamespace(dir);
    holder = ns.holder;
    if (!ns.prefix) {
      holder.kill("SIGKILL");
      return ns.error ?? "cannot make a mount namespace without cgroup2";
    }
    prefix = ns.prefix;
    notes.push("run through nsenter into a mount namespace without /sys/fs/cgroup/unified (crun refuses hybrid cgroups)");
  }
  const podman = [...prefix, ...podmanGlobalArgs(dir)];
  const close = async () => {
    await runCommand([...podman, "rm", "-f", "-a", "-t", "0"], { timeoutMs: 60_000 });
    // Not `system reset`: that also removes networks, which live outside --root.
    await runCommand([...podman, "rmi", "-a", "-f"], { timeoutMs: 60_000 });
    if (holder) {
      holder.kill("SIGKILL");
      await holder.exited;
    }
    // Storage mounts podman left in this namespace (none with the holder, whose namespace died).
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await runCommand(["umount", "-l", m]);
    for (const d of made.flatMap((d) => [join(d, "conmon"), d])) {
      try {
        rmdirSync(d);
      } catch {
        // gone, or someone else's processes are in it now
      }
    }
  };
  const load = await runCommand([...podman, "load", "-q", "-i", archive], { timeoutMs: 120_000 });
  if (load.code !== 0) {
    await close();
    return `podman load failed: ${load.stderr.trim()}`;
  }
  const limits = podmanUlimits();
  notes.push(
    `podman run --rm --network none ${limits.join(" ")} (podman's own 1048576 rlimits need CAP_SYS_RESOURCE, which this machine withholds)`,
  );
  return {
    notes,
    run: (image, args, extra = []) =>
      runCommand([...podman, "run", "--rm", "--network", "none", "--pull", "never", ...limits, ...extra, image, ...args], {
        timeoutMs: 120_000,
      }),
    close,
  };
}
