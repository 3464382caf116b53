// Flag loading: names and aliases, --name=value and --name value, MESOS_/UCR_ environment,
// file:// and path values for JSON flags, validation messages that name the flag, and the
// binary refusing to start on a bad value.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlagError, loadFlags } from "../../src/config/flags.ts";
import { runUcr, startAgent, tempDir } from "../helpers/agent.ts";

const dir = tempDir("ucr-flags-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const shown = (argv: string[], env: Record<string, string> = {}) =>
  Object.fromEntries(loadFlags(argv, env).shown.map((f) => [f.name, f.value]));

function loadError(argv: string[], env: Record<string, string> = {}): string {
  try {
    loadFlags(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(FlagError);
    return (err as Error).message;
  }
  throw new Error(`flags ${argv.join(" ")} were accepted`);
}

describe("sources", () => {
  test("defaults match the reference, with work_dir /var/lib/ucr and the store under it", () => {
    const f = loadFlags([], {}).values;
    expect(f.ip).toBe("127.0.0.1");
    expect(f.port).toBe(5051);
    expect(f.work_dir).toBe("/var/lib/ucr");
    expect(f.docker_store_dir).toBe("/var/lib/ucr/store/docker");
    expect(f.docker_registry).toEqual({ kind: "url", url: new URL("https://registry-1.docker.io") });
    expect(f.isolation).toEqual(["posix/cpu", "posix/mem"]);
    expect(f.sandbox_directory).toBe("/mnt/mesos/sandbox");
    expect(f.switch_user).toBe(true);
    expect(f.docker_ignore_runtime).toBe(false);
    expect(f.http_heartbeat_interval).toBe(30e9);
    expect(f.appc_simple_discovery_uri_prefix).toBe("http://");
    expect(f.appc_store_dir).toBe("/tmp/mesos/store/appc");
    expect(["/var/run/mesos", "/tmp/mesos/runtime"]).toContain(f.runtime_dir);
    expect(f.image_providers).toBeUndefined();
    expect(f.image_provisioner_backend).toBeUndefined();
  });

  test("--name=value, --name value, --no-name, and dashes for underscores", () => {
    const f = loadFlags(["--port", "6000", "--work_dir=/w", "--no-switch_user", "--docker-ignore-runtime"], {}).values;
    expect(f.port).toBe(6000);
    expect(f.work_dir).toBe("/w");
    expect(f.docker_store_dir).toBe("/w/store/docker");
    expect(f.switch_user).toBe(false);
    expect(f.docker_ignore_runtime).toBe(true);
    expect(loadFlags(["--switch_user", "false"], {}).values.switch_user).toBe(false);
  });

  test("MESOS_ and UCR_ environment variables; UCR_ wins; the command line wins over both", () => {
    expect(loadFlags([], { MESOS_PORT: "7000" }).values.port).toBe(7000);
    expect(loadFlags([], { MESOS_PORT: "7000", UCR_PORT: "7001" }).values.port).toBe(7001);
    expect(loadFlags(["--port=7002"], { MESOS_PORT: "7000", UCR_PORT: "7001" }).values.port).toBe(7002);
    const loaded = loadFlags([], { MESOS_WORK_DIR: "/srv/ucr", MESOS_UNRELATED_THING: "x" });
    expect(loaded.values.work_dir).toBe("/srv/ucr");
    expect(loaded.sources.get("work_dir")).toBe("MESOS_WORK_DIR");
  });

  test("the seed's --provisioner_image_backend is an alias of --image_provisioner_backend", () => {
    expect(loadFlags(["--provisioner_image_backend=copy"], {}).values.image_provisioner_backend).toBe("copy");
    expect(loadFlags([], { MESOS_PROVISIONER_IMAGE_BACKEND: "bind" }).values.image_provisioner_backend).toBe("bind");
    expect(loadError(["--provisioner_image_backend=copy", "--image_provisioner_backend=overlay"])).toMatch(
      /'--image_provisioner_backend' is given more than once/,
    );
  });

  test("JSON flags take inline JSON, file:///path and /path", () => {
    const gc = { image_disk_headroom: 0.2, image_disk_watch_interval: { nanoseconds: 60_000_000_000 }, excluded_images: [] };
    const file = join(dir, "gc.json");
    writeFileSync(file, JSON.stringify(gc));
    for (const value of [JSON.stringify(gc), `file://${file}`, file]) {
      const f = loadFlags([`--image_gc_config=${value}`], {}).values;
      expect(f.image_gc_config).toEqual(gc);
    }
    const partial = loadFlags(['--image_gc_config={"image_disk_headroom":0.3}'], {}).values.image_gc_config;
    expect(partial?.image_disk_watch_interval.nanoseconds).toBe(300e9); // default 5 minutes
  });

  test("docker_config from a file: accepted, and GET_FLAGS masks the credentials", () => {
    const cfg = { auths: { "127.0.0.1:5000": { auth: Buffer.from("bob:hunter2").toString("base64") } } };
    const file = join(dir, "config.json");
    writeFileSync(file, JSON.stringify(cfg));
    const loaded = loadFlags([`--docker_config=file://${file}`], {});
    expect(loaded.values.docker_config).toEqual(cfg);
    const text = shown([`--docker_config=file://${file}`]).docker_config!;
    expect(text).not.toContain(cfg.auths["127.0.0.1:5000"].auth);
    expect(JSON.parse(text)).toEqual({ auths: { "127.0.0.1:5000": { auth: "********" } } });
    const legacy = { "https://index.docker.io/v1/": { auth: Buffer.from("a:b").toString("base64"), email: "a@b" } };
    expect(loadFlags([`--docker_config=${JSON.stringify(legacy)}`], {}).values.docker_config).toEqual(legacy);
  });

  test("http_credentials inline or from a file, secrets masked in GET_FLAGS", () => {
    const creds = { credentials: [{ principal: "ops", secret: "s3cret" }] };
    const file = join(dir, "creds.json");
    writeFileSync(file, JSON.stringify(creds));
    const f = loadFlags(["--authenticate_http_readwrite", `--http_credentials=file://${file}`], {});
    expect(f.values.http_credentials).toEqual(creds);
    expect(shown(["--authenticate_http_readwrite", `--http_credentials=${JSON.stringify(creds)}`]).http_credentials).toBe(
      '{"credentials":[{"principal":"ops","secret":"********"}]}',
    );
  });

  test("durations are shown the way Mesos prints them", () => {
    expect(shown(["--http_heartbeat_interval=60secs"]).http_heartbeat_interval).toBe("1mins");
    expect(shown(["--http_heartbeat_interval=1500ms"]).http_heartbeat_interval).toBe("1.5secs");
    expect(shown(["--http_heartbeat_interval=2weeks"]).http_heartbeat_interval).toBe("2weeks");
  });

  test("--docker_registry: URL, bare host, or a directory", () => {
    expect(loadFlags(["--docker_registry=/srv/images"], {}).values.docker_registry).toEqual({ kind: "directory", path: "/srv/images" });
    expect(loadFlags(["--docker_registry=http://127.0.0.1:5000"], {}).values.docker_registry).toEqual({
      kind: "url",
      url: new URL("http://127.0.0.1:5000"),
    });
    expect(loadFlags(["--docker_registry=reg.example:5000"], {}).values.docker_registry).toEqual({
      kind: "url",
      url: new URL("https://reg.example:5000"),
    });
  });
});

describe("errors name the flag and say why", () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [["--bogus=1"], {}, /unknown flag '--bogus'/],
    [["--port=70000"], {}, /flag '--port': '70000' is not a port number/],
    [["--port=http"], {}, /flag '--port': 'http' is not a port number/],
    [[], { MESOS_PORT: "-1" }, /flag '--port': '-1' is not a port number/],
    [["--ip=localhost"], {}, /flag '--ip': 'localhost' is not an IPv4 or IPv6 address/],
    [["--switch_user=maybe"], {}, /flag '--switch_user': 'maybe' is not a boolean/],
    [["--http_heartbeat_interval=30"], {}, /flag '--http_heartbeat_interval': '30' has unknown unit ''/],
    [["--http_heartbeat_interval=0secs"], {}, /must be longer than zero/],
    [["--image_providers=docker,oci", "--isolation=filesystem/linux,docker/runtime"], {}, /unknown image provider 'oci'/],
    [["--isolation=posix/cpu,magic/box"], {}, /flag '--isolation': unknown isolator 'magic\/box'/],
    [["--image_provisioner_backend=zfs"], {}, /flag '--image_provisioner_backend': 'zfs' is not a backend/],
    [["--logging_level=DEBUG"], {}, /flag '--logging_level': 'DEBUG' is not a logging level/],
    [["--sandbox_directory=sandbox"], {}, /must be an absolute path inside the container/],
    [["--docker_registry=ftp://x"], {}, /scheme ftp/],
    [["--docker_registry=hdfs://nn:9000/images"], {}, /hdfs:\/\/ archive stores are not supported/],
    [["--appc_simple_discovery_uri_prefix=file:///x"], {}, /must start with http:\/\/, https:\/\/ or \//],
    [["--image_gc_config={bad"], {}, /flag '--image_gc_config': is not valid JSON/],
    [['--image_gc_config={"image_disk_headroom":1.5}'], {}, /flag '--image_gc_config' at image_disk_headroom: must be from 0.0 to 1.0/],
    [
      ['--image_gc_config={"image_disk_watch_interval":{"nanoseconds":"soon"}}'],
      {},
      /flag '--image_gc_config' at image_disk_watch_interval.nanoseconds/,
    ],
    [
      ['--image_gc_config={"excluded_images":[{"type":"DOCKER"}]}'],
      {},
      /flag '--image_gc_config' at excluded_images.0.docker: an image of type DOCKER needs 'docker' set/,
    ],
    [["--docker_config=file:///nonexistent/config.json"], {}, /flag '--docker_config': cannot read \/nonexistent\/config.json: ENOENT/],
    [
      ['--docker_config={"auths":{"h":{"auth":"bm9jb2xvbg=="}}}'],
      {},
      /flag '--docker_config' at auths.h.auth: 'auth' must be base64 of user:password/,
    ],
    [
      ['--http_credentials={"credentials":[]}', "--authenticate_http_readwrite"],
      {},
      /flag '--http_credentials' at credentials: must list at least one credential/,
    ],
    [["--authenticate_http_readwrite"], {}, /'--authenticate_http_readwrite' is set but '--http_credentials' is not/],
    [["--image_providers=docker"], {}, /needs the filesystem\/linux isolator/],
    [["--image_providers=docker", "--isolation=filesystem/linux"], {}, /needs the docker\/runtime isolator/],
    [["--port"], {}, /flag '--port' needs a value/],
    [["--port=1", "--port=2"], {}, /flag '--port' is given more than once/],
    [["positional"], {}, /unexpected argument 'positional'/],
  ];
  for (const [argv, env, pattern] of cases) {
    test(`${[...argv, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(" ") || "(nothing)"}`, () => {
      expect(loadError(argv, env)).toMatch(pattern);
    });
  }
});

describe("the binary", () => {
  test("a bad flag value stops start-up: exit 2 and a message naming the flag", async () => {
    const r = await runUcr(["agent", "--port=99999", `--work_dir=${dir}/w1`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ucr agent: flag '--port': '99999' is not a port number/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("a bad value from the environment stops start-up too", async () => {
    const r = await runUcr(["agent", `--work_dir=${dir}/w2`], { MESOS_IMAGE_PROVISIONER_BACKEND: "btrfs" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/flag '--image_provisioner_backend': 'btrfs' is not a backend/);
  });

  test("an unknown flag: exit 2 with the flag and the usage", async () => {
    const r = await runUcr(["agent", "--frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown flag '--frobnicate' \(usage: ucr agent/);
  });

  test("a work_dir that cannot be created stops start-up with exit 1 naming the flag", async () => {
    const file = join(dir, "not-a-dir");
    writeFileSync(file, "");
    const r = await runUcr(["agent", "--port=0", `--work_dir=${file}/sub`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flag '--work_dir': cannot create .*not-a-dir\/sub: ENOTDIR/);
  });

  test("environment and file:// flags reach GET_FLAGS of a running agent", async () => {
    const gcFile = join(dir, "gc-agent.json");
    writeFileSync(gcFile, '{"image_disk_headroom": 0.25}');
    const agent = await startAgent({
      args: [`--image_gc_config=file://${gcFile}`],
      env: { MESOS_SANDBOX_DIRECTORY: "/sandbox", UCR_LOGGING_LEVEL: "warning" },
    });
    try {
      const res = await agent.call({ type: "GET_FLAGS" });
      const flags = ((await res.json()) as { get_flags: { flags: Array<{ name: string; value: string }> } }).get_flags.flags;
      const byName = Object.fromEntries(flags.map((f) => [f.name, f.value]));
      expect(byName.sandbox_directory).toBe("/sandbox");
      expect(byName.logging_level).toBe("WARNING");
      expect(JSON.parse(byName.image_gc_config!)).toEqual({ image_disk_headroom: 0.25 });
    } finally {
      expect(await agent.stop()).toBe(0);
    }
    // --logging_level=WARNING: the INFO request lines are not written.
    expect(agent.log()).not.toContain("POST /api/v1 GET_FLAGS");
  });
});
