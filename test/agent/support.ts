// Shared by the container lifecycle tests: an `alpine` archive made from busybox-static,
// agent flags for it, JSON calls, and an inventory of what a container can leave on the
// host (cgroup dirs under the agent's cgroups root, sandboxes, rootfs dirs, runtime dirs,
// mounts, processes) to compare with what the agent reports.
import { expect } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { RunningAgent } from "../helpers/agent.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

export const isRoot = process.getuid?.() === 0;

/** Makes `<dir>/alpine.tar` once (a busybox-static image saved by skopeo). */
export async function alpineArchive(dir: string): Promise<string> {
  const tar = join(dir, "alpine.tar");
  if (existsSync(tar)) return dir;
  mkdirSync(dir, { recursive: true });
  const layout = join(dir, "layout-busybox");
  buildBusyboxImage(layout, { tag: "1" });
  await saveArchive(layout, tar, "alpine:latest", { srcTag: "1" });
  return dir;
}

export function dockerArgs(registry: string, extra: string[] = []): string[] {
  return [`--docker_registry=${registry}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime", ...extra];
}

export interface Answer {
  status: number;
  text: string;
  json?: Record<string, any>;
}

export async function call(agent: RunningAgent, body: unknown): Promise<Answer> {
  const res = await agent.call(body);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

/** For a test's afterAll: kills, waits for and removes every container the agent knows (each REMOVE must answer 200). */
export async function removeAllContainers(agent: RunningAgent): Promise<void> {
  const list = await call(agent, { type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
  for (const c of (list.json!.get_containers as { containers: Array<{ container_id: { value: string } }> }).containers) {
    const ref = { container_id: c.container_id };
    await call(agent, { type: "KILL_CONTAINER", kill_container: ref });
    await call(agent, { type: "WAIT_CONTAINER", wait_container: ref });
    expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: ref })).status).toBe(200);
  }
}

export type Id = { value: string; parent?: Id };
const ref = (id: string | Id): Id => (typeof id === "string" ? { value: id } : id);

export function launchBody(
  id: string | Id,
  script: string,
  opts: { image?: string; cached?: boolean; extra?: Record<string, unknown> } = {},
) {
  return {
    type: "LAUNCH_CONTAINER",
    launch_container: {
      container_id: ref(id),
      command: { value: script },
      ...(opts.image
        ? {
            container: {
              type: "MESOS",
              mesos: { image: { type: "DOCKER", docker: { name: opts.image }, ...(opts.cached === false ? { cached: false } : {}) } },
            },
          }
        : {}),
      ...(opts.extra ?? {}),
    },
  };
}

export const waitBody = (id: string | Id) => ({ type: "WAIT_CONTAINER", wait_container: { container_id: ref(id) } });
export const killBody = (id: string | Id, signal?: number) => ({
  type: "KILL_CONTAINER",
  kill_container: { container_id: ref(id), ...(signal ? { signal } : {}) },
});
export const removeBody = (id: string | Id) => ({ type: "REMOVE_CONTAINER", remove_container: { container_id: ref(id) } });

export interface Listed {
  id: string;
  pid?: number;
  running: boolean;
}

/** GET_CONTAINERS, standalone and nested: key ("a" or "a.b"), pid, whether it shows as running. */
export async function listContainers(agent: RunningAgent): Promise<Listed[]> {
  const r = await call(agent, { type: "GET_CONTAINERS", get_containers: { show_standalone: true, show_nested: true } });
  if (r.status !== 200) throw new Error(`GET_CONTAINERS: ${r.status} ${r.text}`);
  const key = (id: Id): string => (id.parent ? `${key(id.parent)}.${id.value}` : id.value);
  return (r.json!.get_containers.containers as Array<Record<string, any>>).map((c) => ({
    id: key(c.container_status.container_id),
    ...(c.container_status.executor_pid !== undefined ? { pid: c.container_status.executor_pid as number } : {}),
    running: c.resource_statistics !== undefined && c.container_status.executor_pid !== undefined,
  }));
}

/** Everything of the agent's containers that exists on the host now. */
export interface Leftovers {
  cgroups: string[];
  sandboxes: string[];
  rootfsDirs: string[];
  runtimeDirs: string[];
  mounts: string[];
}

function names(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory());
  } catch {
    return [];
  }
}

/** The hierarchies a cgroups root lives in (v1: each controller's; v2: the unified one). */
export function cgroupDirsOf(root: string): string[] {
  const base = "/sys/fs/cgroup";
  if (existsSync(join(base, "cgroup.controllers"))) return [join(base, root)];
  return ["cpu", "cpuacct", "memory", "pids"].map((h) => join(base, h, root));
}

export function leftovers(workDir: string, cgroupsRoot: string, runtimeDir = join(workDir, "run")): Leftovers {
  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  return {
    cgroups: [...new Set(cgroupDirsOf(cgroupsRoot).flatMap((d) => names(d)))].sort(),
    sandboxes: names(join(workDir, "containers")).sort(),
    rootfsDirs: names(join(workDir, "provisioner", "containers")).sort(),
    runtimeDirs: names(join(runtimeDir, "containers")).sort(),
    mounts: mountinfo
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((p) => p.startsWith(`${workDir}/`)),
  };
}

export const NOTHING: Leftovers = { cgroups: [], sandboxes: [], rootfsDirs: [], runtimeDirs: [], mounts: [] };

/** Pids of the processes in the agent's container cgroups (the memory hierarchy on v1). */
export function cgroupProcesses(cgroupsRoot: string): Map<number, string> {
  const out = new Map<number, string>();
  const dirs = cgroupDirsOf(cgroupsRoot);
  const memory = dirs.find((d) => d.includes("/memory/")) ?? dirs[0]!;
  for (const name of names(memory)) {
    for (const line of readFileSync(join(memory, name, "cgroup.procs"), "utf8").split("\n")) {
      if (line) out.set(Number(line), name);
    }
  }
  return out;
}

/** Host pids whose command line contains `marker` (workloads a test tagged). */
export function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(marker)) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** Polls `check` every 20 ms until it returns a value or `ms` pass; undefined on time-out. */
export async function eventually<T>(check: () => T | undefined | false, ms = 10_000): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) return undefined;
    await Bun.sleep(20);
  }
}
