// The launch as data: its named steps in order, and Mesos' launch rules that need no I/O
// (nesting, cgroup sharing, standalone resources, image types, limits, hostnames), each
// refusal with its kind and message. No root needed.
import { expect, test } from "bun:test";
import type { Container } from "../../src/agent/container.ts";
import { LAUNCH_STEPS } from "../../src/agent/launch.ts";
import { checkLaunch, hostnameOf, limitsOf, ownsCgroups, type FieldFlags } from "../../src/agent/launch-rules.ts";
import { UcrError } from "../../src/errors.ts";
import { LaunchContainerSchema, type LaunchContainer } from "../../src/mesos/calls.ts";
import * as v from "valibot";

/** An agent with Docker images and the filesystem isolators. */
const DOCKER: FieldFlags = {
  image_providers: ["docker"],
  isolation: ["filesystem/linux", "docker/runtime"],
  disallow_sharing_agent_pid_namespace: false,
  disallow_sharing_agent_ipc_namespace: false,
  switch_user: true,
};

/** A LAUNCH_CONTAINER payload as the API parses it (defaults applied). */
function launch(body: Record<string, unknown>): LaunchContainer {
  return v.parse(LaunchContainerSchema, body);
}

function parent(state: Container["state"]): Container {
  const base = { id: { value: "p" }, key: "p", sandbox: "/w/p", runtime: "/r/p", leases: [], launchedAt: 0, exited: Promise.resolve() };
  return state === "RUNNING" ? { ...base, state, pid: 1 } : state === "EXITED" ? { ...base, state } : { ...base, state };
}

/** What checkLaunch throws (kind and message), or "ok". */
function refusal(call: LaunchContainer, p?: Container, flags: FieldFlags = DOCKER): string {
  try {
    checkLaunch(call, p, flags);
    return "ok";
  } catch (err) {
    if (!(err instanceof UcrError)) throw err;
    return `${err.kind}: ${err.message}`;
  }
}

test("the launch is these steps, in this order", () => {
  expect(LAUNCH_STEPS.map((s) => `${s.stage}: ${s.name}`)).toEqual([
    "provisioning: decide confinement",
    "provisioning: make dirs",
    "provisioning: start network",
    "provisioning: provision rootfs",
    "provisioning: volumes",
    "preparing: command",
    "preparing: cgroups",
    "preparing: namespaces and rlimits",
    "fetching: fetch URIs",
    "fetching: join network",
    "fetching: write spec",
    "launching: start",
  ]);
});

test("nesting: a parent must exist and run; resources only down to its direct children, with their own cgroups", () => {
  const nested = (value: string, extra: Record<string, unknown> = {}) =>
    launch({ container_id: { value, parent: { value: "p" } }, ...extra });
  expect(refusal(nested("c"))).toBe("invalid: Parent container p does not exist");
  expect(refusal(nested("c"), parent("PROVISIONING"))).toBe("invalid: Parent container p is not running");
  expect(refusal(nested("c"), parent("RUNNING"))).toBe("ok");
  const cpus = { resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 1 } }] };
  expect(refusal(nested("c", cpus), parent("RUNNING"))).toBe(
    "invalid: A nested container that shares its parent's cgroups cannot have its own resources or limits; set share_cgroups: false",
  );
  const own = { container: { type: "MESOS", linux_info: { share_cgroups: false } } };
  expect(refusal(nested("c", { ...cpus, ...own }), parent("RUNNING"))).toBe("ok");
  const deep = launch({ container_id: { value: "g", parent: { value: "c", parent: { value: "p" } } }, ...cpus });
  const child = { ...parent("RUNNING"), id: { value: "c", parent: { value: "p" } }, key: "p.c" } as Container;
  expect(refusal(deep, child)).toBe("invalid: Resources and limits can only be set on top-level containers and their direct children");
  expect(ownsCgroups(nested("c"))).toBe(false);
  expect(ownsCgroups(nested("c", own))).toBe(true);
  expect(ownsCgroups(launch({ container_id: { value: "top" } }))).toBe(true);
});

test("top level: no shared cgroups, no reserved, persistent or revocable resources", () => {
  const top = (extra: Record<string, unknown>) => launch({ container_id: { value: "t" }, ...extra });
  expect(refusal(top({ container: { type: "MESOS", linux_info: { share_cgroups: true } } }))).toBe(
    "invalid: A top-level container cannot share cgroups: it has no parent",
  );
  const scalar = { type: "SCALAR", scalar: { value: 1 } };
  expect(refusal(top({ resources: [{ name: "cpus", ...scalar, role: "web" }] }))).toBe(
    "invalid: resources[0]: resource 'cpus' is reserved; standalone containers cannot use reserved resources",
  );
  expect(refusal(top({ resources: [{ name: "disk", ...scalar, disk: { persistence: { id: "v" } } }] }))).toBe(
    "invalid: resources[0]: resource 'disk' is a persistent volume, which standalone containers cannot use",
  );
  expect(refusal(top({ resources: [{ name: "mem", ...scalar, revocable: {} }] }))).toBe(
    "invalid: resources[0]: resource 'mem' is revocable, which standalone containers cannot use",
  );
  expect(refusal(top({ container: { type: "DOCKER" } }))).toBe("invalid: The provided ContainerInfo is not supported");
});

test("image types must be enabled by --image_providers", () => {
  const withImage = (image: Record<string, unknown>) =>
    launch({ container_id: { value: "t" }, container: { type: "MESOS", mesos: { image } } });
  const docker = withImage({ type: "DOCKER", docker: { name: "alpine" } });
  const appc = withImage({ type: "APPC", appc: { name: "x/y" } });
  expect(refusal(docker, undefined, { ...DOCKER, image_providers: undefined })).toMatch(
    /^invalid: Docker images are not enabled: start the agent with --image_providers=docker/,
  );
  expect(refusal(appc, undefined, DOCKER)).toMatch(/^invalid: Appc images are not enabled: start the agent with --image_providers=appc/);
  expect(refusal(docker)).toBe("ok");
});

test("limits: `limits` win over resources; mem and disk in bytes; infinite cpus left out", () => {
  const call = launch({
    container_id: { value: "t" },
    resources: [
      { name: "cpus", type: "SCALAR", scalar: { value: 2 } },
      { name: "mem", type: "SCALAR", scalar: { value: 128 } },
      { name: "disk", type: "SCALAR", scalar: { value: 10 } },
    ],
    limits: { mem: { value: 256 }, cpus: { value: "Infinity" } },
  });
  expect(limitsOf(call)).toEqual({ memBytes: 256 * 1048576, diskBytes: 10 * 1048576 });
  expect(limitsOf(launch({ container_id: { value: "t" } }))).toEqual({});
});

test("hostnames: the ID by default, ContainerInfo.hostname if it is one, never for a nested container", () => {
  const named = (hostname?: string) =>
    launch({ container_id: { value: "x".repeat(70) }, ...(hostname !== undefined ? { container: { type: "MESOS", hostname } } : {}) });
  expect(hostnameOf(named(), false)).toBe("x".repeat(63));
  expect(hostnameOf(named("web-1.example"), false)).toBe("web-1.example");
  const bad = (hostname: string, nested: boolean) => {
    try {
      return hostnameOf(named(hostname), nested);
    } catch (err) {
      return `${(err as UcrError).kind}: ${(err as Error).message}`;
    }
  };
  expect(bad("-web", false)).toBe(
    "invalid: container.hostname: '-web' is not a hostname (letters, digits, '-' and '.', at most 64 characters)",
  );
  expect(bad("web", true)).toBe("invalid: container.hostname: a nested container shares its parent's UTS namespace and hostname");
});
