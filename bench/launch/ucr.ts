// The ucr agent bench/launch.ts measures, and its API: launch, wait and remove one container,
// and the server-side time of each launch from the agent's log.
import { join } from "node:path";
import { startAgent, type RunningAgent } from "../../test/helpers/agent.ts";
import { operatorCall } from "../lib.ts";
import { ID_PREFIX, PATH, TIMEOUT_MS } from "./options.ts";
import { checkStop, ucrLive } from "./state.ts";

/** The agent under test: the shared starter (test/helpers/agent.ts) on this run's directory. */
export function startUcrAgent(ucr: string, dir: string, images: string): Promise<RunningAgent> {
  return startAgent({
    binary: ucr,
    args: [
      `--work_dir=${dir}`,
      `--runtime_dir=${join(dir, "run")}`,
      "--cgroups_root=ucr",
      `--docker_registry=${images}`,
      "--image_providers=docker",
      "--isolation=filesystem/linux,docker/runtime",
    ],
    env: { PATH },
    // Its own session: a Ctrl-C at the terminal (SIGINT to the foreground process group) must
    // not stop it before cleanup has used it to remove the containers.
    detached: true,
    listenTimeoutMs: 30_000,
  });
}

/** One Operator API call, with the benchmark's timeout. */
export function call(
  a: RunningAgent,
  type: string,
  body: Record<string, unknown>,
  timeoutMs = TIMEOUT_MS,
): Promise<{ status: number; text: string }> {
  return operatorCall(a, type, body, timeoutMs);
}

export function launchBody(id: string, argv: string[]): Record<string, unknown> {
  return {
    launch_container: {
      container_id: { value: id },
      command: { shell: false, value: argv[0], arguments: [argv[0]!.split("/").pop(), ...argv.slice(1)] },
      container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
    },
  };
}

let ucrSeq = 0;
export const nextId = (what: string) => `${ID_PREFIX}-${what}-${++ucrSeq}`;
/** ucr launches so far (for the memory table). */
export const launches = { ucr: 0 };

export interface UcrTiming {
  launchMs: number;
  waitMs: number;
  /** process.hrtime ns at the request and at each response (the perf probe aligns them to the kernel's clock). */
  t0: bigint;
  t1: bigint;
  t2: bigint;
  id: string;
}

/** LAUNCH + WAIT of one /bin/true container (timed), then REMOVE (not timed) unless `keep`. */
export async function ucrOnce(a: RunningAgent, keep = false): Promise<UcrTiming> {
  checkStop();
  const id = nextId("t");
  ucrLive.add(id);
  const t0 = process.hrtime.bigint();
  launches.ucr++;
  const l = await call(a, "LAUNCH_CONTAINER", launchBody(id, ["/bin/true"]));
  const t1 = process.hrtime.bigint();
  if (l.status !== 200) throw new Error(`LAUNCH_CONTAINER ${l.status}: ${l.text.trim().slice(0, 200)}`);
  const w = await call(a, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
  const t2 = process.hrtime.bigint();
  if (w.status !== 200) throw new Error(`WAIT_CONTAINER ${w.status}: ${w.text.trim().slice(0, 200)}`);
  const status = (JSON.parse(w.text) as { wait_container?: { exit_status?: number } }).wait_container?.exit_status;
  if (status !== 0) throw new Error(`/bin/true in ucr exited with wait status ${status}`);
  if (!keep) await ucrRemove(a, id);
  return { launchMs: Number(t1 - t0) / 1e6, waitMs: Number(t2 - t1) / 1e6, t0, t1, t2, id };
}

export async function ucrRemove(a: RunningAgent, id: string): Promise<void> {
  const r = await call(a, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } });
  if (r.status !== 200) throw new Error(`REMOVE_CONTAINER ${r.status}: ${r.text.trim().slice(0, 200)}`);
  ucrLive.delete(id);
}
