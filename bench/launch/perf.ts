// The perf probe: where a ucr launch spends its time, from kernel events of the processes
// involved (agent -> `ucr __init` stage 1 -> stage 2 -> exec of the workload).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RunningAgent } from "../../test/helpers/agent.ts";
import { PATH, PROBE_GAP_MS, PROBES } from "./options.ts";
import { median, ms, pct } from "./report.ts";
import { exec, live, reason } from "./state.ts";
import { ucrOnce, type UcrTiming } from "./ucr.ts";

interface PerfEvent {
  pid: number;
  t: bigint; // ns, CLOCK_MONOTONIC
  event: string;
  trace: string;
}

function parsePerf(text: string): PerfEvent[] {
  const out: PerfEvent[] = [];
  // "ucr  30340/30341  5231.648861234: sched:sched_process_fork: comm=ucr pid=... child_pid=..."
  const re = /^\s*.*?\s(\d+)\/(\d+)\s+(\d+)\.(\d+):\s+([\w:]+):\s*(.*)$/;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (!m) continue;
    const frac = m[4]!.padEnd(9, "0").slice(0, 9);
    out.push({ pid: Number(m[1]), t: BigInt(m[3]!) * 1_000_000_000n + BigInt(frac), event: m[5]!, trace: m[6]! });
  }
  return out;
}

const PHASES = [
  "agent: request to stage-1 exec (HTTP, rootfs dirs, cgroups, spec, spawn)",
  "stage 1 start-up (Bun runtime + init code) to its unshare",
  "stage 1 spawns stage 2 (to its exec)",
  "stage 2 start-up (Bun runtime + init code) to unshare(NEWNS)",
  "stage 2 mounts (overlay, proc, sys, dev, /etc files, sandbox) to pivot_root",
  "stage 2 pivot_root + umount2(old root, MNT_DETACH) returns",
  "stage 2 user, chdir, PATH lookup (JS) to its first cgroup.procs write",
  "that write until the kernel has moved it (v1 attach: waits for an RCU grace period)",
  "stage 2 remaining cgroup attaches to exec of /bin/true",
  "exec of /bin/true to LAUNCH response (fd 3 EOF, pid file, checkpoint, HTTP)",
  "/bin/true runs and exits",
  "workload exit to stage-1 exit (status file, Bun exit)",
  "stage-1 exit to WAIT response (reap, status, HTTP)",
] as const;

/** The same launch through the long-lived launcher, which forks the container's process (src/runtime/forked.ts). */
const LAUNCHER_PHASES = [
  "agent + launcher: request to the fork of the container's process (HTTP, rootfs dirs, cgroups, spec, hand-off, spec read, stdio)",
  "fork to its unshare(UTS, IPC) (the launcher opens cgroup files and the host's /proc through it)",
  "new namespaces and mounts (overlay, proc, sys, dev, /etc files, sandbox: the launcher decides, the process mounts) to pivot_root",
  "pivot_root + umount2(old root, MNT_DETACH) returns",
  "user, HOME, working dir (the launcher), exec request, bounding set, rlimits, capabilities to the first cgroup join write",
  "that write until the kernel has moved it",
  "remaining cgroup joins, signals, no_new_privs, seccomp to exec of /bin/true",
  "exec of /bin/true to LAUNCH response (fd 3 EOF, pid file, reply, checkpoint, HTTP)",
  "/bin/true runs and exits",
  "workload exit to WAIT response (launcher reaps, status file, exit event, HTTP)",
] as const;

export async function perfProbe(a: RunningAgent, ucr: string, dir: string): Promise<string[]> {
  if (!Bun.which("perf")) return ["(no perf installed: phase breakdown skipped)"];
  const data = join(dir, "perf.data");
  const perf = Bun.spawn(
    [
      "perf",
      "record",
      "-q",
      "-k",
      "CLOCK_MONOTONIC",
      "-a",
      "-o",
      data,
      "-e",
      "sched:sched_process_fork",
      "-e",
      "sched:sched_process_exec",
      "-e",
      "sched:sched_process_exit",
      "-e",
      "syscalls:sys_enter_unshare",
      "-e",
      "syscalls:sys_enter_pivot_root",
      "-e",
      "syscalls:sys_exit_umount",
      "-e",
      "cgroup:cgroup_attach_task",
      // Stage 2 is PID 1 of its namespace, so it joins a cgroup by writing the one byte "1".
      "-e",
      "syscalls:sys_enter_write",
      "--filter",
      "count == 1",
    ],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH } },
  );
  live.add(perf);
  // perf has no "ready" signal; it is recording well within this.
  await Bun.sleep(1000);
  const probes: UcrTiming[] = [];
  // process.hrtime counts from this process's start, perf from boot (CLOCK_MONOTONIC): the
  // offset comes from spawns whose exec the kernel records, between our two clock readings.
  const marks: { pid: number; before: bigint; after: bigint }[] = [];
  try {
    if (perf.exitCode !== null) return [`(perf record failed: ${(await new Response(perf.stderr).text()).trim().slice(0, 200)})`];
    for (let i = 0; i < 5; i++) {
      const before = process.hrtime.bigint();
      const p = Bun.spawn(["/bin/true"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
      const after = process.hrtime.bigint();
      marks.push({ pid: p.pid, before, after });
      await p.exited;
    }
    for (let i = 0; i < PROBES; i++) {
      // Spaced as the timed runs are (the other cases run between two ucr launches there).
      await Bun.sleep(PROBE_GAP_MS);
      probes.push(await ucrOnce(a));
    }
    await Bun.sleep(200);
  } finally {
    perf.kill("SIGINT");
    await perf.exited;
    live.delete(perf);
  }
  const script = await exec(["perf", "script", "-i", data, "-F", "comm,pid,tid,time,event,trace", "--ns"], {
    stdout: true,
    timeoutMs: 120_000,
  });
  if (script.code !== 0) return [`(perf script failed: ${reason(script)})`];
  const events = parsePerf(script.stdout);
  if (process.env.LAUNCH_DEBUG)
    writeFileSync(
      "/tmp/launch-perf-debug.txt",
      `${JSON.stringify(probes.map((p) => [p.id, String(p.t0), String(p.t1), String(p.t2)]))}\n${script.stdout}`,
    );

  const parent = new Map<number, number>(); // child pid (tid) -> forking process (tgid)
  const forks = new Map<number, bigint>(); // child pid -> when it was forked
  const execs = new Map<number, { t: bigint; file: string }[]>();
  const unshares = new Map<number, bigint[]>();
  const pivots = new Map<number, bigint>();
  const umounts = new Map<number, bigint>(); // last umount2 return per process
  const attaches = new Map<number, bigint[]>(); // attached pid -> times its cgroup moves completed
  const writes1 = new Map<number, bigint>(); // first one-byte write per process
  const writes1All = new Map<number, bigint[]>(); // every one-byte write per process
  const exits = new Map<number, bigint>(); // tgid -> last thread exit
  for (const e of events) {
    if (e.event === "sched:sched_process_fork") {
      const child = Number(/child_pid=(\d+)/.exec(e.trace)?.[1]);
      parent.set(child, e.pid);
      forks.set(child, e.t);
    } else if (e.event === "sched:sched_process_exec") {
      const file = /filename=(\S+)/.exec(e.trace)?.[1] ?? "";
      execs.set(e.pid, [...(execs.get(e.pid) ?? []), { t: e.t, file }]);
    } else if (e.event === "syscalls:sys_enter_unshare") {
      unshares.set(e.pid, [...(unshares.get(e.pid) ?? []), e.t]);
    } else if (e.event === "syscalls:sys_enter_pivot_root") {
      pivots.set(e.pid, e.t);
    } else if (e.event === "syscalls:sys_exit_umount") {
      umounts.set(e.pid, e.t);
    } else if (e.event === "syscalls:sys_enter_write") {
      if (!writes1.has(e.pid)) writes1.set(e.pid, e.t);
      writes1All.set(e.pid, [...(writes1All.get(e.pid) ?? []), e.t]);
    } else if (e.event === "cgroup:cgroup_attach_task") {
      // The task moved, not the writer (the same here: stage 2 joins by itself).
      const moved = Number(/ pid=(\d+)/.exec(e.trace)?.[1] ?? e.pid);
      attaches.set(moved, [...(attaches.get(moved) ?? []), e.t]);
    } else if (e.event === "sched:sched_process_exit") {
      const prev = exits.get(e.pid);
      if (prev === undefined || e.t > prev) exits.set(e.pid, e.t);
    }
  }
  // The tightest bracket wins; its half-width bounds the error of phases 1, 7 and 10.
  let offset: bigint | undefined;
  let width = 0n;
  for (const m of marks) {
    const ex = execs.get(m.pid)?.find((x) => x.file === "/bin/true" || x.file === "/usr/bin/true");
    if (!ex) continue;
    const w = m.after - m.before;
    if (offset === undefined || w < width) {
      offset = ex.t - (m.before + m.after) / 2n;
      width = w;
    }
  }
  if (offset === undefined) return ["(perf probe: no calibration spawn seen in the kernel events)"];
  for (const p of probes) {
    p.t0 += offset;
    p.t1 += offset;
    p.t2 += offset;
  }
  const agentPid = a.proc.pid;
  const stage1s = [...execs.entries()]
    .filter(([pid, ex]) => parent.get(pid) === agentPid && ex.some((x) => x.file === ucr))
    .map(([pid]) => pid);
  const rows: number[][] = PHASES.map(() => []);
  let matched = 0;
  for (const p of probes) {
    // The stage 1 this LAUNCH started: exec'd by the agent between request and response.
    const s1 = stage1s.find((pid) => {
      const t = execs.get(pid)!.find((x) => x.file === ucr)!.t;
      return t >= p.t0 && t <= p.t1;
    });
    if (s1 === undefined) continue;
    const s2 = [...execs.keys()].find((pid) => parent.get(pid) === s1 && execs.get(pid)!.some((x) => x.file === ucr));
    if (s2 === undefined) continue;
    const s1exec = execs.get(s1)!.find((x) => x.file === ucr)!.t;
    const s1unshare = unshares.get(s1)?.[0];
    const s2exec = execs.get(s2)!.find((x) => x.file === ucr)!.t;
    const s2unshare = unshares.get(s2)?.[0];
    const pivot = pivots.get(s2);
    const umounted = umounts.get(s2);
    const attached = attaches.get(s2)?.[0];
    const written = writes1.get(s2);
    const wexec = execs.get(s2)!.find((x) => x.file !== ucr)?.t;
    const wexit = exits.get(s2);
    const s1exit = exits.get(s1);
    const marks = [p.t0, s1exec, s1unshare, s2exec, s2unshare, pivot, umounted, written, attached, wexec, p.t1, wexit, s1exit, p.t2];
    if (marks.some((m) => m === undefined)) continue;
    const ts = marks as bigint[];
    // The WAIT request goes out at t1; the workload usually exits before that, so the two
    // timelines overlap there: the LAUNCH response and the workload's exit are each measured
    // from exec of /bin/true.
    const d = (x: bigint, y: bigint) => Number(y - x) / 1e6;
    const vals = [
      ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => d(ts[i]!, ts[i + 1]!)), // request .. exec of /bin/true
      d(ts[9]!, ts[10]!), // exec .. LAUNCH response
      d(ts[9]!, ts[11]!), // exec .. workload exit
      d(ts[11]!, ts[12]!), // workload exit .. stage-1 exit
      d(ts[12]!, ts[13]!), // stage-1 exit .. WAIT response
    ];
    for (const [i, v] of vals.entries()) rows[i]!.push(v);
    matched++;
  }
  if (matched === 0) {
    // The launcher model: the container's process is forked by the launcher during the request;
    // it is the process that execs /bin/true between request and response.
    const lrows: number[][] = LAUNCHER_PHASES.map(() => []);
    // Per launch: stage 2's one-byte writes and its cgroup moves before the exec.
    const joins: { writes: number; moves: number }[] = [];
    for (const p of probes) {
      const s2 = [...execs.entries()].find(([, ex]) =>
        ex.some((x) => (x.file === "/bin/true" || x.file === "/usr/bin/true") && x.t >= p.t0 && x.t <= p.t1),
      )?.[0];
      if (s2 === undefined) continue;
      const wexec = execs.get(s2)!.find((x) => x.file !== ucr)!.t;
      const forked = forks.get(s2);
      const after = (xs: bigint[] | undefined) => xs?.find((t) => t >= p.t0 && t <= wexec);
      const s2unshare = after(unshares.get(s2));
      const pivot = pivots.get(s2);
      const umounted = umounts.get(s2);
      // The first one-byte write of this launch (its first cgroup join).
      const written = after(writes1All.get(s2));
      const attached = after(attaches.get(s2));
      const wexit = exits.get(s2);
      const marks = [p.t0, forked, s2unshare, pivot, umounted, written, attached, wexec];
      if (marks.some((m) => m === undefined) || wexit === undefined) continue;
      const ts = marks as bigint[];
      const d = (x: bigint, y: bigint) => Number(y - x) / 1e6;
      const vals = [...[0, 1, 2, 3, 4, 5, 6].map((i) => d(ts[i]!, ts[i + 1]!)), d(wexec, p.t1), d(wexec, wexit), d(wexit, p.t2)];
      for (const [i, v] of vals.entries()) lrows[i]!.push(v);
      const inLaunch = (xs: bigint[] | undefined) => (xs ?? []).filter((t) => t >= p.t0 && t <= wexec).length;
      joins.push({ writes: inLaunch(writes1All.get(s2)), moves: inLaunch(attaches.get(s2)) });
      matched++;
    }
    if (matched === 0)
      return [`(perf probe: none of ${probes.length} launches could be matched to kernel events; ${events.length} events seen)`];
    const out = [
      `Phases of a ucr LAUNCH + WAIT from kernel events, launcher model (\`perf record -a\` of fork, exec, exit, unshare, pivot_root, umount, one-byte write and cgroup attach; ${matched} of ${probes.length} extra launches, medians; not part of the timings above):`,
      "",
      "| phase | median ms | p95 ms |",
      "|---|---:|---:|",
    ];
    for (const [i, name] of LAUNCHER_PHASES.entries())
      out.push(`| ${i + 1}. ${name} | ${ms(median(lrows[i]!))} | ${ms(pct(lrows[i]!, 95))} |`);
    const total = probes.map((p) => Number(p.t2 - p.t0) / 1e6);
    out.push(
      "",
      `(LAUNCH + WAIT: median ${ms(median(total))} ms. Phases 8-10 overlap: the LAUNCH response and the workload's exit are each measured from its exec. Client and kernel clocks aligned within ±${(Number(width) / 2e6).toFixed(2)} ms.)`,
    );
    const kinds = [...new Set(joins.map((j) => `${j.writes} one-byte write(s) and ${j.moves} cgroup move(s)`))];
    out.push(
      "",
      `Cgroup joins seen per launch (the container's process, before its exec): ${kinds.join("; or ")}. A one-byte write to a v1 \`tasks\` file is \`0\`: it moves the writing thread only, which the kernel does without its threadgroup lock in either lock mode (kernel/cgroup/cgroup.c, cgroup_procs_write_start); a pid written to cgroup.procs (several bytes) would take it.`,
    );
    return out;
  }
  const out = [
    `Phases of a ucr LAUNCH + WAIT from kernel events (\`perf record -a\` of fork, exec, exit, unshare, pivot_root, umount, one-byte write and cgroup attach; ${matched} of ${probes.length} extra launches, medians; not part of the timings above):`,
    "",
    "| phase | median ms | p95 ms |",
    "|---|---:|---:|",
  ];
  for (const [i, name] of PHASES.entries()) out.push(`| ${i + 1}. ${name} | ${ms(median(rows[i]!))} | ${ms(pct(rows[i]!, 95))} |`);
  const launch = probes.map((p) => Number(p.t1 - p.t0) / 1e6);
  const total = probes.map((p) => Number(p.t2 - p.t0) / 1e6);
  out.push(
    "",
    `(LAUNCH = phases 1-10: median ${ms(median(launch))} ms; LAUNCH + WAIT: ${ms(median(total))} ms. Phases 11-12 start while the LAUNCH response is on its way, so they overlap phase 10 when /bin/true exits first. Client and kernel clocks aligned within ±${(Number(width) / 2e6).toFixed(2)} ms.)`,
  );
  return out;
}
