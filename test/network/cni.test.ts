// Container networks through CNI for real: the built agent, Debian's plugins (bridge,
// host-local, portmap) on bridges this file names and removes, IPAM leases and configs in
// its temp dir, real namespaces and traffic on this machine only. What the plugins change
// on the host beyond that (ip_forward, portmap's shared chains) is put back at the end.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MNT_DETACH, umount2 } from "../../src/ffi/libc.ts";
import { type RunningAgent, UCR, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import {
  bridgeName,
  cniUnavailable,
  deleteLink,
  freeSubnet,
  hostNetState,
  hostportChainsExist,
  ipForward,
  leases,
  netnsMountsUnder,
  portsOf,
  removeHostportChains,
  setIpForward,
} from "../helpers/cni.ts";
import { BUSYBOX_CONFIG, addImage, saveArchive, stageBusybox, tarDir } from "../helpers/images.ts";

const unavailable = cniUnavailable();
if (unavailable) console.warn(`test/network/cni.test.ts skipped: ${unavailable}`);

const work = tempDir("ucr-cni-");
const images = join(work, "images");
const confDir = join(work, "cni-conf");
const ipamDir = join(work, "ipam");
const PORTS = { begin: 31600, end: 31699 };

interface TestNet {
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
}
let net: TestNet; // conflist: bridge + host-local + portmap, cniVersion 1.0.0
let legacy: TestNet; // Mesos-style single .conf, no cniVersion (legacy 0.1.0 results), DNS from host-local's resolvConf
let before: { ipForward: string; hostportChains: boolean } | undefined;
const agents: Array<{ agent: RunningAgent; dir: string }> = [];
/** The sandbox of container `id` of agent `a` (its --work_dir is ours, not the helper's). */
const sandboxOf = (a: RunningAgent, id: string) => join(agents.find((x) => x.agent === a)?.dir ?? a.workDir, "containers", id);
let agent: RunningAgent;

const call = async (a: RunningAgent, body: unknown) => {
  const res = await a.call(body);
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
};
const ref = (id: string) => ({ container_id: { value: id } });
const launchBody = (id: string, script: string, container: Record<string, unknown> = {}) => ({
  type: "LAUNCH_CONTAINER",
  launch_container: {
    container_id: { value: id },
    command: { value: script },
    container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "bb" } } }, ...container },
  },
});
const on = (name: string, extra: Record<string, unknown> = {}) => ({ network_infos: [{ name, ...extra }] });

interface NetStatus {
  name: string;
  labels?: unknown;
  ip_addresses: Array<{ protocol: string; ip_address: string }>;
  port_mappings?: Array<{ host_port: number; container_port: number; protocol: string }>;
}
async function networkInfos(a: RunningAgent, id: string, nested = false): Promise<NetStatus[] | undefined> {
  const list = await call(a, { type: "GET_CONTAINERS", get_containers: { show_standalone: true, show_nested: nested } });
  const all = (
    list.json!.get_containers as {
      containers: Array<{ container_id: { value: string }; container_status: { network_infos?: NetStatus[] } }>;
    }
  ).containers;
  return all.find((c) => c.container_id.value === id)?.container_status.network_infos;
}
async function ipOf(a: RunningAgent, id: string): Promise<string> {
  return (await networkInfos(a, id))![0]!.ip_addresses[0]!.ip_address;
}
async function finish(a: RunningAgent, id: string): Promise<{ status?: number; stdout: string; stderr: string }> {
  await call(a, { type: "KILL_CONTAINER", kill_container: ref(id) });
  const wait = await call(a, { type: "WAIT_CONTAINER", wait_container: ref(id) });
  const sandbox = sandboxOf(a, id);
  const out = { status: (wait.json?.wait_container as { exit_status?: number } | undefined)?.exit_status, stdout: "", stderr: "" };
  try {
    out.stdout = readFileSync(join(sandbox, "stdout"), "utf8");
    out.stderr = readFileSync(join(sandbox, "stderr"), "utf8");
  } catch {
    // removed already
  }
  return out;
}
/** Launch, wait for the exit, read the output, remove. */
async function run(a: RunningAgent, id: string, script: string, container: Record<string, unknown> = {}) {
  const launch = await call(a, launchBody(id, script, container));
  expect({ status: launch.status, text: launch.text }).toEqual({ status: 200, text: "" });
  const wait = await call(a, { type: "WAIT_CONTAINER", wait_container: ref(id) });
  const sandbox = sandboxOf(a, id);
  const out = {
    status: (wait.json!.wait_container as { exit_status: number }).exit_status,
    stdout: readFileSync(join(sandbox, "stdout"), "utf8"),
    stderr: readFileSync(join(sandbox, "stderr"), "utf8"),
  };
  expect((await call(a, { type: "REMOVE_CONTAINER", remove_container: ref(id) })).status).toBe(200);
  return out;
}
async function removeAll(a: RunningAgent): Promise<void> {
  const list = await call(a, { type: "GET_CONTAINERS", get_containers: { show_standalone: true } });
  for (const c of (list.json?.get_containers as { containers: Array<{ container_id: { value: string } }> } | undefined)?.containers ?? []) {
    await finish(a, c.container_id.value);
    const r = await call(a, { type: "REMOVE_CONTAINER", remove_container: ref(c.container_id.value) });
    expect({ id: c.container_id.value, status: r.status, text: r.text }).toEqual({ id: c.container_id.value, status: 200, text: "" });
  }
}

/** An agent with CNI networks, on its own work and runtime dirs (kept across restarts). */
async function startNetAgent(dir: string, extra: string[] = []): Promise<RunningAgent> {
  const a = await startAgent({
    args: [
      `--work_dir=${dir}`,
      `--runtime_dir=${join(dir, "run")}`,
      `--docker_registry=${images}`,
      "--image_providers=docker",
      "--isolation=filesystem/linux,docker/runtime,network/cni",
      `--network_cni_config_dir=${confDir}`,
      `--resources=ports:[${PORTS.begin}-${PORTS.end}]`,
      ...extra,
    ],
    keepWorkDir: true,
  });
  agents.push({ agent: a, dir });
  return a;
}

/** What the network leaves on the host: veths on its bridge, leases, held namespaces. */
async function leftovers(n: TestNet, runtimeDir: string) {
  return { veths: await portsOf(n.bridge), leases: leases(ipamDir, n.name), netns: netnsMountsUnder(runtimeDir) };
}
const clean = { veths: [], leases: [], netns: [] };

async function until<T>(what: () => Promise<T>, ok: (x: T) => boolean, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let x = await what();
  while (!ok(x) && Date.now() < deadline) {
    await Bun.sleep(100);
    x = await what();
  }
  return x;
}

beforeAll(async () => {
  if (unavailable) return;
  before = { ipForward: ipForward(), hostportChains: await hostportChainsExist() };
  // busybox with the networking applets the tests use.
  const stage = join(work, "stage");
  stageBusybox(stage);
  for (const a of ["httpd", "wget", "ip", "hostname", "nc", "cat", "grep"]) {
    if (!existsSync(join(stage, "bin", a))) symlinkSync("busybox", join(stage, "bin", a));
  }
  mkdirSync(images);
  const layout = join(work, "layout");
  addImage(layout, {
    tag: "1",
    layers: [{ tar: tarDir(stage, { format: "gnu" }), compression: "gzip", createdBy: "busybox" }],
    config: BUSYBOX_CONFIG,
  });
  await saveArchive(layout, join(images, "bb.tar"), "bb:latest", { srcTag: "1" });

  const a = await freeSubnet();
  let b = await freeSubnet();
  while (b.prefix === a.prefix) b = await freeSubnet();
  const id = Math.random().toString(16).slice(2, 8);
  net = { name: `ucrnet-${id}`, bridge: bridgeName("a"), subnet: a.subnet, gateway: a.gateway };
  legacy = { name: `legacy-${id}`, bridge: bridgeName("b"), subnet: b.subnet, gateway: b.gateway };
  mkdirSync(confDir);
  writeFileSync(
    join(confDir, "10-bridge.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: net.name,
      plugins: [
        {
          type: "bridge",
          bridge: net.bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: { type: "host-local", dataDir: ipamDir, ranges: [[{ subnet: net.subnet }]], routes: [{ dst: "0.0.0.0/0" }] },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    }),
  );
  writeFileSync(
    join(confDir, "20-legacy.conf"),
    JSON.stringify({
      name: legacy.name,
      type: "bridge",
      bridge: legacy.bridge,
      isGateway: true,
      ipam: { type: "host-local", dataDir: ipamDir, subnet: legacy.subnet, routes: [{ dst: "0.0.0.0/0" }] },
      // The bridge plugin answers with the config's DNS (not IPAM's).
      dns: { nameservers: [`${b.prefix}.53`], domain: "cni.test", search: ["a.cni.test"], options: ["ndots:2"] },
    }),
  );
  writeFileSync(join(confDir, "README"), "not a config: ignored\n");
  agent = await startNetAgent(join(work, "main"));
});

afterAll(async () => {
  try {
    for (const { agent: a, dir } of agents) {
      if (a.proc.exitCode === null && a.proc.signalCode === null) {
        await removeAll(a);
        expect(await a.stop()).toBe(0);
      }
      // An agent that was killed leaves its CNI root's shared mount (a stopped one takes it away).
      for (const root of [join(dir, "run", "isolators", "network", "cni"), join(dir, "isolators", "network", "cni")]) {
        try {
          umount2(root, MNT_DETACH);
        } catch {
          // not mounted
        }
      }
    }
  } finally {
    if (net) for (const n of [net, legacy]) await deleteLink(n.bridge);
    if (before) {
      if (!before.hostportChains) await removeHostportChains();
      setIpForward(before.ipForward);
    }
    rmSync(work, { recursive: true, force: true });
  }
});

describe.skipIf(unavailable !== undefined)("CNI networks (real plugins and namespaces; needs root)", () => {
  test("the agent lists the networks it loaded and GET_FLAGS shows the CNI flags", async () => {
    expect(agent.log()).toContain(`CNI networks: ${net.name}, ${legacy.name}`);
    expect(agent.log()).toMatch(/README: ignored/);
    const flags = (await call(agent, { type: "GET_FLAGS" })).json!.get_flags as { flags: Array<{ name: string; value: string }> };
    const shown = Object.fromEntries(flags.flags.map((f) => [f.name, f.value]));
    expect(shown).toMatchObject({
      network_cni_config_dir: confDir,
      network_cni_plugins_dir: "/usr/lib/cni",
      network_cni_root_dir_persist: "false",
      resources: `ports:[${PORTS.begin}-${PORTS.end}]`,
    });
  });

  test("two containers both listen on port 80 and reach each other by IP; hostname is the container ID", async () => {
    const serve = "mkdir /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w";
    for (const id of ["web-a", "web-b"]) expect((await call(agent, launchBody(id, serve, on(net.name)))).status).toBe(200);
    const ipA = await ipOf(agent, "web-a");
    const ipB = await ipOf(agent, "web-b");
    expect(ipA).not.toBe(ipB);
    for (const ip of [ipA, ipB]) expect(ip.startsWith(net.gateway.slice(0, -1))).toBe(true);
    const client = await run(agent, "client", `wget -qO- http://${ipA}/ && wget -qO- http://${ipB}/`, on(net.name));
    expect({ status: client.status, stdout: client.stdout }).toEqual({ status: 0, stdout: "web-a\nweb-b\n" });
    for (const id of ["web-a", "web-b"]) {
      await finish(agent, id);
      expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: ref(id) })).status).toBe(200);
    }
  });

  test("the host reaches a container's httpd through its mapped port on 127.0.0.1 and the bridge IP; host_port 0 comes from --resources", async () => {
    const serve = "mkdir /tmp/w && echo served > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w";
    const fixed = PORTS.end;
    const launch = await call(
      agent,
      launchBody("mapped", serve, on(net.name, { port_mappings: [{ host_port: fixed, container_port: 80, protocol: "tcp" }] })),
    );
    expect({ status: launch.status, text: launch.text }).toEqual({ status: 200, text: "" });
    const auto = await call(agent, launchBody("auto", serve, on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] })));
    expect({ status: auto.status, text: auto.text }).toEqual({ status: 200, text: "" });

    const autoInfo = (await networkInfos(agent, "auto"))!;
    expect(autoInfo).toHaveLength(1);
    const allocated = autoInfo[0]!.port_mappings![0]!;
    expect(allocated.host_port).toBeGreaterThanOrEqual(PORTS.begin);
    expect(allocated.host_port).toBeLessThanOrEqual(PORTS.end);
    expect(allocated).toMatchObject({ container_port: 80, protocol: "tcp" });
    expect(autoInfo[0]).toMatchObject({ name: net.name, ip_addresses: [{ protocol: "IPv4" }] });

    for (const port of [fixed, allocated.host_port]) {
      for (const host of ["127.0.0.1", net.gateway]) {
        const res = await fetch(`http://${host}:${port}/index.html`, { signal: AbortSignal.timeout(5000) });
        expect({ url: `${host}:${port}`, body: await res.text() }).toEqual({ url: `${host}:${port}`, body: "served\n" });
      }
    }
    // The same host port twice is refused, naming the holder.
    const clash = await call(
      agent,
      launchBody("clash", "true", on(net.name, { port_mappings: [{ host_port: fixed, container_port: 80 }] })),
    );
    expect(clash.status).toBe(400);
    expect(clash.text).toContain(`host port ${fixed}/tcp is already mapped by container mapped`);
    for (const id of ["mapped", "auto"]) {
      await finish(agent, id);
      expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: ref(id) })).status).toBe(200);
    }
    // Once removed, its host port is free again.
    const again = await call(
      agent,
      launchBody("again", "true", on(net.name, { port_mappings: [{ host_port: fixed, container_port: 80 }] })),
    );
    expect(again.status).toBe(200);
    await finish(agent, "again");
    expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: ref("again") })).status).toBe(200);
  });

  test("ContainerInfo.hostname, /etc files from the CNI result (legacy 0.1.0 result, DNS), eth0 and eth1, lo up", async () => {
    const out = await run(
      agent,
      "files",
      "hostname; echo ---; cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; ip -o -4 addr; echo LIBPROCESS_IP=$LIBPROCESS_IP",
      { hostname: "web.example", network_infos: [{ name: legacy.name }, { name: net.name }] },
    );
    expect(out.status).toBe(0);
    const [uts, hostnameFile, hosts, resolv, addrs] = out.stdout.split("---\n");
    expect(uts).toBe("web.example\n");
    expect(hostnameFile).toBe("web.example\n");
    const lines = addrs!.trim().split("\n");
    const addrOf = (ifname: string) => lines.find((l) => l.includes(` ${ifname} `))?.match(/inet (\S+)\//)?.[1];
    expect(addrOf("lo")).toBe("127.0.0.1");
    const eth0 = addrOf("eth0")!;
    const eth1 = addrOf("eth1")!;
    expect(eth0.startsWith(legacy.gateway.slice(0, -1))).toBe(true);
    expect(eth1.startsWith(net.gateway.slice(0, -1))).toBe(true);
    // Mesos' hosts file: localhost and the first network's address as the hostname.
    expect(hosts).toBe(`127.0.0.1 localhost\n${eth0} web.example\n`);
    expect(resolv).toBe(`domain cni.test\nsearch a.cni.test\noptions ndots:2\nnameserver ${legacy.gateway.slice(0, -1)}53\n`);
    expect(out.stdout).toContain("LIBPROCESS_IP=0.0.0.0");
    // On the host network too, the container has its own UTS name.
    const host = await run(agent, "hostnet", "hostname; cat /etc/hostname; echo LIBPROCESS_IP=$LIBPROCESS_IP", {
      hostname: "plain.example",
    });
    expect(host.stdout).toBe("plain.example\nplain.example\nLIBPROCESS_IP=\n");
  });

  test("network_infos in GET_CONTAINERS; a nested container joins its parent's namespace and may not name networks", async () => {
    expect(
      (await call(agent, launchBody("parent", "sleep 300", on(net.name, { labels: { labels: [{ key: "k", value: "v" }] } })))).status,
    ).toBe(200);
    const parentInfo = await networkInfos(agent, "parent");
    const ip = parentInfo![0]!.ip_addresses[0]!.ip_address;
    expect(parentInfo).toEqual([
      { name: net.name, labels: { labels: [{ key: "k", value: "v" }] }, ip_addresses: [{ protocol: "IPv4", ip_address: ip }] },
    ]);

    const nestedId = { value: "child", parent: { value: "parent" } };
    const nested = await call(agent, {
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: nestedId,
        command: { value: "ip -o -4 addr show eth0; cat /etc/hosts; sleep 300" },
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "bb" } } } },
      },
    });
    expect({ status: nested.status, text: nested.text }).toEqual({ status: 200, text: "" });
    expect(await networkInfos(agent, "child", true)).toEqual(parentInfo);
    const own = await call(agent, {
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "child2", parent: { value: "parent" } },
        command: { value: "true" },
        container: { type: "MESOS", network_infos: [{ name: net.name }] },
      },
    });
    expect(own.status).toBe(400);
    expect(own.text).toContain("container.network_infos: a nested container joins its parent's network namespace");
    const named = await call(agent, {
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: "child3", parent: { value: "parent" } },
        command: { value: "true" },
        container: { type: "MESOS", hostname: "x" },
      },
    });
    expect({ status: named.status, text: named.text }).toEqual({
      status: 400,
      text: "container.hostname: a nested container shares its parent's UTS namespace and hostname",
    });

    const sandbox = join(sandboxOf(agent, "parent"), "containers", "child");
    const out = await until(
      async () => (existsSync(join(sandbox, "stdout")) ? readFileSync(join(sandbox, "stdout"), "utf8") : ""),
      (s) => s.includes("localhost"),
    );
    expect(out).toContain(`inet ${ip}/`);
    expect(out).toContain(`${ip} parent\n`);
    await finish(agent, "parent");
    expect((await call(agent, { type: "REMOVE_CONTAINER", remove_container: ref("parent") })).status).toBe(200);
  });

  test("ucr run --network NAME -p HOST:CONTAINER publishes a port; -p CONTAINER takes one from the range and says which", async () => {
    const serve = "mkdir /tmp/w && echo via-run > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w";
    const fixed = PORTS.end - 1;
    const proc = Bun.spawn(
      [
        UCR,
        "run",
        "--agent",
        `127.0.0.1:${agent.port}`,
        "--name",
        "cli",
        "--network",
        net.name,
        "-p",
        `${fixed}:80`,
        "-p",
        "80/tcp",
        "bb",
        "--",
        "sh",
        "-c",
        serve,
      ],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const stderr = new Response(proc.stderr).text();
    try {
      const body = await until(
        () =>
          fetch(`http://127.0.0.1:${fixed}/index.html`, { signal: AbortSignal.timeout(2000) }).then(
            (r) => r.text(),
            () => "",
          ),
        (t) => t === "via-run\n",
      );
      expect(body).toBe("via-run\n");
      const info = (await networkInfos(agent, "cli"))![0]!;
      const auto = info.port_mappings!.find((m) => m.host_port !== fixed)!;
      expect(auto.host_port).toBeGreaterThanOrEqual(PORTS.begin);
      expect(await (await fetch(`http://127.0.0.1:${auto.host_port}/index.html`)).text()).toBe("via-run\n");
      await call(agent, { type: "KILL_CONTAINER", kill_container: ref("cli") });
      expect(await proc.exited).toBe(137);
      expect(await stderr).toContain(`ucr run: ${fixed} -> 80/tcp\nucr run: ${auto.host_port} -> 80/tcp\n`);
    } finally {
      proc.kill();
    }
    const usage = await runUcr(["run", "-p", "80", "bb"]);
    expect({ code: usage.code, stderr: usage.stderr }).toEqual({
      code: 2,
      stderr: "ucr run: -p needs --network NAME: the host network has no ports to map\n",
    });
  });

  test("bad requests: unknown network, a network twice, port mappings on the host network, a bad hostname", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [on("no-such-net"), `Unknown CNI network 'no-such-net'`],
      [
        { network_infos: [{ name: net.name }, { name: net.name }] },
        `container.network_infos[1].name: Attempted to join CNI network '${net.name}' multiple times`,
      ],
      [
        { network_infos: [{ port_mappings: [{ host_port: 8080, container_port: 80 }] }] },
        "container.network_infos[0].port_mappings: port mappings need a named CNI network",
      ],
      [
        on(legacy.name, { port_mappings: [{ host_port: 8080, container_port: 80 }] }),
        `CNI network '${legacy.name}' (${join(confDir, "20-legacy.conf")}) has no plugin with the portMappings capability`,
      ],
      [
        on(net.name, { port_mappings: [{ host_port: 8080, container_port: 80, protocol: "icmp" }] }),
        "port_mappings[0].protocol: 'icmp' is not tcp, udp or sctp",
      ],
      [{ hostname: "bad host" }, "container.hostname: 'bad host' is not a hostname"],
    ];
    for (const [container, message] of cases) {
      const r = await call(agent, launchBody("bad", "true", container));
      expect({ status: r.status, text: r.text }).toEqual({ status: 400, text: expect.stringContaining(message) });
    }
    const schema = await call(
      agent,
      launchBody("bad", "true", on(net.name, { port_mappings: [{ host_port: 70000, container_port: 80 }] })),
    );
    expect(schema.status).toBe(400);
    expect(schema.text).toContain("launch_container.container.network_infos.0.port_mappings.0.host_port");
    // None of them left anything behind.
    expect(await leftovers(net, join(work, "main", "run"))).toEqual(clean);
  });

  test("a config added while the agent runs is found by name; one that breaks is named in the 400", async () => {
    const late = join(confDir, "30-late.conflist");
    const name = `late-${net.name}`;
    writeFileSync(
      late,
      JSON.stringify({
        cniVersion: "1.0.0",
        name,
        plugins: [{ type: "bridge", bridge: net.bridge, ipam: { type: "host-local", dataDir: ipamDir, subnet: net.subnet } }],
      }),
    );
    try {
      const ok = await run(agent, "late", "ip -o -4 addr show eth0", on(name));
      expect(ok.stdout).toContain(`inet ${net.gateway.slice(0, -1)}`);
      writeFileSync(late, "{ broken");
      const bad = await call(agent, launchBody("late2", "true", on(name)));
      expect(bad.status).toBe(400);
      expect(bad.text).toContain(`${late}: is not valid JSON`);
    } finally {
      rmSync(late, { force: true });
    }
  });

  test("an agent without CNI networks refuses named networks with 400", async () => {
    const plain = await startAgent({
      args: [`--docker_registry=${images}`, "--image_providers=docker", "--isolation=filesystem/linux,docker/runtime"],
    });
    try {
      const r = await call(plain, launchBody("x", "true", on(net.name)));
      expect({ status: r.status, text: r.text }).toEqual({
        status: 400,
        text: expect.stringContaining(
          `container.network_infos[0].name: '${net.name}' is a CNI network, but this agent has none: start it with --network_cni_config_dir`,
        ),
      });
      // Unnamed network_infos are the host network, as in Mesos.
      const host = await call(plain, launchBody("host", "true", { network_infos: [{}] }));
      expect(host.status).toBe(200);
      await finish(plain, "host");
      expect((await call(plain, { type: "REMOVE_CONTAINER", remove_container: ref("host") })).status).toBe(200);
    } finally {
      expect(await plain.stop()).toBe(0);
    }
  });

  test("bad configs stop the agent, naming the file and why", async () => {
    const dir = join(work, "badconf");
    const cases: Array<[string, string, string]> = [
      ["a.conflist", "{ not json", "a.conflist: is not valid JSON"],
      [
        "b.conflist",
        JSON.stringify({ cniVersion: "1.0.0", name: "x", plugins: [{ type: "bridge" }, { type: "no-such-plugin" }] }),
        "b.conflist: plugin 1 (no-such-plugin): plugin 'no-such-plugin' is not in /usr/lib/cni",
      ],
      ["c.conf", JSON.stringify({ cniVersion: "0.4.0", type: "bridge" }), "c.conf: 'name' is missing"],
      [
        "d.conf",
        JSON.stringify({ cniVersion: "0.3.1", name: "fw", type: "firewall" }),
        "d.conf: plugin /usr/lib/cni/firewall does not speak cniVersion 0.3.1",
      ],
      [
        "e.conf",
        JSON.stringify({ name: "m", type: "bridge", args: { "org.apache.mesos": {} } }),
        "e.conf: plugin 'bridge': 'args.org.apache.mesos' is reserved",
      ],
      [
        "f.conflist",
        JSON.stringify({ cniVersion: "9.9.9", name: "v", plugins: [{ type: "bridge" }] }),
        "f.conflist: cniVersion: 'cniVersion' must be one of",
      ],
      [
        "g.conf",
        JSON.stringify({ cniVersion: "1.0.0", name: "../x", type: "bridge" }),
        "g.conf: name: 'name' must start with a letter or digit",
      ],
      [
        "h.conf",
        JSON.stringify({ cniVersion: "1.0.0", name: "y", type: "../../bin/sh" }),
        "h.conf: type: 'type' must be a plugin file name",
      ],
    ];
    for (const [file, content, message] of cases) {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      writeFileSync(join(dir, file), content);
      const r = await runUcr([
        "agent",
        "--port=0",
        `--work_dir=${join(work, "badwd")}`,
        `--runtime_dir=${join(work, "badwd", "run")}`,
        `--network_cni_config_dir=${dir}`,
      ]);
      expect({ file, code: r.code, stderr: r.stderr }).toEqual({
        file,
        code: 1,
        stderr: expect.stringContaining(`CNI network configuration ${join(dir, file)}: ${message.slice(message.indexOf(":") + 2)}`),
      });
    }
    // The same name in two files.
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    const conf = JSON.stringify({ cniVersion: "1.0.0", name: "twice", type: "bridge" });
    writeFileSync(join(dir, "1.conf"), conf);
    writeFileSync(join(dir, "2.conf"), conf);
    const dup = await runUcr([
      "agent",
      "--port=0",
      `--work_dir=${join(work, "badwd")}`,
      `--runtime_dir=${join(work, "badwd", "run")}`,
      `--network_cni_config_dir=${dir}`,
    ]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain(`${join(dir, "2.conf")}: network 'twice' is already defined in ${join(dir, "1.conf")}`);
    const missing = await runUcr([
      "agent",
      "--port=0",
      `--work_dir=${join(work, "badwd")}`,
      `--network_cni_config_dir=${join(work, "nope")}`,
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`flag '--network_cni_config_dir': ${join(work, "nope")} does not exist`);
    const ports = await runUcr(["agent", "--port=0", `--work_dir=${join(work, "badwd")}`, "--resources=cpus:4"]);
    expect(ports.code).toBe(2);
    expect(ports.stderr).toContain("flag '--resources': resource 'cpus' is not used by ucr");
  });

  test("after REMOVE of 50 networked containers: no veth, no lease, iptables as before, no namespace mounts", async () => {
    const runtimeDir = join(work, "main", "run");
    // portmap's shared chains exist from the first port mapping on: make them before comparing.
    await run(agent, "warm-many", "true", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] }));
    const hostBefore = await hostNetState();
    const ids = Array.from({ length: 50 }, (_, i) => `many-${i}`);
    for (let i = 0; i < ids.length; i += 5) {
      const batch = ids.slice(i, i + 5);
      const launched = await Promise.all(
        batch.map((id, j) =>
          call(
            agent,
            launchBody(id, "sleep 300", on(net.name, (i + j) % 5 === 0 ? { port_mappings: [{ host_port: 0, container_port: 80 }] } : {})),
          ),
        ),
      );
      expect(launched.map((r) => r.status)).toEqual(batch.map(() => 200));
    }
    expect((await portsOf(net.bridge)).length).toBe(50);
    expect(leases(ipamDir, net.name).length).toBe(50);
    expect(netnsMountsUnder(runtimeDir).length).toBe(50);
    for (let i = 0; i < ids.length; i += 10) {
      const batch = ids.slice(i, i + 10);
      await Promise.all(batch.map((id) => call(agent, { type: "KILL_CONTAINER", kill_container: ref(id) })));
      await Promise.all(batch.map((id) => call(agent, { type: "WAIT_CONTAINER", wait_container: ref(id) })));
      const removed = await Promise.all(batch.map((id) => call(agent, { type: "REMOVE_CONTAINER", remove_container: ref(id) })));
      expect(removed.map((r) => r.status)).toEqual(batch.map(() => 200));
    }
    expect(await leftovers(net, runtimeDir)).toEqual(clean);
    expect(await hostNetState()).toEqual(hostBefore);
    expect(existsSync(join(runtimeDir, "isolators", "network", "cni"))).toBe(true);
    expect(readdirSync(join(runtimeDir, "isolators", "network", "cni"))).toEqual([]);
  }, 240_000);

  test("--network_cni_root_dir_persist keeps the CNI state under the work dir", async () => {
    const dir = join(work, "persist");
    const a = await startNetAgent(dir, ["--network_cni_root_dir_persist"]);
    expect((await call(a, launchBody("persisted", "sleep 300", on(net.name)))).status).toBe(200);
    expect(netnsMountsUnder(join(dir, "isolators", "network", "cni"))).toEqual([
      join(dir, "isolators", "network", "cni", "persisted", "ns"),
    ]);
    expect(existsSync(join(dir, "run", "isolators"))).toBe(false);
    await finish(a, "persisted");
    expect((await call(a, { type: "REMOVE_CONTAINER", remove_container: ref("persisted") })).status).toBe(200);
    expect(await leftovers(net, dir)).toEqual(clean);
  });

  test("a DEL that fails keeps the container and its namespace; REMOVE retries and then nothing is left", async () => {
    const plugins = join(work, "plugins");
    mkdirSync(plugins);
    for (const p of ["bridge", "host-local", "portmap"]) symlinkSync(join("/usr/lib/cni", p), join(plugins, p));
    const dir = join(work, "delfail");
    const runtimeDir = join(dir, "run");
    const a = await startNetAgent(dir, [`--network_cni_plugins_dir=${plugins}`]);
    await run(a, "warm-delfail", "true", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] }));
    const hostBefore = await hostNetState();
    expect(
      (await call(a, launchBody("delfail", "sleep 300", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] })))).status,
    ).toBe(200);
    rmSync(join(plugins, "portmap"));
    try {
      await finish(a, "delfail");
      const failed = await call(a, { type: "REMOVE_CONTAINER", remove_container: ref("delfail") });
      expect(failed.status).toBe(500);
      expect(failed.text).toContain(
        `The CNI plugin 'portmap' failed to detach container delfail from CNI network '${net.name}': it is no longer in ${plugins}`,
      );
      expect(failed.text).toContain("REMOVE it again to retry");
      // Kept: the container, its namespace (for the next DEL) and portmap's rule.
      expect((await call(a, { type: "WAIT_CONTAINER", wait_container: ref("delfail") })).status).toBe(200);
      expect(netnsMountsUnder(runtimeDir)).toHaveLength(1);
      expect(await hostNetState()).not.toEqual(hostBefore);
    } finally {
      symlinkSync("/usr/lib/cni/portmap", join(plugins, "portmap"));
    }
    expect((await call(a, { type: "REMOVE_CONTAINER", remove_container: ref("delfail") })).status).toBe(200);
    expect(await leftovers(net, runtimeDir)).toEqual(clean);
    expect(await hostNetState()).toEqual(hostBefore);
  }, 60_000);

  test("agent SIGKILL in the middle of ADD: after a restart nothing is left; a running one is recovered with its network", async () => {
    const dir = join(work, "killed");
    const runtimeDir = join(dir, "run");
    const first = await startNetAgent(dir);
    await run(first, "warm-killed", "true", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] }));
    const hostBefore = await hostNetState();
    expect(
      (await call(first, launchBody("keeps", "sleep 300", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] })))).status,
    ).toBe(200);
    const keptInfo = await networkInfos(first, "keeps");

    // Launch, and kill the agent the moment a plugin of this container runs.
    const pending = call(
      first,
      launchBody("midadd", "sleep 300", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] })),
    ).catch((e: Error) => e);
    let plugin: number | undefined;
    for (const deadline = Date.now() + 10_000; plugin === undefined && Date.now() < deadline; ) {
      plugin = pluginOf("midadd");
      if (plugin === undefined) await Bun.sleep(1);
    }
    expect(plugin).toBeDefined();
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    await pending;

    const second = await startNetAgent(dir);
    // The launch never finished: its ADD was undone at start-up, and the container is kept as a
    // terminated record (how it ended, for WAIT) until REMOVE.
    expect(second.log()).toContain("container midadd: its CNI networks were detached after the agent restart");
    expect((await call(second, { type: "REMOVE_CONTAINER", remove_container: ref("midadd") })).status).toBe(200);
    expect((await call(second, { type: "REMOVE_CONTAINER", remove_container: ref("midadd") })).status).toBe(404);
    expect(await networkInfos(second, "keeps")).toEqual(keptInfo);
    const port = keptInfo![0]!.port_mappings![0]!.host_port;
    // Its host port stays taken across the restart.
    const clash = await call(
      second,
      launchBody("clash", "true", on(net.name, { port_mappings: [{ host_port: port, container_port: 80 }] })),
    );
    expect(clash.text).toContain(`host port ${port}/tcp is already mapped by container keeps`);
    await finish(second, "keeps");
    expect((await call(second, { type: "REMOVE_CONTAINER", remove_container: ref("keeps") })).status).toBe(200);
    expect(await leftovers(net, runtimeDir)).toEqual(clean);
    expect(await hostNetState()).toEqual(hostBefore);
  }, 120_000);

  test("a container that exited while the agent was down is DELeted after the restart", async () => {
    const dir = join(work, "down");
    const runtimeDir = join(dir, "run");
    const first = await startNetAgent(dir);
    await run(first, "warm-down", "true", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] }));
    const hostBefore = await hostNetState();
    expect(
      (await call(first, launchBody("gone", "sleep 300", on(net.name, { port_mappings: [{ host_port: 0, container_port: 80 }] })))).status,
    ).toBe(200);
    const pid = Number(readFileSync(join(runtimeDir, "containers", "gone", "pid"), "utf8"));
    expect((await portsOf(net.bridge)).length).toBeGreaterThan(0);
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    process.kill(pid, "SIGKILL");
    await until(
      async () => existsSync(join(runtimeDir, "containers", "gone", "status")),
      (x) => x,
      10_000,
    );

    const second = await startNetAgent(dir);
    // No REMOVE yet: the restart alone DELeted its network.
    expect(await leftovers(net, runtimeDir)).toEqual(clean);
    expect(await hostNetState()).toEqual(hostBefore);
    expect(await networkInfos(second, "gone")).toBeUndefined();
    expect((await call(second, { type: "REMOVE_CONTAINER", remove_container: ref("gone") })).status).toBe(200);
  }, 120_000);
});

/** The pid of a CNI plugin now running for CNI container `id`, if any. */
function pluginOf(id: string): number | undefined {
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (!["bridge", "host-local", "portmap"].includes(readFileSync(`/proc/${p}/comm`, "utf8").trim())) continue;
      const env = readFileSync(`/proc/${p}/environ`, "latin1");
      if (env.includes(`CNI_CONTAINERID=${id}\0`) && env.includes("CNI_COMMAND=ADD")) return Number(p);
    } catch {
      // gone
    }
  }
  return undefined;
}
