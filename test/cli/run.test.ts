// `ucr run` as a podman/docker user types it, and the client commands' errors, against a
// real agent (containers need root).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseRunArgs } from "../../src/cli/client.ts";
import { type RunningAgent, UCR, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { runCommand } from "../helpers/command.ts";
import { BUSYBOX_CONFIG, DEFAULT_PATH, addImage, buildBusyboxImage, busyboxLayerTar, saveArchive } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-run-");
let agent: RunningAgent;
let at: string;

beforeAll(async () => {
  if (!isRoot) return;
  const images = join(work, "images");
  mkdirSync(images);
  buildBusyboxImage(join(work, "bb"), { tag: "1" });
  await saveArchive(join(work, "bb"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  // An image with an entrypoint, as most application images have.
  addImage(join(work, "ep"), {
    tag: "1",
    layers: [{ tar: busyboxLayerTar(), compression: "gzip", createdBy: "busybox" }],
    config: { ...BUSYBOX_CONFIG, Env: [DEFAULT_PATH], Entrypoint: ["/bin/echo", "entry"], Cmd: ["cmd"] },
  });
  await saveArchive(join(work, "ep"), join(images, "ep.tar"), "ep:latest", { srcTag: "1" });
  agent = await startAgent({
    args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
  });
  at = `--agent=127.0.0.1:${agent.port}`;
});
afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  rmSync(work, { recursive: true, force: true });
});

/** Starts `ucr run` in the background; `until(text)` resolves once its stdout has `text`. */
function background(args: string[]) {
  const proc = Bun.spawn([UCR, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let out = "";
  let waiting: { text: string; resolve: () => void } | undefined;
  const pump = (async () => {
    for await (const chunk of proc.stdout) {
      out += new TextDecoder().decode(chunk);
      if (waiting && out.includes(waiting.text)) waiting.resolve();
    }
  })();
  return {
    proc,
    until: (text: string) => (out.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => (waiting = { text, resolve }))),
    async done() {
      const code = await proc.exited;
      await pump;
      return { code, stdout: out, stderr: await new Response(proc.stderr).text() };
    },
  };
}

async function running(id: string): Promise<boolean> {
  const res = await agent.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
  const body = (await res.json()) as {
    get_containers: { containers: Array<{ container_id: { value: string }; container_status: { executor_pid?: number } }> };
  };
  return body.get_containers.containers.some((c) => c.container_id.value === id && c.container_status.executor_pid !== undefined);
}

const root = (name: string) => (isRoot ? name : `${name} (skipped: needs root for containers)`);

describe("docker's argument semantics", () => {
  test.skipIf(!isRoot)(root("ARGs go to the image's entrypoint; without one they are the command; --entrypoint replaces it"), async () => {
    const cases: Array<[string[], string]> = [
      [["ep", "a", "b"], "entry a b\n"],
      [["ep"], "entry cmd\n"],
      [["alpine", "echo", "hi"], "hi\n"],
      [["alpine", "--", "echo", "hi"], "hi\n"], // ucr's old form still works: the `--` is dropped
      [["--entrypoint", "/bin/echo", "ep", "x", "y"], "x y\n"],
      [["--entrypoint=/bin/echo", "alpine"], "\n"],
      // Options after the image belong to the container, as in docker.
      [["alpine", "sh", "-c", 'for a; do echo "<$a>"; done', "sh", "-e", "--name"], "<-e>\n<--name>\n"],
    ];
    for (const [args, stdout] of cases) {
      const r = await runUcr(["run", at, ...args]);
      expect({ args, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ args, code: 0, stdout, stderr: "" });
    }
  });

  test("the arguments are parsed as docker parses them", () => {
    const o = parseRunArgs(
      ["--name", "n", "-e", "A=1", "-e", "FROM_ENV", "-e", "UNSET", "-v", "./d:/data:ro", "-u", "nobody", "img", "--", "-x"],
      { FROM_ENV: "y" },
      "/srv",
    );
    expect(o).toMatchObject({
      id: "n",
      image: "img",
      args: ["-x"],
      env: [
        { name: "A", value: "1" },
        { name: "FROM_ENV", value: "y" },
      ],
      volumes: [{ host: "/srv/d", container: "/data", readonly: true }],
      user: "nobody",
      detach: false,
    });
    expect(parseRunArgs(["-d", "--keep", "--stop-timeout=2.5", "--cpus", "0.5", "--mem=64", "img"])).toMatchObject({
      detach: true,
      keep: true,
      stopTimeout: 2.5,
      resources: [
        { name: "cpus", value: 0.5 },
        { name: "mem", value: 64 },
      ],
      args: [],
    });
    expect(() => parseRunArgs(["-v", "data:/x", "img"])).toThrow(/named volumes are not supported/);
    expect(() => parseRunArgs(["-v", "/a:b", "img"])).toThrow(/container path must be absolute/);
    expect(() => parseRunArgs(["-v", "/a:/b:rx", "img"])).toThrow(/mode must be ro or rw/);
    expect(() => parseRunArgs(["--cpus", "lots", "img"])).toThrow(/--cpus needs a number of CPUs, got 'lots'/);
    expect(() => parseRunArgs(["--bogus", "img"])).toThrow(/unknown flag '--bogus'/);
    expect(() => parseRunArgs(["--name"])).toThrow(/--name needs a value/);
    expect(() => parseRunArgs([])).toThrow(/expected an image/);
  });

  test("usage mistakes exit 2 with one line", async () => {
    for (const args of [
      ["run"],
      ["run", "--bogus", "alpine"],
      ["run", "-v", "rel:/x", "alpine"],
      ["run", "--stop-timeout", "-1", "alpine"],
    ]) {
      const r = await runUcr(args);
      expect({ args, code: r.code, lines: r.stderr.trimEnd().split("\n").length }).toEqual({ args, code: 2, lines: 1 });
      expect(r.stderr).toStartWith("ucr run: ");
    }
  });
});

describe("options", () => {
  test.skipIf(!isRoot)(root("-e sets variables (-e K passes K from here), -v mounts read-only or read-write, --user"), async () => {
    const env = await runUcr(["run", at, "-e", "FOO=bar baz", "-e", "FROM_CLIENT", "alpine", "sh", "-c", "echo $FOO/$FROM_CLIENT"], {
      FROM_CLIENT: "yes",
    });
    expect(env.stdout).toBe("bar baz/yes\n");
    const dir = join(work, "vol");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "in.txt"), "from the host\n");
    const ro = await runUcr([
      "run",
      at,
      "-v",
      `${dir}:/data:ro`,
      "alpine",
      "sh",
      "-c",
      "cat /data/in.txt; touch /data/x 2>/dev/null || echo read-only",
    ]);
    expect(ro.stdout).toBe("from the host\nread-only\n");
    expect(existsSync(join(dir, "x"))).toBe(false);
    const rw = await runUcr(["run", at, "-v", `${dir}:/data`, "alpine", "sh", "-c", "echo written > /data/out.txt"]);
    expect(rw.code).toBe(0);
    expect(readFileSync(join(dir, "out.txt"), "utf8")).toBe("written\n");
    const user = await runUcr(["run", at, "--user", "nobody", "alpine", "id", "-u"]);
    expect(user.stdout).toBe("65534\n");
  });

  test.skipIf(!isRoot)(root("-d prints the ID and leaves the container running"), async () => {
    const r = await runUcr(["run", at, "-d", "--name", "detached", "alpine", "sleep", "60"]);
    expect(r).toEqual({ code: 0, stdout: "detached\n", stderr: "" });
    expect(await running("detached")).toBe(true);
    expect((await runUcr(["kill", at, "detached"])).code).toBe(0);
    const wait = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: "detached" } } });
    expect(await wait.json()).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
    expect((await runUcr(["rm", at, "detached"])).code).toBe(0);
  });
});

describe("output and signals", () => {
  test.skipIf(!isRoot)(root("output shows while the container still runs"), async () => {
    const run = background(["run", at, "--name", "streamer", "alpine", "sh", "-c", "echo first; sleep 60"]);
    await run.until("first\n");
    expect(await running("streamer")).toBe(true);
    expect((await runUcr(["kill", at, "streamer"])).code).toBe(0);
    const r = await run.done();
    expect(r).toEqual({ code: 137, stdout: "first\n", stderr: "" });
  });

  test.skipIf(!isRoot)(root("a reader that goes away (| head -1) neither crashes ucr run nor leaves the container"), async () => {
    const lines = "i=0; while [ $i -lt 30000 ]; do echo line$i; i=$((i+1)); done; echo end >&2";
    const pipeline = `${UCR} run ${at} --name piped alpine sh -c '${lines}' | head -1; echo "status=\${PIPESTATUS[0]}"`;
    const r = await runCommand(["bash", "-c", pipeline], { timeoutMs: 60_000 });
    expect(r).toEqual({ code: 0, stdout: "line0\nstatus=0\n", stderr: "end\n" });
    expect((await runUcr(["ps", at])).stdout).not.toContain("piped");
  });

  test.skipIf(!isRoot)(root("Ctrl-C sends SIGTERM: the workload can stop cleanly, and is removed"), async () => {
    const run = background([
      "run",
      at,
      "--name",
      "graceful",
      "alpine",
      "sh",
      "-c",
      'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done',
    ]);
    await run.until("ready\n");
    run.proc.kill("SIGINT");
    const r = await run.done();
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 3, stdout: "ready\ngot TERM\n" });
    const ps = await runUcr(["ps", at]);
    expect(ps.stdout).not.toContain("graceful");
  });

  test.skipIf(!isRoot)(root("a workload that ignores SIGTERM is killed after --stop-timeout; a second Ctrl-C kills at once"), async () => {
    const ignoring = 'trap "echo ignoring" TERM; echo ready; while :; do sleep 0.1; done';
    const late = background(["run", at, "--stop-timeout", "1", "alpine", "sh", "-c", ignoring]);
    await late.until("ready\n");
    late.proc.kill("SIGINT");
    const r1 = await late.done();
    expect({ code: r1.code, stdout: r1.stdout }).toEqual({ code: 137, stdout: "ready\nignoring\n" });

    // A grace period far longer than the test may take: only the second interrupt ends it.
    const twice = background(["run", at, "--stop-timeout", "3600", "alpine", "sh", "-c", ignoring]);
    await twice.until("ready\n");
    twice.proc.kill("SIGINT");
    await twice.until("ignoring\n");
    twice.proc.kill("SIGINT");
    const r2 = await twice.done();
    expect({ code: r2.code, stdout: r2.stdout }).toEqual({ code: 137, stdout: "ready\nignoring\n" });
  });
});

describe("images through the agent", () => {
  test.skipIf(!isRoot)(root("ucr images lists what the agent has; GET /images and POST /images/pull"), async () => {
    expect((await runUcr(["run", at, "alpine", "true"])).code).toBe(0);
    const r = await runUcr(["images", at]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^REFERENCE +DIGEST +SIZE +LAYERS +LAST USED$/);
    expect(lines).toContainEqual(
      expect.stringMatching(/^docker\.io\/library\/alpine:latest +[0-9a-f]{12} +[\d.]+ (KiB|MiB) +1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/),
    );
    const list = (await (await fetch(`${agent.url}/images`)).json()) as { images: Array<Record<string, unknown>> };
    expect(list.images.find((i) => i.reference === "docker.io/library/alpine:latest")).toMatchObject({
      config_digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      layers: 1,
      size_bytes: expect.any(Number),
    });
    const pulled = await fetch(`${agent.url}/images/pull`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"name":"ep"}',
    });
    expect(await pulled.json()).toMatchObject({
      reference: "docker.io/library/ep:latest",
      entrypoint: ["/bin/echo", "entry"],
      cmd: ["cmd"],
    });
    const missing = await fetch(`${agent.url}/images/pull`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"name":"nosuch"}',
    });
    expect(missing.status).toBe(400);
    expect(await missing.text()).toMatch(/^pull nosuch: .*nosuch/);
    const noName = await fetch(`${agent.url}/images/pull`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    expect({ status: noName.status, text: await noName.text() }).toEqual({
      status: 400,
      text: 'Expecting \'name\' to be the image to pull, e.g. {"name":"alpine"}',
    });
    expect((await fetch(`${agent.url}/images/pull`)).status).toBe(405);
    expect((await fetch(`${agent.url}/images`, { method: "DELETE" })).status).toBe(405);
  });
});

describe("errors are one line, never a stack trace", () => {
  const commands: string[][] = [["ps"], ["kill", "x"], ["rm", "x"], ["run", "alpine"], ["run", "alpine", "echo"], ["images"], ["prune"]];

  test("when no agent answers", async () => {
    for (const args of commands) {
      const r = await runUcr([...args, "--agent=127.0.0.1:1"]);
      expect({ args, code: r.code, lines: r.stderr.trimEnd().split("\n") }).toEqual({
        args,
        code: 1,
        lines: [
          expect.stringMatching(
            new RegExp(`^ucr ${args[0]}: cannot reach the agent at http://127\\.0\\.0\\.1:1 \\(.*\\); start it with 'ucr agent'`),
          ),
        ],
      });
    }
    const images = await runUcr(["images", "--agent=127.0.0.1:1"]);
    expect(images.stderr).toContain("or read a store without an agent: ucr images --work_dir=DIR");
  });

  test("when the agent refuses (401) or answers something that is not JSON", async () => {
    const creds = join(work, "creds.json");
    writeFileSync(creds, JSON.stringify({ credentials: [{ principal: "ops", secret: "s3cret" }] }));
    const secured = await startAgent({ args: ["--authenticate_http_readwrite", `--http_credentials=file://${creds}`] });
    try {
      for (const args of commands) {
        const r = await runUcr([...args, `--agent=127.0.0.1:${secured.port}`]);
        expect({ args, code: r.code, lines: r.stderr.trimEnd().split("\n") }).toEqual({
          args,
          code: 1,
          lines: [expect.stringMatching(new RegExp(`^ucr ${args[0]}: .*Authentication required \\(HTTP 401\\)$`))],
        });
      }
      const ok = await runUcr(["ps", `--agent=127.0.0.1:${secured.port}`, "--principal=ops"], { UCR_SECRET: "s3cret" });
      expect(ok.code).toBe(0);
    } finally {
      expect(await secured.stop()).toBe(0);
    }
    // Something on the port that is not an agent.
    const other = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("<html>hello</html>") });
    try {
      const r = await runUcr(["ps", `--agent=127.0.0.1:${other.port}`]);
      expect(r.code).toBe(1);
      const agentUrl = `http://127.0.0.1:${other.port}`;
      const garbage = "answered 200 with something that is not JSON: <html>hello</html>";
      expect(r.stderr).toBe(`ucr ps: GET_CONTAINERS: the agent at ${agentUrl} ${garbage}\n`);
    } finally {
      await other.stop(true);
    }
  });
});

describe("--agent and UCR_AGENT", () => {
  test("are in the help", async () => {
    const help = await runUcr(["help"]);
    expect(help.stdout).toContain("--agent HOST:PORT");
    expect(help.stdout).toContain("UCR_AGENT");
    const run = await runUcr(["run", "--help"]);
    expect(run.code).toBe(0);
    for (const flag of ["--entrypoint", "-e, --env", "-v, --volume", "--user", "--detach", "--stop-timeout", "--agent", "UCR_AGENT"]) {
      expect(run.stdout).toContain(flag);
    }
  });

  test("UCR_AGENT names the agent when --agent is not given", async () => {
    const plain = await startAgent();
    try {
      const r = await runUcr(["ps"], { UCR_AGENT: `127.0.0.1:${plain.port}` });
      expect(r).toEqual({ code: 0, stdout: "CONTAINER  STATUS  CPUS  MEM LIMIT  MEM USED\n", stderr: "" });
    } finally {
      expect(await plain.stop()).toBe(0);
    }
  });
});
