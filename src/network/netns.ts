// Network namespaces that outlive the process that made them: an nsfs file bind-mounted
// under the CNI root dir (as `ip netns` and Mesos do). A short-lived helper makes each one,
// so no thread of the agent ever enters a container's namespace.
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { MNT_DETACH, MS_BIND, MS_PRIVATE, MS_SHARED, mount, umount2 } from "../ffi/libc.ts";
import { SysError } from "../ffi/errno.ts";

/** The helper: util-linux's unshare makes and binds the namespace; iproute2's ip brings lo up in it. */
export const NETNS_TOOLS = ["unshare", "ip"] as const;

/**
 * A new network namespace held by a bind mount at `path`, with `lo` up (plugins leave it
 * down). The file is made first; a helper killed half way leaves a file, or a mount, that
 * releaseNetns() takes away.
 */
export async function createNetns(path: string, timeoutMs = 10_000): Promise<void> {
  writeFileSync(path, "", { mode: 0o444 });
  const proc = Bun.spawn(["unshare", `--net=${path}`, "ip", "link", "set", "dev", "lo", "up"], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    env: { PATH: process.env.PATH || "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const stderr = await new Response(proc.stderr).text();
  const code = await proc.exited;
  clearTimeout(timer);
  if (code !== 0)
    throw new Error(
      `cannot create the network namespace ${path} (unshare --net ... ip link set dev lo up): ` +
        (stderr.trim() || `exit ${code ?? proc.signalCode}`),
    );
}

let nsfsDev: number | undefined;

/** Is `path` (still) a network namespace, i.e. an nsfs mount and not the bare file under it? */
export function isNetns(path: string): boolean {
  try {
    nsfsDev ??= statSync("/proc/self/ns/net").dev;
    return statSync(path).dev === nsfsDev;
  } catch {
    return false;
  }
}

/** Unmounts and removes the namespace file; nothing there is not an error. */
export function releaseNetns(path: string): void {
  try {
    // Detached: a plugin or nsenter that still has it open keeps its own reference.
    umount2(path, MNT_DETACH);
  } catch (err) {
    if (!(err instanceof SysError) || (err.code !== "EINVAL" && err.code !== "ENOENT")) throw err;
  }
  rmSync(path, { force: true });
}

interface MountEntry {
  id: string;
  target: string;
  shared?: string;
}

function mountTable(): MountEntry[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((line) => {
      const f = line.split(" ");
      const sep = f.indexOf("-");
      const optional = f.slice(6, sep);
      const shared = optional.find((o) => o.startsWith("shared:"))?.slice("shared:".length);
      const target = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      return { id: f[0]!, target, ...(shared ? { shared } : {}) };
    });
}

/**
 * Makes `dir` a shared mount in a peer group of its own (Mesos' CNI root, `ip netns`' /run/netns):
 * a container's mount namespace, a slave of it, then loses its copy of a namespace's bind
 * mount when we unmount ours, instead of keeping that namespace alive. Returns whether it
 * mounted anything.
 */
export function makeSharedMount(dir: string): boolean {
  const table = mountTable();
  const under = table.filter((m) => dir === m.target || dir.startsWith(m.target === "/" ? "/" : `${m.target}/`));
  const holder = under[under.length - 1];
  if (holder?.target === dir && holder.shared !== undefined) {
    const others = table.filter((m) => m.id !== holder.id && m.shared === holder.shared && !m.target.startsWith(`${dir}/`));
    if (others.length === 0) return false;
  }
  if (holder?.target !== dir) mount(dir, dir, null, MS_BIND);
  mount(null, dir, null, MS_PRIVATE);
  mount(null, dir, null, MS_SHARED);
  return true;
}

/** Undoes makeSharedMount() where nothing is mounted under `dir` any more. */
export function unmountSharedMount(dir: string): void {
  const table = mountTable();
  if (!table.some((m) => m.target === dir) || table.some((m) => m.target.startsWith(`${dir}/`))) return;
  umount2(dir, MNT_DETACH);
}
