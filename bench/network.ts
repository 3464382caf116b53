// Benchmark (not a test): what a CNI bridge network adds to a container start, with ucr
// (LAUNCH+WAIT over the Operator API, network/cni) and with `podman run --network` (its CNI
// backend), both on the same conflist (bridge + host-local + portmap) on a bridge of its own.
//
//   bun bench/network.ts [--runs N] [--quick]
//
// Prints a markdown table (median, p95, min; podman/ucr ratios; the added cost of the network
// over each tool's host-network start) and writes it to bench/results/network-<date>.md.
// Everything it makes goes away at the end: containers, the bridge, the IPAM dir, portmap's
// shared chains and ip_forward if this run brought them, podman's state.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release } from "node:os";
import { dirname, join } from "node:path";
import { bridgeName, freeSubnet, hostportChainsExist, ipForward, removeHostportChains, setIpForward } from "../test/helpers/cni.ts";
import { startAgent, type RunningAgent } from "../test/helpers/agent.ts";
import { hybridCgroup2, podmanGlobalArgs, podmanUlimits, startCgroup2FreeNamespace } from "../test/helpers/podman.ts";
import { commandRunner, mountsUnder, operatorCall, runBench, writeResult } from "./lib.ts";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const runsArg = argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : quick ? 8 : 30;
if (!Number.isInteger(RUNS) || RUNS < 1 || argv.some((a, i) => a !== "--quick" && a !== "--runs" && argv[i - 1] !== "--runs")) {
  console.error("usage: bun bench/network.ts [--runs N] [--quick]");
  process.exit(2);
}
const WARMUPS = quick ? 2 : 3;
const ROOT = dirname(import.meta.dir);
const BUILT_UCR = join(ROOT, "dist", "ucr");
const PATH = process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TIMEOUT_MS = 60_000;
const PLUGINS = "/usr/lib/cni";

let cleaning: Promise<void> | undefined;
function checkStop(): void {
  if (cleaning) throw new Error("interrupted");
}
const { live, exec, reason, mustRun } = commandRunner({ path: PATH, timeoutMs: TIMEOUT_MS, stdout: false, checkStop });

// ---------------------------------------------------------------------------------------------
// Cleanup

let base: string | undefined;
let agent: RunningAgent | undefined;
let holder: Bun.Subprocess | undefined;
let podmanCmd: string[] | undefined;
let bridge: string | undefined;
let hostBefore: { ipForward: string; hostportChains: boolean; varLibCni: boolean; runNetns: boolean } | undefined;
const ucrLive = new Set<string>();

function quiet(cmd: string[], timeoutMs = 20_000): Promise<number> {
  try {
    const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", env: { PATH } });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    return p.exited.finally(() => clearTimeout(t));
  } catch {
    return Promise.resolve(127);
  }
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of live) p.kill("SIGKILL");
    await Promise.race([Promise.all([...live].map((p) => p.exited)), Bun.sleep(3000)]);
    if (agent) {
      for (const id of [...ucrLive]) {
        try {
          await call(agent, "KILL_CONTAINER", { kill_container: { container_id: { value: id } } }, 5000).catch(() => undefined);
          await call(agent, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } }, 5000);
          if ((await call(agent, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } }, 20_000)).status === 200)
            ucrLive.delete(id);
        } catch {
          // the agent is gone or stuck
        }
      }
      await agent.stop("SIGTERM", 5000);
      if (ucrLive.size > 0) console.error(`cleanup: ucr containers not removed: ${[...ucrLive].join(", ")}`);
    }
    if (podmanCmd) await quiet([...podmanCmd, "rm", "-f", "-a", "-t", "0"], 60_000);
    if (holder) {
      holder.kill("SIGKILL");
      await holder.exited;
    }
    if (bridge) await quiet(["ip", "link", "del", bridge]);
    if (hostBefore) {
      if (!hostBefore.hostportChains) await removeHostportChains();
      setIpForward(hostBefore.ipForward);
      // podman's libcni keeps its result cache there; it did not exist before this run.
      if (!hostBefore.varLibCni) rmSync("/var/lib/cni", { recursive: true, force: true });
      // podman makes its namespaces' directory (in the holder's mount namespace, on the host's disk).
      if (!hostBefore.runNetns) {
        try {
          rmdirSync("/run/netns");
        } catch {
          // not empty or not there: not ours to force
        }
      }
    }
    if (base) {
      for (const mp of mountsUnder(base)) {
        if ((await quiet(["umount", mp])) !== 0) await quiet(["umount", "-l", mp]);
      }
      if (mountsUnder(base).length === 0) rmSync(base, { recursive: true, force: true });
      else console.error(`cleanup: ${base} still has mounts; remove it by hand`);
    }
  })();
  return cleaning;
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// The ucr agent

/** The agent under test: the shared starter (test/helpers/agent.ts), with CNI networks. */
function startUcrAgent(ucr: string, dir: string, images: string, cniConf: string): Promise<RunningAgent> {
  return startAgent({
    binary: ucr,
    args: [
      `--work_dir=${dir}`,
      `--runtime_dir=${join(dir, "run")}`,
      "--cgroups_root=ucr",
      `--docker_registry=${images}`,
      "--image_providers=docker",
      "--isolation=filesystem/linux,docker/runtime,network/cni",
      `--network_cni_config_dir=${cniConf}`,
    ],
    env: { PATH },
    detached: true,
    listenTimeoutMs: 30_000,
  });
}

/** One Operator API call, with the benchmark's timeout. */
function call(
  a: RunningAgent,
  type: string,
  body: Record<string, unknown>,
  timeoutMs = TIMEOUT_MS,
): Promise<{ status: number; text: string }> {
  return operatorCall(a, type, body, timeoutMs);
}

let seq = 0;

/** LAUNCH + WAIT of /bin/true (timed), then REMOVE (timed apart: with a network it waits for the DEL). */
async function ucrOnce(a: RunningAgent, network: string | undefined): Promise<{ launchWait: number; remove: number }> {
  checkStop();
  const id = `unb-${network ? "n" : "h"}-${++seq}`;
  ucrLive.add(id);
  const t0 = performance.now();
  const l = await call(a, "LAUNCH_CONTAINER", {
    launch_container: {
      container_id: { value: id },
      command: { shell: false, value: "/bin/true", arguments: ["true"] },
      container: {
        type: "MESOS",
        mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } },
        ...(network ? { network_infos: [{ name: network }] } : {}),
      },
    },
  });
  if (l.status !== 200) throw new Error(`LAUNCH_CONTAINER ${l.status}: ${l.text.trim().slice(0, 300)}`);
  const w = await call(a, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
  const t1 = performance.now();
  if (w.status !== 200) throw new Error(`WAIT_CONTAINER ${w.status}: ${w.text.trim().slice(0, 200)}`);
  const status = (JSON.parse(w.text) as { wait_container?: { exit_status?: number } }).wait_container?.exit_status;
  if (status !== 0) throw new Error(`/bin/true in ucr exited with wait status ${status}`);
  const r = await call(a, "REMOVE_CONTAINER", { remove_container: { container_id: { value: id } } });
  const t2 = performance.now();
  if (r.status !== 200) throw new Error(`REMOVE_CONTAINER ${r.status}: ${r.text.trim().slice(0, 300)}`);
  ucrLive.delete(id);
  return { launchWait: t1 - t0, remove: t2 - t1 };
}

// ---------------------------------------------------------------------------------------------
// The plugins alone: what any runtime pays for this network (a netns, ADD of the chain, DEL).

async function pluginsOnce(
  dir: string,
  conf: { name: string; cniVersion: string; plugins: Array<Record<string, unknown>> },
): Promise<number> {
  checkStop();
  const id = `unb-p-${++seq}`;
  const ns = join(dir, `ns-${id}`);
  const t0 = performance.now();
  writeFileSync(ns, "");
  const mk = await exec(["unshare", `--net=${ns}`, "ip", "link", "set", "dev", "lo", "up"]);
  if (mk.code !== 0) throw new Error(`unshare --net: ${reason(mk)}`);
  const plugin = async (command: string, p: Record<string, unknown>, prev?: unknown) => {
    const { capabilities: _c, ...rest } = p;
    const proc = Bun.spawn([join(PLUGINS, String(p.type))], {
      stdin: Buffer.from(JSON.stringify({ ...rest, cniVersion: conf.cniVersion, name: conf.name, ...(prev ? { prevResult: prev } : {}) })),
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: ns, CNI_IFNAME: "eth0", CNI_PATH: PLUGINS },
    });
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    if (code !== 0) throw new Error(`${String(p.type)} ${command}: ${out.slice(0, 200)}`);
    return out.trim() ? (JSON.parse(out) as unknown) : undefined;
  };
  let prev: unknown;
  for (const p of conf.plugins) prev = await plugin("ADD", p, prev);
  for (const p of [...conf.plugins].reverse()) await plugin("DEL", p, prev);
  await exec(["umount", ns]);
  rmSync(ns);
  return performance.now() - t0;
}

// ---------------------------------------------------------------------------------------------
// Statistics

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
function median(xs: number[]): number {
  const s = sorted(xs);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const pct = (xs: number[], p: number) => sorted(xs)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)]!;
const ms = (x: number) => x.toFixed(1);

interface Case {
  name: string;
  what: string;
  times: number[];
  /** Further numbers each run gives (e.g. REMOVE after LAUNCH+WAIT). */
  extra?: Record<string, number[]>;
  failure?: string;
  run?: () => Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root (network namespaces, iptables, podman --root)");
  if (!existsSync(BUILT_UCR)) throw new Error(`${BUILT_UCR} is missing: cd ${ROOT} && bun run build`);
  for (const t of ["podman", "unshare", "nsenter", "ip", "iptables"]) if (!Bun.which(t, { PATH })) throw new Error(`${t} is not installed`);
  for (const p of ["bridge", "host-local", "portmap"])
    if (!existsSync(join(PLUGINS, p))) throw new Error(`CNI plugin ${p} is not in ${PLUGINS}`);
  const started = performance.now();
  const loadBefore = loadavg();
  hostBefore = {
    ipForward: ipForward(),
    hostportChains: await hostportChainsExist(),
    varLibCni: existsSync("/var/lib/cni"),
    runNetns: existsSync("/run/netns"),
  };
  base = mkdtempSync("/tmp/unb-");
  const dir = base;
  const ucr = join(dir, "ucr-bin");
  copyFileSync(BUILT_UCR, ucr);
  chmodSync(ucr, 0o755);
  const images = join(dir, "img");
  await mustRun([process.execPath, join(ROOT, "scripts", "make-alpine.ts"), images]);

  // One network for both: same bridge, same IPAM pool, same chain of plugins.
  const subnet = await freeSubnet();
  bridge = bridgeName("n");
  const netName = `ucrbench-${bridge.slice(3, 9)}`;
  const conf = {
    cniVersion: "0.4.0", // podman 4.3's libcni and the plugins both speak it
    name: netName,
    plugins: [
      {
        type: "bridge",
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: "host-local", dataDir: join(dir, "ipam"), ranges: [[{ subnet: subnet.subnet }]], routes: [{ dst: "0.0.0.0/0" }] },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  const cniConf = join(dir, "cni");
  mkdirSync(cniConf);
  writeFileSync(join(cniConf, `${netName}.conflist`), JSON.stringify(conf, null, 2));

  const cases: Case[] = [];
  agent = await startUcrAgent(ucr, join(dir, "ucr"), images, cniConf);
  const a = agent;
  await ucrOnce(a, undefined); // pulls alpine into the store
  const ucrHost: Case = {
    name: "ucr, host network",
    what: "LAUNCH_CONTAINER + WAIT_CONTAINER of /bin/true (REMOVE after it, untimed)",
    times: [],
  };
  ucrHost.run = async () => (await ucrOnce(a, undefined)).launchWait;
  const ucrNet: Case = {
    name: "ucr, bridge network",
    what: "LAUNCH_CONTAINER + WAIT_CONTAINER with `network_infos: [{name}]` (netns, ADD of bridge and portmap, /etc files; DEL starts at the exit, REMOVE waits for it)",
    times: [],
    extra: { remove: [] },
  };
  ucrNet.run = async () => {
    const t = await ucrOnce(a, netName);
    ucrNet.extra!.remove!.push(t.remove);
    return t.launchWait;
  };
  cases.push(ucrHost, ucrNet);

  // podman through the nsenter workaround where this host needs it.
  let nsPrefix: string[] = [];
  if (hybridCgroup2()) {
    const ns = await startCgroup2FreeNamespace(dir, { env: { PATH }, detached: true });
    holder = ns.holder;
    if (!ns.prefix) throw new Error(ns.error);
    nsPrefix = ns.prefix;
  }
  podmanCmd = [...nsPrefix, ...podmanGlobalArgs(join(dir, "p")), "--network-config-dir", cniConf];
  const podHost: Case = { name: "podman run --rm, host network", what: "`podman run --rm --network host` of /bin/true", times: [] };
  const podNet: Case = {
    name: "podman run --rm, bridge network",
    what: "`podman run --rm --network <the same conflist>` of /bin/true (netns, ADD, teardown with DEL)",
    times: [],
  };
  const load = await exec([...podmanCmd, "load", "-q", "-i", join(images, "alpine.tar")], { timeoutMs: 120_000 });
  if (load.code !== 0) podHost.failure = podNet.failure = `podman load: ${reason(load)}`;
  else {
    let extra: string[] = [];
    const runArgs = (network: string) => [
      ...podmanCmd!,
      "run",
      "--rm",
      "--network",
      network,
      "--pull",
      "never",
      ...extra,
      "localhost/alpine:latest",
      "/bin/true",
    ];
    let r = await exec(runArgs("host"));
    if (r.code !== 0 && /setrlimit/.test(r.stderr)) {
      extra = podmanUlimits();
      r = await exec(runArgs("host"));
    }
    if (r.code !== 0) podHost.failure = podNet.failure = reason(r);
    else {
      for (const [c, network] of [
        [podHost, "host"],
        [podNet, netName],
      ] as const) {
        c.run = async () => {
          const res = await exec(runArgs(network));
          if (res.code !== 0) throw new Error(`podman run --network ${network}: ${reason(res)}`);
          return res.ms;
        };
      }
    }
  }
  cases.push(podHost, podNet);
  const plugins: Case = {
    name: "reference: the plugins alone",
    what: "unshare --net + ip link set lo up, bridge and portmap ADD, portmap and bridge DEL, run directly (no runtime)",
    times: [],
  };
  plugins.run = () => pluginsOnce(dir, conf);
  cases.push(plugins);

  const runnable = () => cases.filter((c) => c.run && !c.failure);
  console.error(`network: ${runnable().length} cases, ${WARMUPS} warm-up(s) + ${RUNS} timed run(s) each`);
  for (const c of runnable()) {
    for (let i = 0; i < WARMUPS; i++) {
      try {
        await c.run!();
      } catch (e) {
        if (cleaning) throw e;
        c.failure = (e as Error).message;
        break;
      }
    }
  }
  ucrNet.extra!.remove!.length = 0;
  for (let round = 0; round < RUNS; round++) {
    const order = runnable();
    const k = round % Math.max(1, order.length);
    for (const c of [...order.slice(k), ...order.slice(0, k)]) {
      try {
        c.times.push(await c.run!());
      } catch (e) {
        if (cleaning) throw e;
        c.failure = `${(e as Error).message} (after ${c.times.length} runs)`;
      }
    }
    if ((round + 1) % 10 === 0) console.error(`network: ${round + 1}/${RUNS} rounds`);
  }

  // ---- report
  const med = (c: Case) => (c.times.length ? median(c.times) : NaN);
  const row = (c: Case, ratio: string) =>
    c.failure && c.times.length === 0
      ? `| ${c.name} | failed: ${c.failure.replace(/\|/g, "/")} | | | 0 | |`
      : `| ${c.name}${c.failure ? ` (then failed: ${c.failure.replace(/\|/g, "/")})` : ""} | ${ms(med(c))} | ${ms(pct(c.times, 95))} | ${ms(Math.min(...c.times))} | ${c.times.length} | ${ratio} |`;
  const removes = ucrNet.extra!.remove!;
  const table = [
    "| case | median ms | p95 ms | min ms | runs | podman/ucr (median) |",
    "|---|---:|---:|---:|---:|---:|",
    row(ucrHost, ""),
    row(ucrNet, ""),
    ...(removes.length
      ? [
          `| &nbsp;&nbsp;ucr, bridge: the REMOVE after it (waits for DEL) | ${ms(median(removes))} | ${ms(pct(removes, 95))} | ${ms(Math.min(...removes))} | ${removes.length} | |`,
        ]
      : []),
    ...(removes.length && ucrNet.times.length === removes.length
      ? (() => {
          const all = ucrNet.times.map((t, i) => t + removes[i]!);
          return [
            `| &nbsp;&nbsp;ucr, bridge: LAUNCH + WAIT + REMOVE (start to all gone, as podman --rm) | ${ms(median(all))} | ${ms(pct(all, 95))} | ${ms(Math.min(...all))} | ${all.length} | ${ms(med(podNet) / median(all))}× |`,
          ];
        })()
      : []),
    row(podHost, `${ms(med(podHost) / med(ucrHost))}×`),
    row(podNet, `${ms(med(podNet) / med(ucrNet))}×`),
    row(plugins, ""),
  ];
  const added = [
    `Added cost of the bridge network over the host network (difference of medians): ucr ${ms(med(ucrNet) - med(ucrHost))} ms (LAUNCH+WAIT; the DEL, ${removes.length ? ms(median(removes)) : "?"} ms, runs after the exit, before REMOVE answers), podman ${ms(med(podNet) - med(podHost))} ms. The plugins alone (netns, ADD and DEL of the chain) take ${ms(med(plugins))} ms.`,
    `Goal: ucr >= 3× faster than podman with one bridge network: ${med(podNet) / med(ucrNet) >= 3 ? "**met**" : "**not met**"} (${ms(med(podNet) / med(ucrNet))}×, LAUNCH+WAIT vs podman run --rm).`,
  ];
  const versions = async (cmd: string[]) => {
    const r = await exec(cmd, { stdout: true });
    return (r.stdout.trim() || r.stderr.trim()).split("\n")[0] ?? "?";
  };
  const loadAfter = loadavg();
  const out = [
    `# What a CNI bridge network adds to a container start: ucr vs podman, ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`,
    "",
    `Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), Linux ${release()}. Tools: ${await versions([ucr, "version"])}; ${await versions(["podman", "--version"])} (network backend: CNI, \`--network-config-dir\`); containernetworking-plugins in ${PLUGINS}.`,
    `Network: one conflist for both (cniVersion ${conf.cniVersion}): bridge \`${bridge}\` (isGateway, ipMasq, hairpinMode) with host-local IPAM on ${subnet.subnet}, then portmap; no port mappings asked, so portmap only passes the result on.`,
    `Method: ${WARMUPS} untimed warm-up(s) per case, then ${RUNS} rounds running every case once in an order rotated per round. ucr: wall time from the LAUNCH request to the WAIT response; podman: \`podman run --rm\` from spawn to exit${hybridCgroup2() ? " (through nsenter into a mount namespace without /sys/fs/cgroup/unified: its crun refuses this hybrid cgroup layout; see bench/launch.ts)" : ""}.`,
    `Load average (1 min) at start ${loadBefore[0]?.toFixed(2)}, at end ${loadAfter[0]?.toFixed(2)}.`,
    "",
    ...table,
    "",
    ...added,
    "",
    "What each row times:",
    "",
    ...cases.map((c) => `- ${c.name}: ${c.what}.`),
    "",
  ].join("\n");
  console.log(`\n${out}`);
  writeResult("network", out, quick || RUNS < 30, started);
}

await runBench("bench/network.ts", main, cleanup, () => cleaning !== undefined);
