// bench/launch.ts's processes and what the run has made: everything started is tracked, and
// cleanup (containers, the agent, podman's state, the namespace holder, the temp dir) runs
// however the run ends.
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { RunningAgent } from "../../test/helpers/agent.ts";
import { commandRunner, mountsUnder, operatorCall } from "../lib.ts";
import { PATH, TIMEOUT_MS } from "./options.ts";

const runner = commandRunner({ path: PATH, timeoutMs: TIMEOUT_MS, stdout: false, checkStop: () => checkStop() });
export const { live, exec, reason } = runner;
export const mustRun = (cmd: string[]) => runner.mustRun(cmd, { timeoutMs: 120_000 });

/** What the run has made so far, for cleanup to take apart. */
export const state: {
  base?: string;
  agent?: RunningAgent;
  /** Process whose mount namespace has no cgroup2 mount (the crun/podman workaround), if started. */
  holder?: Bun.Subprocess;
  /** podman's command prefix once its storage exists, so cleanup can `rm -f` what it left. */
  podmanCmd?: string[];
  crunCmd?: string[];
  /** Set once cleanup has begun. */
  cleaning?: Promise<void>;
} = {};
/** ucr containers launched and not yet removed. */
export const ucrLive = new Set<string>();
/** cgroup dirs podman makes for conmon that were not there before this run. */
export const podmanCgroups: string[] = [];

/** Once cleanup has begun (Ctrl-C), nothing new may start. Called before each step. */
export function checkStop(): void {
  if (state.cleaning) throw new Error("interrupted");
}

/** A command run during cleanup: no checkStop, bounded, never throws. */
function quiet(cmd: string[], timeoutMs = 20_000): Promise<number> {
  try {
    const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", env: { PATH } });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    return p.exited.finally(() => clearTimeout(t));
  } catch {
    return Promise.resolve(127);
  }
}

/** rmdir of a cgroup: it fails, and the cgroup stays, while processes are in it. */
function rmdirQuiet(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // gone already, or still in use: not ours to force
  }
}

export function cleanup(): Promise<void> {
  state.cleaning ??= (async () => {
    for (const p of live) p.kill("SIGKILL");
    await Promise.race([Promise.all([...live].map((p) => p.exited)), Bun.sleep(3000)]);
    // ucr containers outlive the agent by design, so they are ended through it first.
    const agent = state.agent;
    if (agent && ucrLive.size > 0) {
      for (const id of [...ucrLive]) {
        try {
          await operatorCall(agent, "KILL_CONTAINER", { kill_container: { container_id: { value: id } } }, 5000).catch(() => undefined);
          await operatorCall(agent, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } }, 5000);
          const r = await operatorCall(agent, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } }, 10_000);
          if (r.status === 200) ucrLive.delete(id);
        } catch {
          // the agent is gone or stuck: the pid files below
        }
      }
    }
    if (agent) await agent.stop("SIGTERM", 5000);
    const { base, holder, podmanCmd, crunCmd } = state;
    if (base && ucrLive.size > 0) {
      // What the agent could not remove: kill the workloads (stage 1 then exits) and drop their cgroups.
      for (const id of ucrLive) {
        try {
          const pid = Number(readFileSync(join(base, "ucr", "run", "containers", id, "pid"), "utf8").trim());
          if (pid > 0) process.kill(pid, "SIGKILL");
        } catch {
          // never started, or already gone
        }
      }
      await Bun.sleep(300);
      for (const ctl of ["cpu", "cpuacct", "memory"]) {
        for (const id of ucrLive) rmdirQuiet(`/sys/fs/cgroup/${ctl}/ucr/${id}`);
      }
      console.error(`cleanup: ucr containers the agent did not remove: ${[...ucrLive].join(", ")} (killed)`);
    }
    if (podmanCmd) await quiet([...podmanCmd, "rm", "-f", "-a", "-t", "0"], 60_000);
    if (crunCmd && base && existsSync(join(base, "crun"))) {
      for (const id of readdirSync(join(base, "crun"))) await quiet([...crunCmd, "delete", "-f", id]);
    }
    // conmon can outlive `podman rm` by a moment, and its cgroup with it.
    for (let i = 0; i < 20 && podmanCgroups.some((d) => existsSync(d)); i++) {
      for (const dir of podmanCgroups.sort((a, b) => b.length - a.length)) rmdirQuiet(dir);
      if (podmanCgroups.some((d) => existsSync(d))) await Bun.sleep(100);
    }
    if (holder) {
      holder.kill("SIGKILL");
      await holder.exited;
    }
    if (base) {
      for (const mp of mountsUnder(base)) {
        if ((await quiet(["umount", mp])) !== 0) await quiet(["umount", "-l", mp]);
      }
      if (mountsUnder(base).length === 0) rmSync(base, { recursive: true, force: true });
      else console.error(`cleanup: ${base} still has mounts; remove it by hand`);
    }
  })();
  return state.cleaning;
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}
