// ucr run, ps, kill and rm against a real agent (needs root for the containers).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, UCR, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-client-");
let agent: RunningAgent;
let at: string;

beforeAll(async () => {
  if (!isRoot) return;
  const images = join(work, "images");
  mkdirSync(images);
  buildBusyboxImage(join(work, "bb"), { tag: "1" });
  await saveArchive(join(work, "bb"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  agent = await startAgent({
    args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
  });
  at = `--agent=127.0.0.1:${agent.port}`;
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

test.skipIf(!isRoot)("ucr run streams the container's output and exits with its status (needs root)", async () => {
  const r = await runUcr(["run", at, "alpine", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5"]);
  expect(r.stdout).toBe("to-stdout\n");
  expect(r.stderr).toBe("to-stderr\n");
  expect(r.code).toBe(5);
  // Removed afterwards unless --keep.
  const ps = await runUcr(["ps", at]);
  expect(ps.stdout.trim().split("\n")).toHaveLength(1);
  const bad = await runUcr(["run", at, "nosuchimage"]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/ucr run: .*Failed to find archive for image 'nosuchimage'/);
});

test.skipIf(!isRoot)("ucr ps, kill and rm (needs root)", async () => {
  const run = Bun.spawn([UCR, "run", at, "--name", "sleeper", "--keep", "--mem", "64", "alpine", "--", "sleep", "60"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  let listed = "";
  for (let i = 0; i < 100 && !/sleeper +running/.test(listed); i++) {
    await Bun.sleep(50);
    listed = (await runUcr(["ps", at])).stdout;
  }
  expect(listed).toMatch(/^sleeper +running \(pid \d+\) +- +64MB +[\d.]+MB$/m);
  expect((await runUcr(["rm", at, "sleeper"])).stderr).toMatch(/has not terminated yet/);
  expect((await runUcr(["kill", at, "sleeper"])).code).toBe(0);
  expect(await run.exited).toBe(137); // 128 + SIGKILL, as a shell reports it
  expect((await runUcr(["ps", at])).stdout).toMatch(/^sleeper +exited/m);
  const rm = await runUcr(["rm", at, "sleeper"]);
  expect(rm.code).toBe(0);
  expect((await runUcr(["ps", at])).stdout).not.toContain("sleeper");
  expect((await runUcr(["kill", at, "sleeper"])).stderr).toMatch(/cannot be found/);
});

test("the client commands say where the agent is not", async () => {
  const r = await runUcr(["ps", "--agent=127.0.0.1:1"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/cannot reach the agent at http:\/\/127\.0\.0\.1:1/);
});
