// The checkpoint file: its schema, its version, the migration of what ucr 0.1 wrote, and
// the record <-> file mapping round trip. No root needed.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CHECKPOINT_VERSION,
  CheckpointError,
  checkpointOf,
  containerFrom,
  parseCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from "../../src/agent/checkpoint.ts";
import type { Container } from "../../src/agent/container.ts";
import { tempDir } from "../helpers/agent.ts";

const work = tempDir("ucr-checkpoint-");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const NONE = { kind: "none", why: "test" } as const;
const LAYER_A = `sha256:${"a".repeat(64)}`;
const LAYER_B = `sha256:${"b".repeat(64)}`;

/** A checkpoint exactly as ucr 0.1.0 wrote it (no version; only once the workload ran). */
const V0 = {
  id: { value: "web" },
  sandbox: "/w/containers/web",
  runtime: "/r/containers/web",
  provisionerDir: "/w/provisioner/containers/web",
  pid: 4242,
  pidStart: 777,
  bootId: "b0b0",
  image: "alpine",
  cgroups: ["/sys/fs/cgroup/memory/ucr/web"],
  limits: { memBytes: 67108864 },
  sandboxInContainer: "/mnt/mesos/sandbox",
  imageRef: "docker.io/library/alpine:latest",
  launchedAt: 1700000000000,
};

function container(overrides: Partial<Container> = {}): Container {
  return {
    id: { value: "c", parent: { value: "p" } },
    key: "p.c",
    state: "RUNNING",
    sandbox: "/w/containers/p/containers/c",
    runtime: join(work, "rt"),
    provisionerDir: "/w/provisioner/containers/p/containers/c",
    pid: 99,
    pidStart: 12345,
    cgroupDirs: ["/sys/fs/cgroup/memory/ucr/p.c"],
    oomBaseline: 2,
    image: "alpine",
    imageRef: "docker.io/library/alpine:latest",
    layers: [LAYER_A, LAYER_B],
    volumeImages: ["docker.io/library/vol:latest"],
    limits: { cpus: 0.5, memBytes: 1 << 26 },
    user: "nobody",
    sandboxInContainer: "/mnt/mesos/sandbox",
    launchedAt: 1,
    leases: [],
    exited: Promise.resolve(),
    ...overrides,
  };
}

test("a record written and read back is the same container (every field the agent needs)", () => {
  const c = container();
  mkdirSync(c.runtime, { recursive: true });
  writeCheckpoint(c, "RUNNING");
  const record = readCheckpoint(c.runtime)!;
  expect(record.version).toBe(CHECKPOINT_VERSION);
  expect(record).toEqual(checkpointOf(c, "RUNNING"));
  const { container: back } = containerFrom(record, c.runtime, undefined, NONE);
  for (const field of [
    "id",
    "key",
    "state",
    "sandbox",
    "provisionerDir",
    "pid",
    "pidStart",
    "cgroupDirs",
    "oomBaseline",
    "image",
    "imageRef",
    "layers",
    "volumeImages",
    "limits",
    "user",
    "sandboxInContainer",
    "launchedAt",
  ] as const) {
    expect(back[field]).toEqual(c[field]);
  }
  expect(back.recovered).toBe(true);
});

test("states map to the record: LAUNCHING is provisioning with the launcher asked; EXITED keeps how it ended", () => {
  const c = container({ state: "PROVISIONING", launching: true });
  const launching = containerFrom(parseCheckpoint(JSON.stringify(checkpointOf(c, "LAUNCHING")), "x"), "/r", undefined, NONE).container;
  const asked = launching.state === "PROVISIONING" && launching.launching;
  expect({ state: launching.state, launching: asked }).toEqual({ state: "PROVISIONING", launching: true });

  const killed = container({
    state: "EXITED",
    destroyed: true,
    termination: { state: "TASK_KILLED", reason: "REASON_TASK_KILLED_DURING_LAUNCH", message: "Container destroyed during provisioning" },
  });
  const back = containerFrom(parseCheckpoint(JSON.stringify(checkpointOf(killed, "EXITED")), "x"), "/r", undefined, NONE).container;
  expect({ state: back.state, destroyed: back.destroyed, termination: back.termination }).toEqual({
    state: "EXITED",
    destroyed: true,
    termination: killed.termination!,
  });
});

test("migration: a version 0 checkpoint reads as a RUNNING version 1 record, its layers taken from its launch spec", () => {
  const dir = join(work, "v0");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "container.json"), JSON.stringify(V0));
  // What 0.1 wrote beside it: the overlay lowers name the store's layer trees.
  writeFileSync(
    join(dir, "launch.json"),
    JSON.stringify({
      rootfs: { backend: "overlay", lowers: [`/s/layers/${"a".repeat(64)}/rootfs`, `/s/layers/${"b".repeat(64)}/rootfs`] },
    }),
  );
  const record = readCheckpoint(dir)!;
  const { runtime: _runtime, ...rest } = V0;
  expect(record).toEqual({ version: 1, ...rest, state: "RUNNING", layers: [LAYER_A, LAYER_B] });
  // Without a spec (a container without an image) there is nothing to keep.
  expect(parseCheckpoint(JSON.stringify({ ...V0, image: undefined, imageRef: undefined }), "x").layers).toBeUndefined();
});

test("a torn, wrongly shaped or newer checkpoint is refused with the reason, never half-used", () => {
  const bad: Array<[string, RegExp]> = [
    ['{"id":{"value":"a"},"sand', /not JSON/],
    [JSON.stringify({ ...V0, launchedAt: "yesterday" }), /launchedAt/],
    [JSON.stringify({ ...V0, id: { value: "" } }), /id\.value/],
    [JSON.stringify({ version: 1, ...V0, state: "SLEEPING" }), /state/],
    [JSON.stringify({ version: 1, ...V0, state: "RUNNING", pid: -3 }), /pid/],
    [JSON.stringify({ version: 7, ...V0 }), /version 7 is not one this ucr reads/],
  ];
  for (const [text, why] of bad) {
    expect(() => parseCheckpoint(text, "/r/containers/a/container.json")).toThrow(CheckpointError);
    expect(() => parseCheckpoint(text, "/r/containers/a/container.json")).toThrow(why);
  }
  expect(readCheckpoint(join(work, "no-such-dir"))).toBeUndefined();
});
