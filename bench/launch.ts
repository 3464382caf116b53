// Benchmark (not a test): how long starting a `/bin/true` container from a cached image takes with
// ucr (LAUNCH+WAIT over the Operator API) against `crun run`, `podman run` and the bare kernel floor,
// one at a time and in bursts (back to back, 10 clients at once), and the memory it keeps.
//
//   bun bench/launch.ts [--runs N] [--quick]
//
// Prints markdown tables (latency: median, p95, min of N runs and peer/ucr ratios; bursts against
// spaced launches; memory of every ucr process idle, after the launches and with 50 containers
// running, against podman's conmon per container) and writes them to bench/results/launch-<date>.md.
// Everything it makes lives in one temp dir (short path: podman's runroot must be < 50 chars).
// The work is split by job under bench/launch/ (options, state and cleanup, the ucr agent,
// the peers, memory, statistics, the perf probe, bursts); this is its main.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { runBench, serverLaunchMs, writeResult } from "./lib.ts";
import { BURST_KINDS, runBursts, type BurstKind, type BurstTool } from "./launch/bursts.ts";
import { addMem, memOf, NO_MEM, processesOf, summarize, type Mem } from "./launch/memory.ts";
import {
  BUILT_UCR,
  BURST_ROUNDS,
  ID_PREFIX,
  MEM_CONTAINERS,
  PAR_CLIENTS,
  PAR_EACH,
  PATH,
  quick,
  ROOT,
  RUNS,
  WARMUPS,
} from "./launch/options.ts";
import { hybridCgroup2, podmanGlobalArgs, podmanUlimits } from "../test/helpers/podman.ts";
import { makeBundle, startHolder } from "./launch/peers.ts";
import { perfProbe } from "./launch/perf.ts";
import { cgroupLockMode, median, mib, ms, notes, pct, type Case } from "./launch/report.ts";
import { cleanup, exec, mustRun, podmanCgroups, reason, state, ucrLive } from "./launch/state.ts";
import { call, launchBody, launches, nextId, startUcrAgent, ucrOnce, ucrRemove } from "./launch/ucr.ts";

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root (containers, namespaces, podman --root)");
  if (!existsSync(BUILT_UCR)) throw new Error(`${BUILT_UCR} is missing: cd ${ROOT} && bun run build`);
  for (const t of ["crun", "podman", "skopeo", "umoci", "unshare", "nsenter", "chroot"]) {
    if (!Bun.which(t, { PATH })) throw new Error(`${t} is not installed`);
  }
  const started = performance.now();
  const loadBefore = loadavg();
  // Short: podman's runroot must stay under 50 characters.
  const dir = mkdtempSync("/tmp/ulb-");
  state.base = dir;
  // A private copy of the binary: a rebuild of dist/ucr during the run (other work on this
  // tree does that) would otherwise break the agent's `ucr __init` spawns ("(deleted)").
  const ucr = join(dir, "ucr-bin");
  copyFileSync(BUILT_UCR, ucr);
  chmodSync(ucr, 0o755);

  const images = join(dir, "img");
  await mustRun([process.execPath, join(ROOT, "scripts", "make-alpine.ts"), images]);
  const archive = join(images, "alpine.tar");

  // ---- ucr
  const cases: Case[] = [];
  const ucrCase: Case = {
    name: "ucr (LAUNCH + WAIT)",
    what: "LAUNCH_CONTAINER then WAIT_CONTAINER over HTTP (fetch, keep-alive)",
    isUcr: true,
    times: [],
  };
  const ucrLaunch: number[] = [];
  const ucrWait: number[] = [];
  const ucrIds: string[] = [];
  const a = await startUcrAgent(ucr, join(dir, "ucr"), images);
  state.agent = a;
  await Bun.sleep(500); // let start-up allocation settle before the idle reading
  const memIdleStart = summarize(processesOf(ucr));
  // The first launch pulls alpine into the store: the cache every later launch uses.
  const pullT0 = performance.now();
  await ucrOnce(a);
  const firstLaunchMs = performance.now() - pullT0;
  await Bun.sleep(300);
  const memPulled = summarize(processesOf(ucr));
  ucrCase.run = async () => {
    const t = await ucrOnce(a);
    ucrLaunch.push(t.launchMs);
    ucrWait.push(t.waitMs);
    ucrIds.push(t.id);
    return t.launchMs + t.waitMs;
  };
  cases.push(ucrCase);

  // ---- crun
  const bundle = await makeBundle(dir, archive);
  const rootfs = join(bundle, "rootfs");
  const crunState = join(dir, "crun");
  mkdirSync(crunState);
  let nsPrefix: string[] = [];
  const crunCase: Case = { name: "crun run", what: "`crun run` of a prepared bundle (container deleted by crun run itself)", times: [] };
  {
    const base = ["crun", "--root", crunState];
    let crunSeq = 0;
    const tryCrun = async (prefix: string[], extra: string[]) => {
      const r = await exec([...prefix, ...base, ...extra, "run", "-b", bundle, `${ID_PREFIX}-c${++crunSeq}`]);
      return r;
    };
    let prefix: string[] = [];
    let extra: string[] = [];
    let r = await tryCrun(prefix, extra);
    const tried: string[] = [];
    if (r.code !== 0 && /hybrid mode/.test(r.stderr)) {
      tried.push(`plain \`crun run\`: ${reason(r)}`);
      r = await tryCrun(prefix, ["--cgroup-manager=disabled"]);
      if (r.code === 0) extra = ["--cgroup-manager=disabled"];
      else {
        tried.push(`\`crun --cgroup-manager=disabled run\`: ${reason(r)} (crun checks the layout before it looks at the manager)`);
        if (hybridCgroup2()) {
          nsPrefix = await startHolder(dir);
          prefix = nsPrefix;
          r = await tryCrun(prefix, extra);
        }
      }
    }
    if (r.code !== 0) {
      crunCase.failure = `${reason(r)}${tried.length ? ` (tried: ${tried.join("; ")})` : ""}`;
    } else {
      state.crunCmd = [...prefix, ...base];
      if (tried.length) {
        notes.push(
          `crun: ${tried.join("; ")}. What works: running it in a private mount namespace where /sys/fs/cgroup/unified (cgroup2, holding the ${readFileSync("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").trim() || "?"} controller) is unmounted, so crun sees plain cgroup v1 and uses its cgroupfs manager there: \`nsenter --mount=/proc/<holder>/ns/mnt crun run ...\`, with the holder \`unshare --mount --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec sleep infinity'\`. The host's cgroups are not changed. nsenter's own cost is the "nsenter /bin/true" row.`,
        );
        crunCase.name = "crun run (via nsenter, see notes)";
      }
      if (extra.length) notes.push(`crun: ran with \`${extra.join(" ")}\`, so it makes no cgroups (ucr makes three per container).`);
      crunCase.run = async () => {
        const res = await tryCrun(prefix, extra);
        if (res.code !== 0) throw new Error(`crun run: ${reason(res)}`);
        return res.ms;
      };
    }
  }
  cases.push(crunCase);

  // ---- podman
  /** `podman run` argv for a command, once podman is known to work (for the memory step too). */
  let podmanRun: ((cmd: string[], detach?: boolean) => string[]) | undefined;
  const podmanCase: Case = {
    name: "podman run --rm",
    what: "`podman run --rm --network host` (container removed by podman itself)",
    times: [],
  };
  {
    for (const ctl of readdirSync("/sys/fs/cgroup")) {
      const d = `/sys/fs/cgroup/${ctl}/libpod_parent`;
      if (!existsSync(d) && existsSync(`/sys/fs/cgroup/${ctl}/cgroup.procs`)) podmanCgroups.push(d, `${d}/conmon`);
    }
    const global = podmanGlobalArgs(join(dir, "p"));
    // podman's crun has the same hybrid-layout problem; it runs in the same namespace as crun.
    const podmanCmd = [...nsPrefix, ...global];
    state.podmanCmd = podmanCmd;
    const load = await exec([...podmanCmd, "load", "-q", "-i", archive], { stdout: true, timeoutMs: 120_000 });
    if (load.code !== 0) podmanCase.failure = `podman load: ${reason(load)}`;
    else {
      const runArgs = (extra: string[], cmd: string[]) => [
        ...podmanCmd,
        "run",
        "--rm",
        "--network",
        "host",
        "--pull",
        "never",
        ...extra,
        "localhost/alpine:latest",
        ...cmd,
      ];
      let extra: string[] = [];
      let r = await exec(runArgs(extra, ["/bin/true"]));
      if (r.code !== 0 && /setrlimit/.test(r.stderr)) {
        const first = reason(r);
        extra = podmanUlimits();
        r = await exec(runArgs(extra, ["/bin/true"]));
        if (r.code === 0) {
          notes.push(
            `podman: its default RLIMIT_NOFILE/NPROC (1048576 for root) cannot be set here (${first.replace(/^exit \d+: /, "")}: this container lacks CAP_SYS_RESOURCE), so it runs with \`${extra.join(" ")}\` (the hard nofile limit here; nproc at most 32768, to which podman lowers its own limit as it starts, so crun cannot set more).`,
          );
        }
      }
      if (r.code !== 0) podmanCase.failure = reason(r);
      else {
        if (nsPrefix.length) {
          notes.push(
            "podman: run through the same nsenter namespace as crun (its crun hits the same hybrid-layout check); `--cgroup-manager cgroupfs --events-backend file`, private `--root/--runroot/--tmpdir`, `--pull never`.",
          );
          podmanCase.name = "podman run --rm (via nsenter)";
        }
        const chosen = extra;
        podmanRun = (cmd, detach = false) =>
          detach
            ? [...podmanCmd, "run", "-d", "--network", "host", "--pull", "never", ...chosen, "localhost/alpine:latest", ...cmd]
            : runArgs(chosen, cmd);
        const run = podmanRun;
        podmanCase.run = async () => {
          const res = await exec(run(["/bin/true"]));
          if (res.code !== 0) throw new Error(`podman run: ${reason(res)}`);
          return res.ms;
        };
      }
    }
  }
  cases.push(podmanCase);

  // ---- kernel floor and reference rows
  const floor: Case = {
    name: "kernel floor: unshare -fpmiu --mount-proc chroot",
    what: "util-linux unshare (PID, mount, IPC, UTS ns + /proc) + chroot into the bundle's rootfs",
    times: [],
  };
  floor.run = async () => {
    const r = await exec(["unshare", "-fpmiu", "--mount-proc", "chroot", rootfs, "/bin/true"]);
    if (r.code !== 0) throw new Error(`unshare: ${reason(r)}`);
    return r.ms;
  };
  cases.push(floor);
  const spawnRef: Case = {
    name: "reference: spawn /bin/true (no container)",
    what: "the harness's own process spawn + wait",
    reference: true,
    times: [],
  };
  spawnRef.run = async () => (await exec(["/bin/true"])).ms;
  cases.push(spawnRef);
  if (nsPrefix.length) {
    const nsRef: Case = {
      name: "reference: nsenter --mount /bin/true",
      what: "the workaround's cost inside the crun and podman rows",
      reference: true,
      times: [],
    };
    nsRef.run = async () => (await exec([...nsPrefix, "/bin/true"])).ms;
    cases.push(nsRef);
  }
  const ucrStart: Case = {
    name: "reference: `ucr version` (one start of the binary)",
    what: "process start of the ucr binary; a top-level launch starts it no more (the launcher forks the container's process), a nested container's still does (init stage 2)",
    reference: true,
    times: [],
  };
  ucrStart.run = async () => (await exec([ucr, "version"])).ms;
  cases.push(ucrStart);

  // ---- warm-ups, then rounds with the order rotated, so drift and noise hit every tool alike
  const runnable = () => cases.filter((c) => c.run && !c.failure);
  console.error(`launch: ${runnable().length} cases, ${WARMUPS} warm-up(s) + ${RUNS} timed run(s) each`);
  for (const c of runnable()) {
    for (let i = 0; i < WARMUPS; i++) {
      try {
        await c.run!();
      } catch (e) {
        if (state.cleaning) throw e;
        c.failure = (e as Error).message;
        break;
      }
    }
  }
  ucrLaunch.length = 0;
  ucrWait.length = 0;
  ucrIds.length = 0;
  for (let round = 0; round < RUNS; round++) {
    const order = runnable();
    const k = round % Math.max(1, order.length);
    for (const c of [...order.slice(k), ...order.slice(0, k)]) {
      try {
        c.times.push(await c.run!());
      } catch (e) {
        if (state.cleaning) throw e;
        c.failure = `${(e as Error).message} (after ${c.times.length} runs)`;
      }
    }
    if ((round + 1) % 10 === 0) console.error(`launch: ${round + 1}/${RUNS} rounds`);
  }

  // ---- bursts, side by side
  const burstTools: BurstTool[] = [];
  {
    const kept: string[] = [];
    burstTools.push({
      name: "ucr",
      once: async () => {
        const t = await ucrOnce(a, true);
        kept.push(t.id);
        return t.launchMs + t.waitMs;
      },
      after: async () => {
        for (const id of kept.splice(0)) await ucrRemove(a, id);
      },
    });
  }
  if (crunCase.run && !crunCase.failure) burstTools.push({ name: crunCase.name, once: crunCase.run });
  if (podmanCase.run && !podmanCase.failure) burstTools.push({ name: podmanCase.name, once: podmanCase.run });
  // The bare kernel work of a container start, with no runtime: how far bursts can go on this machine.
  if (floor.run && !floor.failure) burstTools.push({ name: floor.name, once: floor.run });
  console.error(`launch: bursts (${burstTools.map((t) => t.name).join(", ")}), ${BURST_ROUNDS} round(s)`);
  const bursts = await runBursts(burstTools);

  await Bun.sleep(300);
  const memAfterLaunches = summarize(processesOf(ucr));
  const launchesSoFar = launches.ucr;

  // ---- where ucr's time goes
  const server = serverLaunchMs(a.log().split("\n"));
  const serverTimes = ucrIds.map((id) => server.get(id)).filter((x): x is number => x !== undefined);
  let phaseLines: string[] = [];
  try {
    phaseLines = await perfProbe(a, ucr, dir);
  } catch (e) {
    if (state.cleaning) throw e;
    phaseLines = [`(perf probe failed: ${(e as Error).message})`];
  }

  // ---- memory: idle again, then with containers running
  let coldLaunchMs: number | undefined;
  let quietLaunchMs: number | undefined;
  console.error(
    "launch: memory quiet (launcher kept), then idle (waiting for the launcher and the worker threads to go, ~1 min), then with containers running",
  );
  const memRows: string[] = [];
  const memRow = (what: string, procs: string, m: Mem | undefined, why?: string) =>
    memRows.push(
      m ? `| ${what} | ${procs} | ${mib(m.rssKiB)} | ${mib(m.pssKiB)} | ${mib(m.ussKiB)} |` : `| ${what} | failed: ${why ?? "?"} | | | |`,
    );
  memRow("ucr, every process: idle, just started", memIdleStart.roles, memIdleStart.mem);
  memRow(`ucr, every process: idle after the image pull (first launch, ${ms(firstLaunchMs)} ms)`, memPulled.roles, memPulled.mem);
  memRow(`ucr, every process: right after ${launchesSoFar} launches`, memAfterLaunches.roles, memAfterLaunches.mem);
  {
    // The launcher goes quiet 10 s after its last container ended (its setup lane stopped; it
    // and its reaper give memory back, and it logs "idle: nothing runs"); the agent's worker
    // threads stop 10 s after their last call, and the agent then gives memory back (it logs
    // "idle: ..."). The launcher and its reaper exit once the agent has closed its connection
    // (60 s without a container) and 2 s more.
    const since = performance.now();
    const after = () => ((performance.now() - since) / 1000).toFixed(0);
    const logged = a.log().length;
    const launcherLog = join(dir, "ucr", "run", "launcher.sock.log");
    const launcherLogged = existsSync(launcherLog) ? readFileSync(launcherLog, "utf8").length : 0;
    const launcherQuiet = () =>
      existsSync(launcherLog) && readFileSync(launcherLog, "utf8").slice(launcherLogged).includes("idle: nothing runs");
    const agentQuiet = () => / idle: /.test(a.log().slice(logged));
    while (performance.now() - since < 30_000 && !(agentQuiet() && launcherQuiet())) await Bun.sleep(250);
    await Bun.sleep(500);
    const quiet = summarize(processesOf(ucr));
    memRow(`ucr, every process: quiet (${after()} s after the last launch; the launcher kept, warm)`, quiet.roles, quiet.mem);
    {
      // One launch now, to the quiet launcher (its pages given back come again as it runs).
      const id = nextId("quiet");
      ucrLive.add(id);
      const t0 = performance.now();
      const l = await call(a, "LAUNCH_CONTAINER", launchBody(id, ["/bin/true"]));
      if (l.status === 200) quietLaunchMs = performance.now() - t0;
      await call(a, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
      await ucrRemove(a, id).catch(() => {});
    }
    const sinceQuiet = performance.now();
    const afterQuiet = () => ((performance.now() - sinceQuiet) / 1000).toFixed(0);
    while (performance.now() - sinceQuiet < 90_000 && !(processesOf(ucr).length === 1 && agentQuiet())) await Bun.sleep(250);
    await Bun.sleep(500);
    const idle = summarize(processesOf(ucr));
    memRow(`ucr, every process: idle again (${afterQuiet()} s after the last launch; the launcher gone)`, idle.roles, idle.mem);
  }
  {
    const ids: string[] = [];
    let failure: string | undefined;
    for (let i = 0; i < MEM_CONTAINERS && !failure; i++) {
      const id = nextId("sleep");
      ucrLive.add(id);
      const t0 = performance.now();
      const l = await call(a, "LAUNCH_CONTAINER", launchBody(id, ["/bin/sleep", "600"]));
      // The first one finds no launcher (it exited with the agent idle): it starts one again.
      if (i === 0) coldLaunchMs = performance.now() - t0;
      if (l.status !== 200) failure = `LAUNCH ${l.status}: ${l.text.trim()}`;
      else ids.push(id);
    }
    await Bun.sleep(500);
    if (failure) memRow(`ucr, ${MEM_CONTAINERS} containers running`, "", undefined, failure);
    else {
      const running = summarize(processesOf(ucr));
      memRow(`ucr, ${MEM_CONTAINERS} containers running: every ucr process`, running.roles, running.mem);
      const workloads = ids.map((id) => memOf(Number(readFileSync(join(dir, "ucr", "run", "containers", id, "pid"), "utf8").trim())));
      const per = workloads.reduce(addMem, NO_MEM);
      memRow(`**ucr, per container: the workload only** (\`sleep\`, mean of ${MEM_CONTAINERS})`, "workload", {
        rssKiB: per.rssKiB / MEM_CONTAINERS,
        pssKiB: per.pssKiB / MEM_CONTAINERS,
        ussKiB: per.ussKiB / MEM_CONTAINERS,
      });
    }
    for (const id of ids) {
      await call(a, "KILL_CONTAINER", { kill_container: { container_id: { value: id } } });
      await call(a, "WAIT_CONTAINER", { wait_container: { container_id: { value: id } } });
      await ucrRemove(a, id).catch(() => {});
    }
  }
  {
    const podmanCmd = state.podmanCmd;
    if (!podmanRun || !podmanCmd) memRow("podman per container", "", undefined, podmanCase.failure ?? "podman did not run");
    else {
      const cids: string[] = [];
      let failure: string | undefined;
      for (let i = 0; i < MEM_CONTAINERS && !failure; i++) {
        const r = await exec(podmanRun(["sleep", "600"], true), { stdout: true });
        if (r.code !== 0) failure = reason(r);
        else cids.push(r.stdout.trim());
      }
      await Bun.sleep(500);
      const conmons: Mem[] = [];
      const workloads: Mem[] = [];
      for (const cid of cids) {
        const ins = await exec([...podmanCmd, "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", cid], { stdout: true });
        const [conmon, workload] = ins.stdout.trim().split(/\s+/).map(Number);
        if (ins.code !== 0 || !conmon || !workload) {
          failure ??= `inspect: ${reason(ins)}`;
          continue;
        }
        conmons.push(memOf(conmon));
        workloads.push(memOf(workload));
      }
      if (failure || conmons.length === 0) memRow("podman per container", "", undefined, failure);
      else {
        const mean = (ms: Mem[]) => {
          const t = ms.reduce(addMem, NO_MEM);
          return { rssKiB: t.rssKiB / ms.length, pssKiB: t.pssKiB / ms.length, ussKiB: t.ussKiB / ms.length };
        };
        memRow(
          `podman, ${conmons.length} containers running: conmon, all together`,
          `${conmons.length} × conmon`,
          conmons.reduce(addMem, NO_MEM),
        );
        memRow(`podman, per container: conmon (mean of ${conmons.length})`, "conmon", mean(conmons));
        memRow(
          `**podman, per container: conmon + workload** (\`sleep\`, mean)`,
          "conmon, workload",
          addMem(mean(conmons), mean(workloads)),
        );
      }
      if (cids.length) await exec([...podmanCmd, "rm", "-f", "-t", "0", ...cids], { timeoutMs: 120_000 });
    }
  }

  // ---- report
  const ucrMed = ucrCase.times.length && !ucrCase.failure ? median(ucrCase.times) : undefined;
  const table = ["| case | median ms | p95 ms | min ms | runs | peer/ucr (median) |", "|---|---:|---:|---:|---:|---:|"];
  for (const c of cases) {
    if (c.failure && c.times.length === 0) {
      table.push(`| ${c.name} | failed: ${c.failure.replace(/\|/g, "/")} | | | 0 | |`);
      continue;
    }
    const med = median(c.times);
    const ratio = c.isUcr ? "1.00" : c.reference ? "" : ucrMed ? (med / ucrMed).toFixed(2) : "n/a";
    table.push(
      `| ${c.name}${c.failure ? ` (then failed: ${c.failure.replace(/\|/g, "/")})` : ""} | ${ms(med)} | ${ms(pct(c.times, 95))} | ${ms(Math.min(...c.times))} | ${c.times.length} | ${ratio} |`,
    );
  }
  if (ucrLaunch.length) {
    table.push(
      `| &nbsp;&nbsp;ucr: LAUNCH_CONTAINER alone | ${ms(median(ucrLaunch))} | ${ms(pct(ucrLaunch, 95))} | ${ms(Math.min(...ucrLaunch))} | ${ucrLaunch.length} | |`,
      `| &nbsp;&nbsp;ucr: WAIT_CONTAINER alone | ${ms(median(ucrWait))} | ${ms(pct(ucrWait, 95))} | ${ms(Math.min(...ucrWait))} | ${ucrWait.length} | |`,
    );
    if (serverTimes.length) {
      table.push(
        `| &nbsp;&nbsp;ucr: LAUNCH as the agent logs it (server side) | ${ms(median(serverTimes))} | ${ms(pct(serverTimes, 95))} | ${ms(Math.min(...serverTimes))} | ${serverTimes.length} | |`,
      );
    }
    if (quietLaunchMs !== undefined) {
      table.push(
        `| &nbsp;&nbsp;ucr: LAUNCH_CONTAINER with the launcher quiet (nothing ran for ~10 s; one run) | ${ms(quietLaunchMs)} | | | 1 | |`,
      );
    }
    if (coldLaunchMs !== undefined) {
      // One sample: the agent idle (its launcher exited), so this LAUNCH starts the launcher and its reaper.
      table.push(
        `| &nbsp;&nbsp;ucr: LAUNCH_CONTAINER after the agent went idle (starts the launcher again; one run) | ${ms(coldLaunchMs)} | | | 1 | |`,
      );
    }
  }

  const lockMode = await cgroupLockMode();
  const versions = async (cmd: string[]) => {
    const r = await exec(cmd, { stdout: true });
    return (r.stdout.trim() || r.stderr.trim()).split("\n")[0] ?? "?";
  };
  const loadAfter = loadavg();
  const header = [
    `# ucr container start vs peers, ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`,
    "",
    `Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}; /tmp is ${(await versions(["findmnt", "-no", "FSTYPE", "-T", dir])) || "?"}.`,
    `Tools: ${await versions([ucr, "version"])}; ${(await versions(["crun", "--version"])).trim()}; ${await versions(["podman", "--version"])}; ${await versions(["unshare", "--version"])}.`,
    `Image: \`alpine\` from \`scripts/make-alpine.ts\` (busybox-static, one layer), cached: ucr pulled it once (first launch), podman loaded the same archive, crun and unshare use its rootfs unpacked by umoci.`,
    `Method: ${WARMUPS} untimed warm-up(s) per case, then ${RUNS} rounds, each running every case once in an order rotated per round. Wall time from spawn to exit of the whole command (ucr: from the LAUNCH request to the WAIT response; REMOVE_CONTAINER follows each run, untimed). Container IDs fresh per run. ucr's agent: \`--image_providers=docker --isolation=filesystem/linux,docker/runtime\`, overlay backend, its cgroups (cpu, cpuacct, memory) made and removed per container; all containers keep the host network.`,
    `Kernel cgroup threadgroup lock: ${lockMode}`,
    `Load average (1 min) at start ${loadBefore[0]?.toFixed(2)}, at end ${loadAfter[0]?.toFixed(2)}: other work on the machine shows up here as noise.`,
    `peer/ucr = case median / ucr median: > 1 means ucr is faster.`,
  ];
  const memTable = [
    "Memory (from /proc/<pid>/smaps_rollup, summed over every process running the ucr binary: agent, launcher, its reaper (and any init stage 2 of a nested container); PSS splits shared pages among the processes mapping them, so a sum of PSS counts each page once; USS = Private_Clean + Private_Dirty, what a process frees when it exits):",
    "",
    "| what | processes | RSS MiB | PSS MiB | USS MiB |",
    "|---|---|---:|---:|---:|",
    ...memRows,
  ];

  // Bursts: each tool's spaced median is its own reference.
  const burstTable = [
    `| tool | ${BURST_KINDS.map((k) => `${k.label}: median ms (p95)`).join(" | ")} | burst / spaced (seq, par) |`,
    `|---|${BURST_KINDS.map(() => "---:").join("|")}|---:|`,
  ];
  const burstMedians = new Map<string, Partial<Record<BurstKind, number>>>();
  for (const [name, r] of bursts) {
    const meds: Partial<Record<BurstKind, number>> = {};
    const cells = BURST_KINDS.map(({ kind }) => {
      const xs = r.times[kind];
      if (xs.length === 0) return "failed";
      meds[kind] = median(xs);
      return `${ms(median(xs))} (${ms(pct(xs, 95))})`;
    });
    burstMedians.set(name, meds);
    const ratio = (k: BurstKind) => (meds[k] !== undefined && meds.spaced ? (meds[k]! / meds.spaced).toFixed(2) : "n/a");
    burstTable.push(
      `| ${name}${r.failure ? ` (failed: ${r.failure.replace(/\|/g, "/").slice(0, 160)})` : ""} | ${cells.join(" | ")} | ${ratio("seq")}, ${ratio("par")} |`,
    );
  }
  const u = burstMedians.get("ucr") ?? {};
  const c = crunCase.run ? burstMedians.get(crunCase.name) : undefined;
  const goal = (k: BurstKind) => {
    if (u[k] === undefined || !u.spaced) return `${k}: not measured`;
    const within = u[k]! <= u.spaced * 1.1;
    const vsCrun = c?.[k] !== undefined ? ` and ${u[k]! <= c[k]! ? "at or below" : "above"} crun's ${ms(c[k]!)} ms` : "";
    return `${k === "seq" ? "sequential burst" : "parallel clients"} ${ms(u[k]!)} ms: ${within ? "within" : "not within"} 10 % of ucr's spaced ${ms(u.spaced)} ms (${((u[k]! / u.spaced - 1) * 100).toFixed(0)} %)${vsCrun}`;
  };
  burstTable.push("", `Goals (issue #15): ${goal("seq")}; ${goal("par")}.`);
  const f = burstMedians.get(floor.name);
  if (f?.par !== undefined && u.spaced) {
    // Ten launches in flight: each waits for the others' CPU. Even no runtime at all (the
    // kernel floor: namespaces, /proc, chroot, exec) cannot take ten at once within 10 % of
    // ucr's spaced figure when its own ten-client median is above that line.
    burstTable.push(
      "",
      `Ten clients against the kernel floor (no runtime: unshare + chroot + exec): its ten-client median is ${ms(f.par)} ms, ${(f.par / u.spaced).toFixed(2)}× ucr's spaced ${ms(u.spaced)} ms (${f.par <= u.spaced * 1.1 ? "within" : "not within"} 10 %); ucr's ten-client median is ${u.par !== undefined ? `${(u.par / f.par).toFixed(2)}× the floor's` : "not measured"}.`,
    );
  }
  notes.push(
    "What each timed command includes differs: `crun run` starts from a ready bundle (no image, no overlay; rootfs read-only), `podman run --rm` also resolves the image, mounts an overlay, starts conmon and removes the container before it exits; ucr resolves the image, mounts an overlay, makes cgroups and answers over HTTP, and removes the container in the untimed REMOVE.",
    "crun with `--detach` or without a monitor keeps no process per container; ucr keeps none either: one long-lived launcher (a Bun process, with a small reaper process as its parent; both shared by all containers of the agent; quiet, their memory given back, 10 s after the last container ends, and gone after a minute without one) waits for every container and reports its exit status; podman keeps conmon per container.",
    `Bursts: ucr launches back to back leave their containers until the series ends (REMOVE afterwards, untimed), so \`next LAUNCH as soon as WAIT answers\`; crun and podman remove theirs as part of the timed command. Parallel clients: ${PAR_CLIENTS} concurrent clients, each launching ${PAR_EACH} times back to back; every launch is one sample. ${BURST_ROUNDS} round(s), tools in rotated order.`,
  );
  const out = [
    ...header,
    "",
    "Latency of starting a container that runs `/bin/true` to its exit:",
    "",
    ...table,
    "",
    "What each row times:",
    "",
    ...cases.map((c) => `- ${c.name}: ${c.what}.`),
    "",
    `Bursts: the same tools spaced, back to back and from ${PAR_CLIENTS} clients at once (\`/bin/true\`, wall time of each launch to its end):`,
    "",
    ...burstTable,
    "",
    ...phaseLines,
    "",
    ...memTable,
    "",
    "Notes:",
    "",
    ...notes.map((n) => `- ${n}`),
    "",
  ].join("\n");
  console.log(`\n${out}`);
  writeResult("launch", out, quick || RUNS < 50, started);
}

await runBench("bench/launch.ts", main, cleanup, () => state.cleaning !== undefined);
