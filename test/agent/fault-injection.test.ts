// Fault injection: the agent is SIGKILLed at random points of launch bursts (pulls forced
// from the archive, nested launches, kills, removes and prunes in flight) with long-running
// containers alive, and restarted on the same work dir, round after round. Afterwards every
// workload running under the cgroups root is one GET_CONTAINERS lists as running, each of
// them still sees its image (`ls /bin` from inside, after a PRUNE), and once everything is
// killed and removed no cgroup dir, sandbox, rootfs dir, runtime dir, mount or process is
// left. UCR_FI_ROUNDS (default 50) and UCR_FI_SEED replay a run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import {
  NOTHING,
  type Listed,
  alpineArchive,
  call,
  cgroupProcesses,
  dockerArgs,
  isRoot,
  killBody,
  launchBody,
  leftovers,
  listContainers,
  processesWith,
  removeBody,
  waitBody,
} from "./support.ts";

const ROUNDS = Number(process.env.UCR_FI_ROUNDS ?? 50);
const SEED = Number(process.env.UCR_FI_SEED ?? Date.now() % 1_000_000);
/** Running containers kept alive across rounds (older ones are killed and removed). */
const KEEP_RUNNING = 8;

const work = tempDir("ucr-fault-");
const wd = join(work, "wd");
const marker = `fi-${SEED}-${process.pid}`;
let images: string;

beforeAll(async () => {
  if (isRoot) images = await alpineArchive(join(work, "images"));
});
afterAll(() => {
  // Whatever a failed run left running of ours goes (only processes with our marker).
  for (const pid of processesWith(marker)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  rmSync(work, { recursive: true, force: true });
});

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with UCR_FI_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const args = () => ({ args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(images)], keepWorkDir: true });
const longRunning = (tag: string) => `sleep 3600; : ${marker} ${tag}`;

/** Sends a call and forgets it: the agent may be dead before it answers. */
function fire(agent: RunningAgent, body: unknown): Promise<void> {
  return agent.call(body).then(
    (r) => void r.text().catch(() => {}),
    () => {},
  );
}

/** What one round does while the agent is being killed: tidy up, then a burst of launches. */
async function round(agent: RunningAgent, n: number, random: () => number, listed: Listed[]): Promise<void> {
  const running = listed.filter((c) => c.running && !c.id.includes("."));
  const work: Array<Promise<void>> = [];
  // Exited ones are removed; the oldest running ones beyond the cap killed and removed.
  for (const c of listed.filter((c) => !c.running && !c.id.includes("."))) work.push(fire(agent, removeBody(c.id)));
  for (const c of running.slice(0, Math.max(0, running.length - KEEP_RUNNING))) {
    work.push(
      (async () => {
        await fire(agent, killBody(c.id));
        await fire(agent, waitBody(c.id));
        await fire(agent, removeBody(c.id));
      })(),
    );
  }
  if (random() < 0.3) work.push(fire(agent, { type: "PRUNE_IMAGES" }));
  const burst = 3 + Math.floor(random() * 5);
  for (let i = 0; i < burst; i++) {
    const id = `r${n}-${i}`;
    const forced = random() < 0.3; // a pull (from the archive) in flight
    const short = random() < 0.2;
    work.push(fire(agent, launchBody(id, short ? "true" : longRunning(id), { image: "alpine", ...(forced ? { cached: false } : {}) })));
  }
  const parent = running[Math.floor(random() * running.length)];
  if (parent && random() < 0.5) {
    work.push(fire(agent, launchBody({ value: `n${n}`, parent: { value: parent.id } }, longRunning(`n${n}`))));
  }
  await Promise.all(work);
}

describe.skipIf(!isRoot)("fault injection (needs root)", () => {
  test(`SIGKILL at random points of ${ROUNDS} launch bursts: nothing lost, nothing left, no layer pruned under a workload`, async () => {
    const random = prng(SEED);
    console.log(`fault injection: seed ${SEED} (UCR_FI_SEED=${SEED} replays it), ${ROUNDS} rounds`);
    let launchedAt = 0;
    let cgroupsRoot = "";
    // What the restarts found, from their logs: proof the kills landed at varied points.
    const seen = { adopted: 0, "destroyed while provisioning": 0, "destroyed while launching": 0, "orphans removed": 0 };
    const tally = (log: string) => {
      seen.adopted += (log.match(/; adopted$/gm) ?? []).length;
      seen["destroyed while provisioning"] += (log.match(/stopped while it was being provisioned; destroying it/g) ?? []).length;
      seen["destroyed while launching"] += (log.match(/stopped as it was being launched and no workload of it runs/g) ?? []).length;
      seen["orphans removed"] += (log.match(/belongs to no container|runtime dir without a checkpoint/g) ?? []).length;
    };
    for (let n = 0; n < ROUNDS; n++) {
      const agent = await startAgent(args());
      cgroupsRoot = agent.cgroupsRoot!;
      const listed = await listContainers(agent);
      // Recovery happened before the agent listened: check the invariant every round.
      expectEveryWorkloadListed(listed, cgroupsRoot);
      const started = performance.now();
      const activity = round(agent, n, random, listed);
      // The kill lands anywhere from the first call to shortly after the burst settles.
      await Promise.race([activity, Bun.sleep(random() * 600)]);
      launchedAt += performance.now() - started;
      expect(await agent.stop("SIGKILL")).toBe(137);
      await activity;
      tally(agent.log());
    }

    const agent = await startAgent(args());
    try {
      const listed = await listContainers(agent);
      expectEveryWorkloadListed(listed, cgroupsRoot);
      const running = listed.filter((c) => c.running);
      tally(agent.log());
      const perRound = (launchedAt / ROUNDS).toFixed(0);
      console.log(
        `fault injection: ${listed.length} container(s) at the end, ${running.length} running; ${perRound}ms of activity per round`,
      );
      console.log(
        `fault injection: restarts found ${Object.entries(seen)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ")}`,
      );

      // PRUNE, then every running top-level container still sees its image from inside.
      expect((await call(agent, { type: "PRUNE_IMAGES" })).status).toBe(200);
      for (const c of running.filter((c) => !c.id.includes("."))) {
        const look = { value: "look", parent: { value: c.id } };
        const r = await call(agent, launchBody(look, "ls /bin | wc -l"));
        expect({ id: c.id, status: r.status, text: r.text }).toEqual({ id: c.id, status: 200, text: "" });
        expect((await call(agent, waitBody(look))).json?.wait_container).toEqual({ exit_status: 0 });
        const out = readFileSync(join(wd, "containers", c.id, "containers", "look", "stdout"), "utf8");
        expect({ id: c.id, bin: Number(out.trim()) > 5 }).toEqual({ id: c.id, bin: true });
        expect((await call(agent, removeBody(look))).status).toBe(200);
      }

      // Everything killed, waited for and removed: nothing of it is left.
      for (const c of listed.filter((c) => !c.id.includes("."))) {
        if (c.running) expect((await call(agent, killBody(c.id))).status).toBe(200);
        expect((await call(agent, waitBody(c.id))).status).toBe(200);
        expect({ id: c.id, status: (await call(agent, removeBody(c.id))).status }).toEqual({ id: c.id, status: 200 });
      }
      expect(await listContainers(agent)).toEqual([]);
      expect(leftovers(wd, cgroupsRoot)).toEqual(NOTHING);
      expect(processesWith(marker)).toEqual([]);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 600_000);
});

/**
 * Every process in a container cgroup under the root, and every process with our marker,
 * belongs to a container GET_CONTAINERS lists as running (a nested one shares its parent's
 * cgroup and its own pid is listed).
 */
function expectEveryWorkloadListed(listed: Listed[], cgroupsRoot: string): void {
  const running = new Set(listed.filter((c) => c.running).map((c) => c.id));
  const pids = new Set(listed.filter((c) => c.running).map((c) => c.pid));
  const strays: string[] = [];
  for (const [pid, cgroup] of cgroupProcesses(cgroupsRoot)) if (!running.has(cgroup)) strays.push(`pid ${pid} in cgroup ${cgroup}`);
  // Only a workload's first process (sh -c "...marker...") carries the marker: its pid is the
  // one listed for its container.
  for (const pid of processesWith(marker)) if (!pids.has(pid)) strays.push(`workload pid ${pid} (${commandOf(pid)})`);
  expect(strays).toEqual([]);
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
  } catch {
    return "gone";
  }
}
