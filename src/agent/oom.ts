// OOM handling as Mesos' memory isolator does it: an OOM kill of any process in a
// container's cgroup ends the container (TASK_FAILED, REASON_CONTAINER_LIMITATION_MEMORY).
// Event-driven (ContainerCgroup.watchOom: eventfd on v1, inotify on v2); only kills counted
// since the launch are the container's own.
import type { Resource } from "../mesos/messages.ts";
import { log } from "../log.ts";
import type { Container } from "./container.ts";

/** OOM kills in the container's cgroup since it was launched. */
export function oomKillsSinceLaunch(c: Container): number {
  return c.cgroup ? c.cgroup.oomKills() - (c.oomBaseline ?? 0) : 0;
}

/** Marks `c` as ended by its memory limit (what WAIT_CONTAINER reports). */
export function setMemoryLimitation(c: Container): void {
  const mb = c.limits?.memBytes !== undefined ? c.limits.memBytes / 1048576 : undefined;
  c.limitation = {
    reason: "REASON_CONTAINER_LIMITATION_MEMORY",
    resources: mb !== undefined ? [{ name: "mem", type: "SCALAR", scalar: { value: mb } } as Resource] : [],
  };
  c.message = `Memory limit exceeded: the kernel's OOM killer stopped the container${mb !== undefined ? ` (limit ${mb} MB)` : ""}`;
}

export class OomGuard {
  private readonly watches = new Map<string, () => void>();

  /** `record`: persist the limitation before the container is killed (a restart still reports it). */
  constructor(private readonly record: (c: Container) => void) {}

  /**
   * Watches a running container's own cgroup (a nested one sharing its parent's is covered
   * by the parent's watch, as its processes die with the parent's).
   */
  watch(c: Container): void {
    if (c.state !== "RUNNING" || !c.cgroupDirs || !c.cgroup || this.watches.has(c.key)) return;
    try {
      this.watches.set(
        c.key,
        c.cgroup.watchOom(() => this.onEvent(c)),
      );
    } catch (err) {
      const why = (err as Error).message;
      log.warn(`container ${c.key}: cannot watch its cgroup for OOM events (${why}); an OOM kill shows only at its exit`);
    }
  }

  stop(c: Container): void {
    this.watches.get(c.key)?.();
    this.watches.delete(c.key);
  }

  stopAll(): void {
    for (const stop of this.watches.values()) stop();
    this.watches.clear();
  }

  /**
   * The v1 event comes when the cgroup hits its limit, before the OOM killer has chosen and
   * counted its victim: look again a few times until the kill shows (or it does not).
   */
  private onEvent(c: Container): void {
    if (this.check(c)) return;
    for (const ms of [5, 20, 100, 500]) {
      setTimeout(() => {
        if (c.state === "RUNNING" && !c.limitation) this.check(c);
      }, ms).unref();
    }
  }

  /** If the OOM killer acted in `c`'s cgroup since its launch, the container ends now (true). */
  check(c: Container): boolean {
    if (c.state !== "RUNNING" || c.limitation) return false;
    // The v1 eventfd also fires when the cgroup goes, and under_oom may clear without a kill.
    if (oomKillsSinceLaunch(c) <= 0) return false;
    setMemoryLimitation(c);
    log.warn(`container ${c.key}: the OOM killer acted in its cgroup; destroying the container (${c.message})`);
    try {
      this.record(c);
    } catch (err) {
      log.warn(`container ${c.key}: cannot checkpoint its memory limitation: ${(err as Error).message}`);
    }
    for (const pid of new Set([...(c.pid !== undefined ? [c.pid] : []), ...c.cgroup!.procs()])) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    return true;
  }
}
