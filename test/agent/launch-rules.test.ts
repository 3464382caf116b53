// The launch's field rules as pure functions: every field Mesos defines for LAUNCH_CONTAINER
// (walked from the protobuf descriptors of agent.proto and mesos.proto) has a fate in
// launch-fields.ts, and every refusal there is what checkLaunch answers, with its status and
// a message naming the field.
import { describe, expect, test } from "bun:test";
import type { DescMessage } from "@bufbuild/protobuf";
import { parseCall, type LaunchContainer } from "../../src/mesos/calls.ts";
import { STATUS_OF_KIND } from "../../src/api/status.ts";
import { UcrError } from "../../src/errors.ts";
import { LAUNCH_FIELDS, fateOf } from "../../src/agent/launch-fields.ts";
import { RLIM_INFINITY, checkLaunch, resolveSecretEnvironment, rlimitsOf, type FieldFlags } from "../../src/agent/launch-rules.ts";
import { Call_LaunchContainerSchema } from "../../src/mesos/gen/mesos/v1/agent/agent_pb.ts";

/** Every (message, field) a LAUNCH_CONTAINER can carry. */
function allFields(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const seen = new Set<string>();
  const walk = (m: DescMessage) => {
    if (seen.has(m.typeName)) return;
    seen.add(m.typeName);
    for (const f of m.fields) {
      out.push([m.typeName, f.name]);
      const sub = (f as { message?: DescMessage }).message;
      if (sub) walk(sub);
    }
  };
  walk(Call_LaunchContainerSchema);
  return out;
}

const FLAGS: FieldFlags = {
  image_providers: ["docker", "appc"],
  isolation: ["filesystem/linux", "docker/runtime", "namespaces/pid", "namespaces/ipc", "posix/rlimits", "environment_secret"],
  disallow_sharing_agent_pid_namespace: false,
  disallow_sharing_agent_ipc_namespace: false,
  switch_user: true,
};

function call(body: Record<string, unknown>): LaunchContainer {
  const parsed = parseCall({ type: "LAUNCH_CONTAINER", launch_container: { container_id: { value: "c" }, ...body } });
  return parsed.payload as unknown as LaunchContainer;
}

/** The error checkLaunch throws for `body` (top-level unless `nested`), or undefined. */
function refusal(
  body: Record<string, unknown>,
  flags: FieldFlags = FLAGS,
  nested = false,
): { status: number; message: string } | undefined {
  const c = call(nested ? { ...body, container_id: { value: "k", parent: { value: "p" } } } : body);
  const parent = nested ? ({ key: "p", state: "RUNNING" } as never) : undefined;
  try {
    checkLaunch(c, parent, flags);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(UcrError);
    // The status the API answers it with (api/status.ts).
    return { status: STATUS_OF_KIND[(err as UcrError).kind], message: (err as UcrError).message };
  }
}

const image = { type: "DOCKER", docker: { name: "alpine" } };
const mesos = (extra: Record<string, unknown> = {}) => ({ container: { type: "MESOS", mesos: { image }, ...extra } });
const linux = (info: Record<string, unknown>) => mesos({ linux_info: info });
const volume = (v: Record<string, unknown>) => mesos({ volumes: [{ container_path: "/v", mode: "RW", ...v }] });
const resource = (r: Record<string, unknown>) => ({ resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 1 }, ...r }] });
const b64 = (s: string) => Buffer.from(s).toString("base64");

/** A request for each refused field, and what the answer must say. */
const REFUSED: Record<string, { body: Record<string, unknown>; status?: number; message: RegExp }> = {
  "mesos.v1.Resource.ranges": {
    body: resource({ ranges: { range: [{ begin: 1, end: 2 }] } }),
    message: /^resources\[0\]: 'cpus' is a scalar resource; 'ranges'/,
  },
  "mesos.v1.Resource.set": {
    body: resource({ set: { item: ["a"] } }),
    message: /^resources\[0\]: 'cpus' is a scalar resource; 'ranges' and 'set'/,
  },
  "mesos.v1.Resource.allocation_info": {
    body: resource({ allocation_info: { role: "r" } }),
    message: /^resources\[0\]\.allocation_info: only Mesos' master/,
  },
  "mesos.v1.Resource.reservation": { body: resource({ reservation: {} }), message: /^resources\[0\]: resource 'cpus' is reserved/ },
  "mesos.v1.Resource.reservations": { body: resource({ reservations: [{ type: "STATIC", role: "r" }] }), message: /is reserved/ },
  "mesos.v1.Resource.DiskInfo.persistence": {
    body: { resources: [{ name: "disk", type: "SCALAR", scalar: { value: 1 }, disk: { persistence: { id: "x" } } }] },
    message: /^resources\[0\]: resource 'disk' is a persistent volume/,
  },
  "mesos.v1.Resource.DiskInfo.volume": {
    body: { resources: [{ name: "disk", type: "SCALAR", scalar: { value: 1 }, disk: { volume: { container_path: "x", mode: "RW" } } }] },
    message: /^resources\[0\]\.disk: disk resources with a volume or a source/,
  },
  "mesos.v1.Resource.DiskInfo.source": {
    body: { resources: [{ name: "disk", type: "SCALAR", scalar: { value: 1 }, disk: { source: { type: "MOUNT" } } }] },
    message: /^resources\[0\]\.disk: disk resources with a volume or a source/,
  },
  "mesos.v1.Resource.revocable": { body: resource({ revocable: {} }), message: /is revocable/ },
  "mesos.v1.Resource.shared": { body: resource({ shared: {} }), message: /^resources\[0\]: resource 'cpus' is shared/ },
  "mesos.v1.Resource.provider_id": {
    body: resource({ provider_id: { value: "p" } }),
    message: /^resources\[0\]\.provider_id: resources of resource providers/,
  },
  "mesos.v1.ContainerInfo.docker": {
    body: mesos({ docker: { image: "alpine" } }),
    message: /^container\.docker: DockerInfo is for Mesos' Docker containerizer/,
  },
  "mesos.v1.Image.Docker.credential": {
    body: { container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "a", credential: { principal: "u" } } } } } },
    message: /^container\.mesos\.image\.docker\.credential: deprecated since Mesos 1\.3/,
  },
  "mesos.v1.Volume.Source.docker_volume": {
    body: volume({ source: { type: "DOCKER_VOLUME", docker_volume: { name: "v" } } }),
    message: /^container\.volumes\[0\]\.source: DOCKER_VOLUME volumes need Docker volume drivers/,
  },
  "mesos.v1.Volume.Source.secret": {
    body: volume({ source: { type: "SECRET", secret: { type: "VALUE", value: { data: b64("x") } } } }),
    message: /^container\.volumes\[0\]\.source: SECRET volumes need Mesos' volume\/secret isolator/,
  },
  "mesos.v1.Volume.Source.csi_volume": {
    body: volume({ source: { type: "CSI_VOLUME", csi_volume: { plugin_name: "p" } } }),
    message: /^container\.volumes\[0\]\.source: CSI_VOLUME volumes need Mesos' volume\/csi isolator/,
  },
};

describe("every field Mesos defines has a fate", () => {
  const fields = allFields();

  test("the descriptors reach every message of a launch (sanity of the walk)", () => {
    expect(fields.length).toBeGreaterThan(150);
    expect(fields).toContainEqual(["mesos.v1.LinuxInfo", "shm_size"]);
    expect(fields).toContainEqual(["mesos.v1.Volume.Source.HostPath", "mount_propagation"]);
  });

  test("each (message, field) is applied, refused, or inside a refused field", () => {
    const missing = fields.filter(([t, f]) => fateOf(t, f) === undefined).map(([t, f]) => `${t}.${f}`);
    expect(missing).toEqual([]);
  });

  test("a field said to be inside another names a field of the table", () => {
    for (const fate of Object.values(LAUNCH_FIELDS)) {
      if ("within" in fate) expect(LAUNCH_FIELDS[fate.within]).toBeDefined();
    }
  });

  test("the table names no field Mesos does not define", () => {
    const known = new Set(fields.map(([t, f]) => `${t}.${f}`));
    const types = new Set(fields.map(([t]) => t));
    const stale = Object.keys(LAUNCH_FIELDS).filter((k) => !known.has(k) && !(k.endsWith(".*") && types.has(k.slice(0, -2))));
    expect(stale).toEqual([]);
  });

  test("every refused field is refused by checkLaunch, with its status and a message naming it", () => {
    const refused = Object.entries(LAUNCH_FIELDS)
      .filter(([, f]) => "refused" in f)
      .map(([k]) => k);
    expect(refused.filter((k) => !REFUSED[k])).toEqual([]);
    for (const key of refused) {
      const sample = REFUSED[key]!;
      const err = refusal(sample.body);
      expect({ key, status: err?.status, message: err?.message }).toMatchObject({
        key,
        status: sample.status ?? 400,
        message: expect.stringMatching(sample.message),
      });
    }
  });
});

describe("refusals of fields that are applied in other forms", () => {
  test.each<[string, Record<string, unknown>, RegExp, { flags?: Partial<FieldFlags>; nested?: boolean; status?: number }?]>([
    [
      "resource gpus",
      { resources: [{ name: "gpus", type: "SCALAR", scalar: { value: 1 } }] },
      /^resources\[0\]: 'gpus': GPUs are not supported/,
    ],
    [
      "resource ports",
      { resources: [{ name: "ports", type: "RANGES", ranges: { range: [{ begin: 80, end: 80 }] } }] },
      /^resources\[0\]: 'ports': a standalone/,
    ],
    [
      "an unknown resource",
      { resources: [{ name: "bandwidth", type: "SCALAR", scalar: { value: 1 } }] },
      /'bandwidth' is not a resource ucr knows/,
    ],
    [
      "mem as RANGES",
      { resources: [{ name: "mem", type: "RANGES", ranges: { range: [] } }] },
      /^resources\[0\]\.type: 'mem' is a scalar resource, not RANGES/,
    ],
    ["a reserved role, nested too", { resources: [{ name: "cpus", type: "SCALAR", scalar: { value: 1 }, role: "web" }] }, /is reserved/],
    [
      "limits of disk",
      { limits: { disk: { value: 10 } } },
      /^limits\.disk: Only cpus and mem may be included in a task's resource limits$/,
    ],
    [
      "an UNKNOWN variable",
      { command: { value: "true", environment: { variables: [{ name: "A", type: "UNKNOWN" }] } } },
      /Environment variable of type 'UNKNOWN' is not allowed/,
    ],
    [
      "a VALUE variable with a secret",
      {
        command: { value: "true", environment: { variables: [{ name: "A", value: "x", secret: { type: "VALUE", value: { data: "" } } }] } },
      },
      /Environment variable 'A' of type 'VALUE' must not have a secret set/,
    ],
    [
      "a SECRET variable without environment_secret",
      {
        command: {
          value: "true",
          environment: { variables: [{ name: "A", type: "SECRET", secret: { type: "VALUE", value: { data: b64("s") } } }] },
        },
      },
      /^command\.environment\.variables\[0\]: needs the environment_secret isolator/,
      { flags: { isolation: [] } },
    ],
    [
      "a SECRET variable by reference",
      {
        command: {
          value: "true",
          environment: { variables: [{ name: "A", type: "SECRET", secret: { type: "REFERENCE", reference: { name: "db" } } }] },
        },
      },
      /^command\.environment\.variables\[0\]\.secret: secret 'db' is a reference, which needs a secret resolver/,
    ],
    [
      "a docker.config by reference",
      {
        container: {
          type: "MESOS",
          mesos: { image: { type: "DOCKER", docker: { name: "a", config: { type: "REFERENCE", reference: { name: "r" } } } } },
        },
      },
      /^container\.mesos\.image\.docker\.config: secret 'r' is a reference/,
    ],
    [
      "a docker.config that is not a config file",
      {
        container: {
          type: "MESOS",
          mesos: { image: { type: "DOCKER", docker: { name: "a", config: { type: "VALUE", value: { data: b64("[1]") } } } } },
        },
      },
      /^container\.mesos\.image\.docker\.config: the secret is not a Docker config file/,
    ],
    [
      "Appc cached: false",
      { container: { type: "MESOS", mesos: { image: { type: "APPC", appc: { name: "a" }, cached: false } } } },
      /^container\.mesos\.image\.cached: false is not implemented for Appc images/,
    ],
    [
      "a volume with host_path and source",
      volume({ host_path: "/tmp", source: { type: "HOST_PATH", host_path: { path: "/tmp" } } }),
      /Only one of them should be set: 'host_path', 'image' and 'source'/,
    ],
    ["a volume with nothing", volume({}), /Only one of them should be set/],
    ["HOST_PATH without host_path", volume({ source: { type: "HOST_PATH" } }), /'source\.host_path' is not set for HOST_PATH volume/],
    ["an UNKNOWN source", volume({ source: {} }), /^container\.volumes\[0\]\.source: 'source\.type' is unknown$/],
    [
      "propagation UNKNOWN",
      volume({ source: { type: "HOST_PATH", host_path: { path: "/tmp", mount_propagation: { mode: "UNKNOWN" } } } }),
      /mount_propagation\.mode: must be/,
    ],
    [
      "a sandbox path without a type",
      volume({ source: { type: "SANDBOX_PATH", sandbox_path: { path: "x" } } }),
      /sandbox_path\.type: Unknown SANDBOX_PATH volume type/,
    ],
    [
      "a PARENT sandbox path, top-level",
      volume({ source: { type: "SANDBOX_PATH", sandbox_path: { type: "PARENT", path: "x" } } }),
      /PARENT sandbox path needs a nested container/,
    ],
    [
      "share_pid_namespace without namespaces/pid",
      linux({ share_pid_namespace: true }),
      /^container\.linux_info\.share_pid_namespace: needs the namespaces\/pid isolator/,
      { flags: { isolation: [] } },
    ],
    [
      "the agent's PID namespace when disallowed",
      linux({ share_pid_namespace: true }),
      /^container\.linux_info\.share_pid_namespace: Sharing agent pid namespace with top-level container is not allowed$/,
      { flags: { disallow_sharing_agent_pid_namespace: true } },
    ],
    [
      "ipc_mode without namespaces/ipc",
      linux({ ipc_mode: "PRIVATE" }),
      /^container\.linux_info\.ipc_mode: needs the namespaces\/ipc isolator/,
      { flags: { isolation: [] } },
    ],
    ["shm_size without PRIVATE", linux({ shm_size: 64 }), /Only support specifying the size of \/dev\/shm when the IPC mode is `PRIVATE`/],
    ["ipc_mode UNKNOWN", linux({ ipc_mode: "UNKNOWN" }), /^container\.linux_info\.ipc_mode: Unknown IPC mode$/],
    [
      "the agent's IPC namespace when disallowed",
      linux({ ipc_mode: "SHARE_PARENT" }),
      /Sharing agent IPC namespace with top-level container is not allowed/,
      { flags: { disallow_sharing_agent_ipc_namespace: true } },
    ],
    [
      "PRIVATE for a nested container without an image",
      { container: { type: "MESOS", linux_info: { ipc_mode: "PRIVATE" } } },
      /PRIVATE needs a \/dev\/shm of the container's own/,
      { nested: true },
    ],
    [
      "rlimits without posix/rlimits",
      mesos({ rlimit_info: { rlimits: [{ type: "RLMT_CORE" }] } }),
      /^container\.rlimit_info: needs the posix\/rlimits isolator/,
      { flags: { isolation: [] } },
    ],
    [
      "an UNKNOWN rlimit",
      mesos({ rlimit_info: { rlimits: [{ type: "UNKNOWN" }] } }),
      /^container\.rlimit_info\.rlimits\[0\]: Unknown rlimit type$/,
    ],
    ["an rlimit with soft only", mesos({ rlimit_info: { rlimits: [{ type: "RLMT_NOFILE", soft: 10 }] } }), /Invalid rlimit values/],
    [
      "an rlimit with soft above hard",
      mesos({ rlimit_info: { rlimits: [{ type: "RLMT_NOFILE", soft: 10, hard: 5 }] } }),
      /the soft limit 10 is above the hard limit 5/,
    ],
  ])("%s", (_, body, message, opts = {}) => {
    const err = refusal(body, { ...FLAGS, ...opts.flags }, opts.nested ?? false);
    expect({ status: err?.status, message: err?.message }).toMatchObject({
      status: opts.status ?? 400,
      message: expect.stringMatching(message),
    });
  });

  test("what passes: the same fields in forms ucr applies", () => {
    expect(refusal(linux({ share_pid_namespace: true, ipc_mode: "PRIVATE", shm_size: 16 }))).toBeUndefined();
    expect(refusal(linux({ ipc_mode: "SHARE_PARENT" }))).toBeUndefined();
    expect(refusal({ container: { type: "MESOS", linux_info: { ipc_mode: "SHARE_PARENT" } } }, FLAGS, true)).toBeUndefined();
    expect(refusal(volume({ source: { type: "SANDBOX_PATH", sandbox_path: { type: "PARENT", path: "x" } } }), FLAGS, true)).toBeUndefined();
    expect(
      refusal(volume({ source: { type: "HOST_PATH", host_path: { path: "/tmp", mount_propagation: { mode: "BIDIRECTIONAL" } } } })),
    ).toBeUndefined();
    expect(refusal({ ...resource({ role: "*" }), limits: { cpus: { value: 2 }, mem: { value: 64 } } })).toBeUndefined();
    expect(refusal({ command: { value: "true", uris: [{ value: "/x", cache: true }] } })).toBeUndefined();
    const config = { auths: { "reg.example:5000": { auth: b64("u:p") } } };
    expect(
      refusal({
        container: {
          type: "MESOS",
          mesos: {
            image: { type: "DOCKER", docker: { name: "a", config: { type: "VALUE", value: { data: b64(JSON.stringify(config)) } } } },
          },
        },
      }),
    ).toBeUndefined();
  });
});

describe("secrets and rlimits", () => {
  test("a VALUE secret becomes the variable's value; null bytes are refused as Mesos refuses them", () => {
    const c = call({
      command: {
        value: "true",
        environment: {
          variables: [
            { name: "A", type: "SECRET", secret: { type: "VALUE", value: { data: b64("s3cret") } } },
            { name: "B", value: "b" },
          ],
        },
      },
    });
    expect(resolveSecretEnvironment(c.command)?.environment?.variables).toEqual([
      { name: "A", type: "VALUE", value: "s3cret" },
      { name: "B", type: "VALUE", value: "b" },
    ]);
    const nul = call({
      command: {
        value: "true",
        environment: { variables: [{ name: "A", type: "SECRET", secret: { type: "VALUE", value: { data: b64("a\0b") } } }] },
      },
    });
    expect(() => resolveSecretEnvironment(nul.command)).toThrow(/specifies a secret containing null bytes/);
  });

  test("rlimits: kernel numbers, neither value is unlimited, 64-bit values exact, the last of a type wins", () => {
    const c = call(
      mesos({
        rlimit_info: {
          rlimits: [
            { type: "RLMT_CORE" },
            { type: "RLMT_NOFILE", soft: 1024, hard: "4096" },
            { type: "RLMT_NOFILE", soft: 10, hard: 20 },
            { type: "RLMT_FSIZE", soft: "18446744073709551614", hard: "18446744073709551615" },
          ],
        },
      }),
    );
    expect(rlimitsOf(c.container!.rlimit_info!)).toEqual([
      { type: "RLMT_CORE", resource: 4, soft: RLIM_INFINITY, hard: RLIM_INFINITY },
      { type: "RLMT_NOFILE", resource: 7, soft: 10n, hard: 20n },
      { type: "RLMT_FSIZE", resource: 1, soft: 18446744073709551614n, hard: RLIM_INFINITY },
    ]);
  });
});
