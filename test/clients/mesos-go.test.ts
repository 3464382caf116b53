// A real client library against the agent: Debian's mesos-go (v0.0.6) with its default
// protobuf codec and with JSON, its HTTP client, its streaming calls and its message types
// (test/clients/mesos-go/main.go). It writes null for every empty repeated field in JSON and
// sends two Accept lines for its streaming calls.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { runCommand } from "../helpers/command.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";
import { mesosGoClient } from "./mesos-go/build.ts";

const built = await mesosGoClient();
const skip = "skip" in built ? built.skip : undefined;
const isRoot = process.getuid?.() === 0;
const named = (what: string, needsRoot = false) =>
  skip ? `${what} (skipped: ${skip})` : needsRoot && !isRoot ? `${what} (skipped: needs root for containers)` : what;

const work = tempDir("ucr-mesos-go-");
let agent: RunningAgent;

interface Step {
  step: string;
  ok: boolean;
  result?: any;
  error?: string;
}

const CODECS = ["protobuf", "json"] as const;

/** Runs the client's scenarios with a codec; every line it printed, by step name. */
async function client(codec: (typeof CODECS)[number], ...scenarios: string[]): Promise<Map<string, Step>> {
  if (!("path" in built)) throw new Error(skip);
  const args = ["-agent", agent.url, "-codec", codec, "-prefix", `mesos-go-${codec}-`, ...scenarios];
  const r = await runCommand([built.path, ...args], { timeoutMs: 90_000 });
  const steps = new Map<string, Step>();
  for (const line of r.stdout.trim().split("\n").filter(Boolean)) {
    const s = JSON.parse(line) as Step;
    steps.set(s.step, s);
  }
  if (steps.size === 0) throw new Error(`the mesos-go client printed nothing (exit ${r.code}): ${r.stderr}`);
  return steps;
}

beforeAll(async () => {
  if (skip) return;
  const images = join(work, "images");
  mkdirSync(images);
  buildBusyboxImage(join(work, "bb"), { tag: "1" });
  await saveArchive(join(work, "bb"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  agent = await startAgent({
    args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
  });
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

test.skipIf(skip !== undefined)(named("the bodies mesos-go writes carry null for empty repeated fields"), async () => {
  const steps = await client("json", "marshal");
  const launch = steps.get("marshal LAUNCH_CONTAINER")!.result.launch_container;
  expect(launch.command.uris).toBeNull();
  expect(launch.limits).toBeNull();
  expect(launch.container.volumes).toBeNull();
  expect(launch.resources[0].reservations).toBeNull();
  expect(steps.get("marshal LAUNCH_NESTED_CONTAINER")!.result.launch_nested_container.container.network_infos).toBeNull();
  expect(steps.get("marshal PRUNE_IMAGES")!.result.prune_images.excluded_images).toBeNull();
});

for (const codec of CODECS) {
  test.skipIf(skip !== undefined)(named(`GET_HEALTH, GET_VERSION and GET_FLAGS through mesos-go in ${codec}, its types`), async () => {
    const steps = await client(codec, "info");
    expect(steps.get("GET_HEALTH")).toEqual({ step: "GET_HEALTH", ok: true, result: { healthy: true } });
    expect(steps.get("GET_VERSION")).toEqual({ step: "GET_VERSION", ok: true, result: { version: pkg.version } });
    const flags = steps.get("GET_FLAGS")!;
    expect(flags.ok).toBe(true);
    expect(flags.result.work_dir).toBe(agent.workDir);
    expect(flags.result.image_providers).toBe("docker");
  });

  test.skipIf(skip !== undefined || !isRoot)(
    named(`a container and a nested one through mesos-go in ${codec}: launch, the deprecated nested calls, wait, kill, remove`, true),
    async () => {
      const steps = await client(codec, "containers");
      const calls = ["LAUNCH_CONTAINER", "LAUNCH_NESTED_CONTAINER", "GET_CONTAINERS", "KILL_NESTED_CONTAINER", "REMOVE_NESTED_CONTAINER"];
      for (const s of calls) {
        expect({ s, ...steps.get(s) }).toMatchObject({ s, ok: true });
      }
      const listed = steps.get("GET_CONTAINERS")!.result as Array<{ value: string; executor_pid?: number }>;
      expect(listed.map((c) => c.value).sort()).toEqual([`mesos-go-${codec}-child`, `mesos-go-${codec}-parent`]);
      for (const c of listed) expect(c.executor_pid).toBeGreaterThan(0);
      // SIGKILL by default: a raw wait(2) status of 9.
      expect(steps.get("WAIT_NESTED_CONTAINER")).toEqual({ step: "WAIT_NESTED_CONTAINER", ok: true, result: { exit_status: 9 } });
      expect(steps.get("KILL_CONTAINER")!.ok).toBe(true);
      expect(steps.get("WAIT_CONTAINER")).toEqual({
        step: "WAIT_CONTAINER",
        ok: true,
        result: { type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } },
      });
      expect(steps.get("REMOVE_CONTAINER")!.ok).toBe(true);
      expect(steps.get("PRUNE_IMAGES")!.ok).toBe(true);
      // Nothing left: not listed, no sandbox.
      const list = await agent.call({ type: "GET_CONTAINERS", get_containers: { show_nested: true, show_standalone: true } });
      expect(await list.json()).toEqual({ type: "GET_CONTAINERS", get_containers: { containers: [] } });
      expect(existsSync(join(agent.workDir, "containers", `mesos-go-${codec}-parent`))).toBe(false);
    },
  );

  test.skipIf(skip !== undefined || !isRoot)(
    named(`sessions and attach through mesos-go in ${codec}: LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_OUTPUT and _INPUT`, true),
    async () => {
      const steps = await client(codec, "sessions");
      const failed = [...steps.values()].filter((s) => !s.ok && s.step !== "ATTACH_CONTAINER_INPUT second");
      expect(failed).toEqual([]);
      // The session's records, decoded by the library's ProcessIO; its status by WAIT_NESTED_CONTAINER.
      expect(steps.get("LAUNCH_NESTED_CONTAINER_SESSION")!.result).toMatchObject({ stdout: "out-yes-42\n", stderr: "err\n" });
      expect(steps.get("WAIT_NESTED_CONTAINER session")!.result).toEqual({ exit_status: 3 << 8 });
      // The terminal: resized by the library's TTY_INFO, fed by its stdin records, ended through them.
      expect(steps.get("ATTACH_CONTAINER_OUTPUT records")!.result.stdout).toMatch(/in-42 40 120 \/dev\/pts\/0\r\n/);
      expect(steps.get("ATTACH_CONTAINER_INPUT")).toEqual({ step: "ATTACH_CONTAINER_INPUT", ok: true });
      expect(steps.get("WAIT_CONTAINER tty")!.result).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 4 << 8 } });
      // A second writer: Mesos' 409 with its message (mesos-go's apierrors names every 409 so).
      expect(steps.get("ATTACH_CONTAINER_INPUT second")).toEqual({
        step: "ATTACH_CONTAINER_INPUT second",
        ok: false,
        error: "incompatible API version: Multiple input connections are not allowed",
      });
    },
  );
}
