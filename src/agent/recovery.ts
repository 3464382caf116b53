// Recovery after an agent restart: three sources reconciled. The checkpoints say which
// containers the agent made and how far each got; the launcher's pid and status files say
// whether a workload was started and how it ended; the cgroups under --cgroups_root (and
// the sandboxes and rootfs dirs under --work_dir) say what exists. Every container found
// is adopted (running, watched) or destroyed and reported (a terminated record until
// REMOVE_CONTAINER); anything no checkpoint names is killed and removed. Each decision is
// logged. Everything here is idempotent: an agent killed during recovery is recovered too.
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ContainerID } from "../mesos/messages.ts";
import { log } from "../log.ts";
import { ContainerCgroup, type CgroupLayout } from "../runtime/cgroups.ts";
import { alive, bootId, startTime, stillRunning } from "../util/process.ts";
import { containerFrom, readCheckpoint, writeCheckpoint, type Checkpoint } from "./checkpoint.ts";
import { containerPaths, idKey, toRunning, type Container, type Termination } from "./container.ts";
import { isInitStage, launcherPid, launcherStatus, takeApart, unmountUnder } from "./destroy.ts";

export interface RecoveryResult {
  running: number;
  exited: number;
  /** Containers destroyed now (found half-made) and kept as terminated records. */
  destroyed: string[];
  /** Runtime dirs with unreadable checkpoints: their containers were destroyed and removed. */
  broken: string[];
  /** Things no checkpoint names (runtime dirs, cgroups, sandboxes, rootfs dirs), removed. */
  orphans: string[];
}

/** What recovery needs from the containers table. */
export interface RecoveryTable {
  layout: CgroupLayout;
  workDir: string;
  runtimeDir: string;
  cgroupsRoot: string;
  add(c: Container): void;
  has(key: string): boolean;
  /** Watch a running container until it exits. */
  adopt(c: Container, settle: () => void): void;
  exited(c: Container, settle: () => void, status?: number): void;
  /** Take it apart and keep it as a terminated record; `ran`: a workload had started. */
  destroy(c: Container, settle: () => void, termination: Termination, ran: boolean): Promise<void>;
  removeTree(path: string): Promise<void>;
}

/** How long a restarted agent gives the launcher to record a workload it was asked for. */
const LAUNCH_GRACE_MS = 500;
/** How long it gives a stage 2 found setting up to exec its workload (or fail). */
const SETUP_GRACE_MS = 3000;

export async function recoverContainers(t: RecoveryTable): Promise<RecoveryResult> {
  const result: RecoveryResult = { running: 0, exited: 0, destroyed: [], broken: [], orphans: [] };
  await recoverUnder(t, join(t.runtimeDir, "containers"), undefined, result);
  await sweepOrphans(t, result);
  return result;
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** One level of runtime dirs: top-level containers, or the nested ones of `parent`. */
async function recoverUnder(t: RecoveryTable, root: string, parent: Container | undefined, result: RecoveryResult): Promise<void> {
  if (!isDir(root)) return;
  const launching: Array<Promise<void>> = [];
  const found: Container[] = [];
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    if (!isDir(dir)) continue;
    const id: ContainerID = parent ? { value: name, parent: parent.id } : { value: name };
    const key = idKey(id);
    let record: Checkpoint | undefined;
    try {
      record = readCheckpoint(dir);
      if (record && idKey(record.id) !== key) {
        throw new Error(`it names container '${idKey(record.id)}' but lies in the runtime dir of '${key}'`);
      }
    } catch (err) {
      log.error(`container ${key}: its checkpoint is unreadable (${(err as Error).message}); destroying whatever it has and removing it`);
      await destroyUnknown(t, id, dir);
      result.broken.push(name);
      continue;
    }
    if (!record) {
      log.warn(`container ${key}: a runtime dir without a checkpoint (an agent killed as it began the launch); destroying what it has`);
      await destroyUnknown(t, id, dir);
      result.orphans.push(`runtime dir ${dir}`);
      continue;
    }
    const { container: c, settle } = containerFrom(record, dir, parent, t.layout);
    t.add(c);
    found.push(c);
    switch (record.state) {
      case "EXITED":
        if (c.destroyed) {
          // Its destruction may have been cut short: finish it (every step is idempotent).
          log.info(`container ${key}: a terminated record (${c.termination?.message ?? "destroyed"}); making sure nothing of it is left`);
          await t.destroy(c, settle, c.termination ?? restarted("being destroyed"), exitStatusOf(c) !== undefined);
        } else {
          log.info(`container ${key}: exited earlier with status ${exitStatusOf(c) ?? "unknown"}; kept until REMOVE_CONTAINER`);
          settle();
        }
        result.exited++;
        break;
      case "PROVISIONING":
        // The launcher was never asked: no workload can exist. What the launch made goes.
        log.warn(`container ${key}: the agent stopped while it was being provisioned; destroying it`);
        await t.destroy(c, settle, restarted("provisioned (pulling its image, preparing its rootfs, cgroups or URIs)"), false);
        result.destroyed.push(key);
        break;
      case "LAUNCHING":
        // The launcher may have started it: its pid file says. Settled side by side.
        launching.push(recoverLaunching(t, c, settle, result));
        break;
      case "RUNNING":
        recoverRunning(t, c, settle, record, result);
        break;
    }
  }
  await Promise.all(launching);
  for (const c of found) await recoverUnder(t, join(c.runtime, "containers"), c, result);
}

function exitStatusOf(c: Container): number | undefined {
  return c.state === "EXITED" ? c.exitStatus : undefined;
}

function restarted(doing: string): Termination {
  return {
    state: "TASK_FAILED",
    reason: "REASON_CONTAINER_LAUNCH_FAILED",
    message: `The agent restarted while the container was being ${doing}; it was destroyed`,
  };
}

function recoverRunning(t: RecoveryTable, c: Container, settle: () => void, record: Checkpoint, result: RecoveryResult): void {
  const status = launcherStatus(c.runtime);
  // Its processes ended with the host if the host booted since; and a pid that is alive
  // but started at another time belongs to some later process.
  const rebooted = record.bootId !== undefined && record.bootId !== bootId();
  const gone = c.pid === undefined || !stillRunning(c.pid, c.pidStart);
  if (rebooted && status === undefined) c.message = "The host restarted while the container was running";
  if (rebooted || status !== undefined || gone) {
    const how = rebooted ? "the host restarted since" : `exited while no agent ran (status ${status ?? "not recorded: 9"})`;
    log.info(`container ${c.key}: ${how}`);
    t.exited(c, settle, rebooted ? undefined : status);
    result.exited++;
    return;
  }
  log.info(`container ${c.key}: running (pid ${c.pid}); adopted`);
  t.adopt(c, settle);
  result.running++;
}

/**
 * A container the launcher was asked to start. Its pid file names the workload once the
 * launcher started one; a stage 2 still setting up gets a moment to exec (or fail). The
 * process must be the container's (in its own cgroup, or a ucr init stage) before it is
 * adopted or killed: a pid alone may have been reused.
 */
async function recoverLaunching(t: RecoveryTable, c: Container, settle: () => void, result: RecoveryResult): Promise<void> {
  const started = Date.now();
  const ownCgroup = c.cgroupDirs ? ContainerCgroup.existing(t.layout, c.cgroupDirs) : undefined;
  for (;;) {
    const status = launcherStatus(c.runtime);
    const pid = launcherPid(c.runtime);
    if (status !== undefined) {
      if (pid !== undefined) c.pid = pid;
      log.info(`container ${c.key}: the agent stopped as it was being launched; its workload ran and exited (status ${status})`);
      t.exited(c, settle, status);
      result.exited++;
      return;
    }
    const waited = Date.now() - started;
    if (pid !== undefined && alive(pid)) {
      const setup = isInitStage(pid);
      const ours = ownCgroup ? ownCgroup.contains(pid) : !setup;
      if (ours && !setup) {
        writeCheckpoint(toRunning(c, pid, startTime(pid)), "RUNNING");
        log.info(`container ${c.key}: the agent stopped as it was being launched; its workload runs (pid ${pid}); adopted`);
        t.adopt(c, settle);
        result.running++;
        return;
      }
      if (setup && waited < SETUP_GRACE_MS) {
        await Bun.sleep(25);
        continue;
      }
      if (setup) {
        c.pid = pid;
        const start = startTime(pid);
        if (start !== undefined) c.pidStart = start;
      }
    } else if (pid === undefined && waited < LAUNCH_GRACE_MS) {
      await Bun.sleep(25);
      continue;
    } else if (pid !== undefined && waited < LAUNCH_GRACE_MS) {
      // Dead, and the launcher writes its status just after: give it that moment.
      await Bun.sleep(25);
      continue;
    }
    log.warn(`container ${c.key}: the agent stopped as it was being launched and no workload of it runs; destroying it`);
    await t.destroy(c, settle, restarted("launched"), c.pid !== undefined);
    result.destroyed.push(c.key);
    return;
  }
}

/**
 * A runtime dir whose checkpoint is missing or unreadable: nothing tells what the container
 * was, so everything its ID names is taken apart: a workload the launcher recorded (if it
 * is provably the container's), its cgroup, sandbox, rootfs dir and the runtime dir itself.
 */
async function destroyUnknown(t: RecoveryTable, id: ContainerID, dir: string): Promise<void> {
  const key = idKey(id);
  const paths = containerPaths({ workDir: t.workDir, runtimeDir: t.runtimeDir }, id);
  const cgroup = ContainerCgroup.dirsFor(t.layout, t.cgroupsRoot, key).some((d) => existsSync(d))
    ? ContainerCgroup.existing(t.layout, ContainerCgroup.dirsFor(t.layout, t.cgroupsRoot, key))
    : undefined;
  const pid = launcherPid(dir);
  const provable = pid !== undefined && (isInitStage(pid) || (cgroup?.contains(pid) ?? false));
  try {
    await takeApart(
      {
        key,
        ...(provable ? { pid } : {}),
        ...(cgroup ? { cgroup } : {}),
        sandbox: paths.sandbox,
        provisionerDir: paths.provisionerDir,
        runtime: dir,
      },
      t.removeTree,
    );
  } catch (err) {
    log.error(`container ${key}: destroying it: ${(err as Error).message}`);
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * What exists with no container to own it: cgroups under --cgroups_root, sandboxes and
 * rootfs dirs of top-level containers. (A nested container's pieces live under its
 * parent's, which go with the parent.)
 */
async function sweepOrphans(t: RecoveryTable, result: RecoveryResult): Promise<void> {
  for (const [name, cgroup] of ContainerCgroup.under(t.layout, t.cgroupsRoot)) {
    if (t.has(name)) continue;
    const procs = cgroup.procs();
    const where = `cgroup ${name} under --cgroups_root=${t.cgroupsRoot}`;
    log.warn(`${where} belongs to no container; killing its ${procs.length} process(es) and removing it`);
    if (!(await cgroup.destroy())) {
      log.error(`${where}: processes ${cgroup.procs().join(", ")} survived SIGKILL; left at ${cgroup.dirs.join(", ")}`);
    }
    result.orphans.push(`cgroup ${name}`);
  }
  for (const [what, root] of [
    ["sandbox", join(t.workDir, "containers")],
    ["rootfs dir", join(t.workDir, "provisioner", "containers")],
  ] as const) {
    if (!isDir(root)) continue;
    for (const name of readdirSync(root)) {
      if (t.has(name)) continue;
      const path = join(root, name);
      log.warn(`${what} ${path} belongs to no container; removing it`);
      unmountUnder([path]);
      try {
        await t.removeTree(path);
      } catch (err) {
        log.error(`cannot remove ${path}: ${(err as Error).message}`);
      }
      result.orphans.push(`${what} ${name}`);
    }
  }
}
