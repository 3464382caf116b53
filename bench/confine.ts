// Benchmark (not a test): what confinement adds to a launch. In the agent: deciding a
// container's confinement (the filter cached) and compiling a filter (what the cache saves).
// In the init stage: its confinement steps (bounding set, capability sets, signals reset,
// no_new_privs, the seccomp filter), and the masked and read-only kernel files over a fresh
// /proc and /sys, timed in child processes (N each, from source, not the compiled binary)
// that then exit, as stage 2 does before execve. bench/launch.ts's phase table shows the
// same steps inside real launches (phases 4 and 6).
//
//   bun bench/confine.ts [--runs N]        (as root; prints a table, writes nothing)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const argv = process.argv.slice(2);

if (argv[0] === "--stage2") {
  // One child: the init stage's steps, timed from the first to the last, then exit, as a
  // nested container's stage 2, started for its launch (top-level containers are forked by the
  // launcher and make these calls natively, see src/ffi/child.c.ts; "warm" repeats them once first).
  // container's stage 2, started for its launch.
  const { applyCapabilities, confineBeforeUserSwitch, seccompProgram, lockDown } = await import("../src/runtime/confine.ts");
  const spec = JSON.parse(readFileSync(argv[1]!, "utf8"));
  if (argv[2] === "warm") {
    confineBeforeUserSwitch(spec, 0);
    applyCapabilities(spec, 0);
  }
  const t0 = performance.now();
  const program = seccompProgram(spec);
  confineBeforeUserSwitch(spec, 0);
  applyCapabilities(spec, 0);
  lockDown(spec, program);
  const t1 = performance.now();
  process.stdout.write(`${t1 - t0}\n`);
  process.exit(0);
}

if (argv[0] === "--kernel-files") {
  // One child, in a mount namespace of its own: a fresh /proc and /sys (as stage 2 mounts them
  // in a rootfs), then the masks and read-only binds over them, timed; and the signal reset.
  const libc = await import("../src/ffi/libc.ts");
  const { kernelFilesHere, protectKernelFiles } = await import("../src/runtime/mounts.ts");
  const { ignoredSignals } = await import("../src/runtime/confine.ts");
  const dir = argv[1]!;
  // The agent's lookup of which files this kernel has.
  const files = kernelFilesHere();
  libc.unshare(libc.CLONE_NEWNS);
  libc.mount(null, "/", null, libc.MS_REC | libc.MS_SLAVE);
  libc.mount("proc", join(dir, "proc"), "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC);
  libc.mount("sysfs", join(dir, "sys"), "sysfs", libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC);
  const open = (p: string) => libc.openat(libc.AT_FDCWD, p, libc.O_PATH | libc.O_CLOEXEC);
  const [proc, sys, nul] = [open(join(dir, "proc")), open(join(dir, "sys")), open("/dev/null")];
  const t0 = performance.now();
  protectKernelFiles(proc, sys, nul, files);
  const t1 = performance.now();
  libc.resetSignals(ignoredSignals());
  const t2 = performance.now();
  process.stdout.write(`${t1 - t0} ${t2 - t1}\n`);
  process.exit(0);
}

const runsAt = argv.indexOf("--runs");
const RUNS = runsAt >= 0 ? Number(argv[runsAt + 1]) : 40;
if (process.getuid?.() !== 0) {
  console.error("bench/confine.ts: run as root (the init stage's steps need CAP_SETPCAP)");
  process.exit(2);
}

const { Confinement } = await import("../src/agent/confinement.ts");
const { loadFlags } = await import("../src/config/flags.ts");
const { compileFilter } = await import("../src/runtime/seccomp/bpf.ts");
const { expandProfile, parseProfile, nativeArch } = await import("../src/runtime/seccomp/profile.ts");
const { capabilitySet, DEFAULT_CAPABILITIES } = await import("../src/mesos/capabilities.ts");
const builtin = (await import("../src/runtime/seccomp/default.json")).default;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(2)} ms`);
function time(fn: () => void, n: number): number {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    xs.push(performance.now() - t);
  }
  return median(xs);
}

const flags = loadFlags([], {}).values;
const confinement = new Confinement(flags);
const spec = confinement.forLaunch(undefined, "bench");
const perLaunch = time(() => confinement.forLaunch(undefined, "bench"), 2000);
const profile = parseProfile(JSON.stringify(builtin));
const defaults = capabilitySet(DEFAULT_CAPABILITIES);
const compile = time(() => compileFilter(expandProfile(profile, nativeArch()!, defaults, confinement.kernel)), 50);
const parse = time(() => parseProfile(JSON.stringify(builtin)), 50);
const specBytes = JSON.stringify(spec).length;

const dir = mkdtempSync(join(tmpdir(), "ucr-bench-confine-"));
const stage2 = { warm: [] as number[], cold: [] as number[], files: [] as number[], signals: [] as number[] };
try {
  const file = join(dir, "confine.json");
  writeFileSync(file, JSON.stringify(spec));
  for (let i = 0; i < RUNS; i++) {
    for (const mode of ["warm", "cold"] as const) {
      const p = Bun.spawnSync([process.execPath, import.meta.path, "--stage2", file, mode], { stderr: "pipe" });
      if (p.exitCode !== 0) throw new Error(`stage 2 child failed: ${p.stderr.toString()}`);
      stage2[mode].push(Number(p.stdout.toString().trim()));
    }
    for (const d of ["proc", "sys"]) (await import("node:fs")).mkdirSync(join(dir, d), { recursive: true });
    const k = Bun.spawnSync([process.execPath, import.meta.path, "--kernel-files", dir], { stderr: "pipe" });
    if (k.exitCode !== 0) throw new Error(`kernel-files child failed: ${k.stderr.toString()}`);
    const [files, signals] = k.stdout.toString().trim().split(" ").map(Number);
    stage2.files.push(files!);
    stage2.signals.push(signals!);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(`| step | median |
|---|---|
| agent: confinement of one launch (filter cached) | ${fmt(perLaunch)} |
| agent: compiling the default filter (what the cache saves per launch) | ${fmt(compile)} |
| agent: parsing the default profile (once at start-up) | ${fmt(parse)} |
| init stage, started ahead (warmed up): bounding set, capset, ambient, signals, no_new_privs, seccomp | ${fmt(median(stage2.warm))} |
| init stage, started for the launch (nested containers): the same, first calls cold | ${fmt(median(stage2.cold))} |
| init stage, warmed up: masked and read-only /proc and /sys files (runc's lists, as this kernel has them) | ${fmt(median(stage2.files))} |
| init stage, warmed up: ignored signals to SIG_DFL, none blocked (part of the rows above) | ${fmt(median(stage2.signals))} |

Program: ${(spec.seccomp!.program.length * 0.75) / 8} instructions; confinement adds ${specBytes} bytes to the launch spec.
Runs on a shared machine: numbers move with its load (${(await import("node:os"))
  .loadavg()
  .map((l) => l.toFixed(2))
  .join(" ")}).`);
