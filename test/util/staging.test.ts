// The staging rule both image stores share: a directory is named after its process and start
// time, and opening a store removes those of processes that are gone, never a live one's.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { alive, startTime } from "../../src/util/process.ts";
import { newStagingDir, removeDeadStaging, stagingOwnerAlive } from "../../src/util/staging.ts";
import { tempDir } from "../helpers/agent.ts";
import { hasTopdirFlag } from "../helpers/fs.ts";

const work = tempDir("ucr-staging-");
const sleeper = Bun.spawn(["sleep", "600"]);
afterAll(async () => {
  sleeper.kill("SIGKILL");
  await sleeper.exited;
  rmSync(work, { recursive: true, force: true });
});

/** The pid of a process that ran and was reaped (so it names no process now). */
async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  expect(alive(p.pid)).toBe(false);
  return p.pid;
}

test("a new staging directory is named by this process and its start time", () => {
  const parent = join(work, "named");
  const dir = newStagingDir(parent);
  expect(existsSync(dir)).toBe(true);
  expect(basename(dir)).toMatch(new RegExp(`^${process.pid}\\.${startTime(process.pid)}\\.[0-9a-z]+$`));
  expect(newStagingDir(parent)).not.toBe(dir);
  expect(stagingOwnerAlive(basename(dir))).toBe(true);
  // On ext4 the parent spreads each download's tree over block groups (spreadSubdirs).
  if (statfsSync(work).type === 0xef53) expect(hasTopdirFlag(parent)).toBe(true);
});

test("staging of a dead process is removed, a live process's stays", async () => {
  const parent = join(work, "mixed");
  const dead = await deadPid();
  const sleeperStart = startTime(sleeper.pid);
  expect(sleeperStart).toBeNumber();
  const ours = newStagingDir(parent);
  const kept = [
    basename(ours),
    `${process.pid}.legacy1`, // an older ucr's name for a dir of ours
    `${sleeper.pid}.${sleeperStart}.abc`, // another live process
    `${sleeper.pid}.legacy2`, // an older ucr's name, its pid live
  ];
  const removed = [
    `${dead}.${sleeperStart}.abc`,
    `${dead}.legacy3`,
    `${sleeper.pid}.${sleeperStart! + 1}.abc`, // its pid reused by a process that started later
    `${process.pid}.${startTime(process.pid)! - 1}.abc`, // a dead predecessor with our pid (pid 1 in a container)
    "not-a-pid",
    "0.1.abc",
  ];
  for (const name of [...kept, ...removed]) mkdirSync(join(parent, name, "tree/deep"), { recursive: true });
  writeFileSync(join(parent, `${dead}.file`), "a stray file\n");
  removed.push(`${dead}.file`);
  expect(removeDeadStaging(parent).sort()).toEqual([...removed].sort());
  expect(readdirSync(parent).sort()).toEqual([...kept].sort());
  expect(removeDeadStaging(parent)).toEqual([]);
});

test("a store without a staging directory has none to remove, and gets none made", () => {
  const parent = join(work, "absent", "staging");
  expect(removeDeadStaging(parent)).toEqual([]);
  expect(existsSync(join(work, "absent"))).toBe(false);
});
