// Benchmark (not a test): how fast `ucr pull` / `ucr load` fill a store, against skopeo+umoci
// and podman, on the same images from the same local registry, on ext4 and on tmpfs.
//
//   bun bench/pull.ts [--runs N] [--quick]
//
// Prints a markdown table (median and min of N runs, peer/ucr ratio) and writes it to
// bench/results/pull-<date>.md. The big image is built once into /tmp/ucr-bench-cache.
import { commandRunner, mountsUnder, runBench, type RunResult, writeResult } from "./lib.ts";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { addImage, buildBusyboxImage, loadImage, pushImage, saveArchive, tarDir } from "../test/helpers/images.ts";
import { startRegistry, type Registry } from "../test/helpers/registry.ts";

// ---------------------------------------------------------------------------------------------
// Options and constants

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const runsArg = argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : quick ? 1 : 3;
if (!Number.isInteger(RUNS) || RUNS < 1) {
  console.error("usage: bun bench/pull.ts [--runs N] [--quick]");
  process.exit(2);
}

const ROOT = dirname(import.meta.dir);
const BUILT_UCR = join(ROOT, "dist", "ucr");
// The binary measured: a private copy of dist/ucr taken at start, so a rebuild during the run
// (bun run test builds it) neither changes what is measured nor removes it mid-run.
let UCR = BUILT_UCR;
const CACHE = "/tmp/ucr-bench-cache";
// Bump when the image recipe changes, so a stale cache is rebuilt rather than measured.
const CACHE_VERSION = "big-v1";
// Prefix of the tmpfs mount point; mkdtemp makes it unique so two runs never share one.
const TMPFS_PREFIX = "/tmp/ucr-bench-tmpfs-";
// A tool that takes longer than this on a ~250 MB image is broken, not slow.
const TIMEOUT_MS = 300_000;

const PATH = process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------------
// Processes: everything we start is tracked so an interrupted run can kill it.

const { live, exec, reason, mustRun } = commandRunner({ path: PATH, timeoutMs: TIMEOUT_MS, stdout: true, checkStop: () => checkStop() });

// ---------------------------------------------------------------------------------------------
// Cleanup: the registry, mounts and temp dirs go away however the run ends.

let registry: Registry | undefined;
/** Set before `mount` starts, so an interrupt during the mount still unmounts it. */
let tmpfsDir: string | undefined;
const tempDirs: string[] = [];
let cleaning: Promise<void> | undefined;

/**
 * Once cleanup has begun (Ctrl-C), the matrix must not go on: its next mkdir would land in the
 * unmounted tmpfs mount point, or in a store dir cleanup just removed. Called before each.
 */
function checkStop(): void {
  if (cleaning) throw new Error("interrupted");
}

function unmountUnder(dir: string, includeSelf: boolean): void {
  for (const mp of mountsUnder(dir)) {
    if (mp === dir && !includeSelf) continue;
    const r = Bun.spawnSync(["umount", mp], { stderr: "pipe" });
    if (r.exitCode !== 0) Bun.spawnSync(["umount", "-l", mp]); // busy: detach it anyway
  }
}

/** Remove a store, first unmounting anything a tool left mounted inside it. */
function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  unmountUnder(dir, false);
  rmSync(dir, { recursive: true, force: true });
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of live) p.kill("SIGKILL");
    // Wait for them (a killed `mount` may still complete), else the unmount below races them.
    await Promise.race([Promise.all([...live].map((p) => p.exited)), Bun.sleep(3000)]);
    for (const d of tempDirs) {
      try {
        removeTree(d);
      } catch (e) {
        console.error(`cleanup: ${d}: ${(e as Error).message}`);
      }
    }
    if (tmpfsDir) {
      const dir = tmpfsDir;
      tmpfsDir = undefined;
      unmountUnder(dir, true);
      // Only an empty mount point is removed: if the unmount failed, nothing below is touched.
      if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
      else console.error(`cleanup: ${dir} is still mounted; unmount it by hand`);
    }
    if (registry) {
      const r = registry;
      registry = undefined;
      await r.stop();
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
// Images: small (busybox) and big (3 gzip layers, ~250 MB unpacked), built once and cached.

// A seeded PRNG so the cached image is the same bytes every time it is rebuilt.
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomData(rand: () => number, size: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(size / 4));
  for (let i = 0; i < words.length; i++) words[i] = (rand() * 4294967296) >>> 0;
  return new Uint8Array(words.buffer, 0, size);
}

const WORDS = (
  "the of and to in is that for it as was with be by on not he this are or his from at which but have an they " +
  "container image layer registry manifest digest config rootfs overlay mount agent mesos task executor sandbox " +
  "volume network cgroup namespace process signal kernel filesystem inode block cache buffer socket thread error"
).split(" ");

/** Text like source or logs: compresses about 3-4x with gzip, as real text layers do. */
function textData(rand: () => number, size: number): Uint8Array {
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const words = 4 + Math.floor(rand() * 10);
    let line = `${Math.floor(rand() * 100000)}:`;
    for (let i = 0; i < words; i++) line += ` ${WORDS[Math.floor(rand() * WORDS.length)]}`;
    line += "\n";
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join("")).subarray(0, size);
}

interface ImageInfo {
  name: string;
  /** Tag in the cached OCI layout, and the tag pushed (NAME:1). */
  tag: string;
  layers: number;
  compressedBytes: number;
  uncompressedBytes: number;
  /** Regular files in the image, to check each tool really unpacked it. */
  files: number;
}

interface CacheManifest {
  version: string;
  images: ImageInfo[];
}

function buildBig(layout: string, stage: string): { files: number; uncompressed: number } {
  const rand = prng(20261122);
  let files = 0;
  let uncompressed = 0;
  const layerTar = (name: string, fill: (root: string) => void): Uint8Array => {
    const root = join(stage, name);
    mkdirSync(root, { recursive: true });
    fill(root);
    const tar = tarDir(root, { format: "gnu" });
    rmSync(root, { recursive: true, force: true });
    return tar;
  };
  const put = (path: string, data: Uint8Array) => {
    writeFileSync(path, data);
    files++;
    uncompressed += data.byteLength;
  };
  // 20,000 files of 1-8 KiB in 100 dirs, half text, half random: the metadata-bound layer.
  const small = layerTar("small-files", (root) => {
    for (let d = 0; d < 100; d++) {
      const dir = join(root, "usr", "share", "app", `d${String(d).padStart(3, "0")}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 200; f++) {
        const size = 1024 + Math.floor(rand() * 7 * 1024);
        const isText = (d * 200 + f) % 2 === 0;
        put(join(dir, `f${String(f).padStart(3, "0")}.${isText ? "txt" : "bin"}`), isText ? textData(rand, size) : randomData(rand, size));
      }
    }
  });
  // ~100 MB of incompressible data in 4 files: the bandwidth- and gunzip-bound layer.
  const large = layerTar("large-files", (root) => {
    mkdirSync(join(root, "opt", "models"), { recursive: true });
    for (let i = 0; i < 4; i++) put(join(root, "opt", "models", `blob${i}.bin`), randomData(rand, 25 * 1024 * 1024));
  });
  // 100 files of 256 KiB-1 MiB, two thirds text: something like a lib/ directory.
  const medium = layerTar("medium-files", (root) => {
    mkdirSync(join(root, "usr", "lib", "app"), { recursive: true });
    for (let i = 0; i < 100; i++) {
      const size = 256 * 1024 + Math.floor(rand() * 768 * 1024);
      put(
        join(root, "usr", "lib", "app", `lib${String(i).padStart(3, "0")}.so`),
        i % 3 === 2 ? randomData(rand, size) : textData(rand, size),
      );
    }
  });
  addImage(layout, {
    tag: "big",
    layers: [
      { tar: small, compression: "gzip", createdBy: "COPY small files (20000 x 1-8 KiB)" },
      { tar: large, compression: "gzip", createdBy: "COPY large files (4 x 25 MiB random)" },
      { tar: medium, compression: "gzip", createdBy: "COPY medium files (100 x 256 KiB-1 MiB)" },
    ],
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["/bin/sh"] },
  });
  return { files, uncompressed };
}

async function prepareImages(): Promise<CacheManifest> {
  const stampFile = join(CACHE, "cache.json");
  if (existsSync(stampFile)) {
    const m = JSON.parse(readFileSync(stampFile, "utf8")) as CacheManifest;
    if (m.version === CACHE_VERSION && m.images.every((i) => existsSync(join(CACHE, `${i.name}.tar`)))) {
      console.error(`images: using cache ${CACHE}`);
      return m;
    }
  }
  console.error(`images: building into ${CACHE} (once; later runs reuse it)`);
  const t0 = performance.now();
  rmSync(CACHE, { recursive: true, force: true });
  mkdirSync(CACHE, { recursive: true });
  const layout = join(CACHE, "layout");
  // Staged in memory where possible: 20,000 files deleted on the disk right before the disk
  // pass would slow its first runs (see Pass).
  const stage = mkdtempSync(existsSync("/dev/shm") ? "/dev/shm/ucr-bench-stage-" : join(CACHE, "stage-"));
  tempDirs.push(stage);
  buildBusyboxImage(layout, { tag: "small" });
  const big = buildBig(layout, stage);
  rmSync(stage, { recursive: true, force: true });
  const info = (name: string, files: number, uncompressed: number): ImageInfo => {
    const img = loadImage(layout, name);
    return {
      name,
      tag: name,
      layers: img.layers.length,
      compressedBytes: img.layers.reduce((s, l) => s + l.size, 0),
      uncompressedBytes: uncompressed,
      files,
    };
  };
  // busybox: one binary plus /etc/passwd and /etc/group.
  const busybox = Bun.file("/bin/busybox").size;
  const images = [info("small", 3, busybox), info("big", big.files, big.uncompressed)];
  for (const i of images) await saveArchive(layout, join(CACHE, `${i.name}.tar`), `${i.name}:1`, { srcTag: i.tag });
  const m: CacheManifest = { version: CACHE_VERSION, images };
  writeFileSync(stampFile, JSON.stringify(m, null, 2));
  console.error(`images: built in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Tools. Each case gets a fresh directory `dir` on the filesystem under test, holding its
// store(s) and its TMPDIR (podman stages blobs in TMPDIR, /var/tmp otherwise: on the tmpfs
// pass that would put part of its work on disk).

interface Outcome {
  ok: boolean;
  ms: number;
  reason?: string;
  /** Sub-timings worth reporting (ucr per-layer lines, skopeo vs umoci). */
  phases: string[];
}

type Mode = "pull" | "load";

interface Tool {
  name: string;
  mode: Mode;
  isUcr: boolean;
  run(dir: string, img: ImageInfo): Promise<Outcome>;
}

function envFor(dir: string): Record<string, string> {
  checkStop();
  const tmp = join(dir, "tmp");
  mkdirSync(tmp, { recursive: true });
  return { TMPDIR: tmp };
}

function single(r: RunResult, phases: string[] = []): Outcome {
  return r.code === 0 ? { ok: true, ms: r.ms, phases } : { ok: false, ms: r.ms, reason: reason(r), phases };
}

/**
 * ucr's own lines: "layer 1 abc: done, 20 MiB in 0.40s (...)" and the summary "(1.23s)",
 * plus what the summary does not see: process start, worker start-up and exit.
 */
function ucrPhases(r: RunResult): string[] {
  const lines = `${r.stderr}\n${r.stdout}`.split("\n").filter((l) => / done, |\(\d+\.\d+s\)$/.test(l));
  const out = lines.map((l) => l.replace(/^.*?: (\d+ layer\(s\)).*\((\d+\.\d+)s\)$/, "in-process total: $1 in $2s").trim());
  const inProcess = /\((\d+\.\d+)s\)\s*$/.exec(r.stdout.trim());
  if (inProcess)
    out.push(
      `wall ${(r.ms / 1000).toFixed(2)}s, so ${(r.ms / 1000 - Number(inProcess[1])).toFixed(2)}s outside the pull (start, workers, exit)`,
    );
  return out;
}

function imageRef(img: ImageInfo): string {
  if (!registry) throw new Error("registry is not running");
  return `${registry.host}/${img.name}:1`;
}

const ucrPull: Tool = {
  name: "ucr",
  mode: "pull",
  isUcr: true,
  async run(dir, img) {
    const r = await exec([UCR, "pull", imageRef(img), `--docker_store_dir=${join(dir, "store")}`], { env: envFor(dir) });
    return single(r, ucrPhases(r));
  },
};

const skopeoUmoci: Tool = {
  name: "skopeo+umoci",
  mode: "pull",
  isUcr: false,
  async run(dir, img) {
    const env = envFor(dir);
    const layout = join(dir, "oci");
    const s = await exec(["skopeo", "copy", "--quiet", "--src-tls-verify=false", `docker://${imageRef(img)}`, `oci:${layout}:t`], { env });
    if (s.code !== 0) return { ok: false, ms: s.ms, reason: `skopeo ${reason(s)}`, phases: [] };
    const u = await exec(["umoci", "unpack", "--image", `${layout}:t`, join(dir, "bundle")], { env });
    if (u.code !== 0) return { ok: false, ms: s.ms + u.ms, reason: `umoci ${reason(u)}`, phases: [] };
    return { ok: true, ms: s.ms + u.ms, phases: [`skopeo copy ${(s.ms / 1000).toFixed(2)}s, umoci unpack ${(u.ms / 1000).toFixed(2)}s`] };
  },
};

function podmanArgs(dir: string, driver: string): string[] {
  return ["podman", "--root", join(dir, "root"), "--runroot", join(dir, "runroot"), "--storage-driver", driver];
}

/** Storage driver podman uses on each filesystem: overlay, or vfs where overlay fails. */
const podmanDriver = new Map<string, string>();

function podmanTool(mode: Mode, fs: string): Tool {
  const name = () => `podman${mode === "load" ? " load" : ""}${podmanDriver.get(fs) === "vfs" ? " (vfs)" : ""}`;
  return {
    get name() {
      return name();
    },
    mode,
    isUcr: false,
    async run(dir, img) {
      const driver = podmanDriver.get(fs) ?? "overlay";
      const cmd =
        mode === "pull"
          ? [...podmanArgs(dir, driver), "pull", "--quiet", "--tls-verify=false", imageRef(img)]
          : [...podmanArgs(dir, driver), "load", "--quiet", "-i", join(CACHE, `${img.name}.tar`)];
      return single(await exec(cmd, { env: envFor(dir) }));
    },
  };
}

const ucrLoad: Tool = {
  name: "ucr load",
  mode: "load",
  isUcr: true,
  async run(dir, img) {
    const r = await exec([UCR, "load", join(CACHE, `${img.name}.tar`), `--docker_store_dir=${join(dir, "store")}`], { env: envFor(dir) });
    return single(r, ucrPhases(r));
  },
};

/** Can podman run here at all (installed, and able to start as this user)? */
async function podmanUsable(): Promise<string | null> {
  if (!Bun.which("podman")) return "podman is not installed";
  const probe = mkdtempSync("/var/tmp/ucr-bench-podman-probe-");
  tempDirs.push(probe);
  try {
    const r = await exec([...podmanArgs(probe, "vfs"), "images"], { env: envFor(probe), timeoutMs: 60_000 });
    return r.code === 0 ? null : `podman cannot run: ${reason(r)}`;
  } finally {
    removeTree(probe);
  }
}

/** Pick podman's driver on filesystem `fs` with a warm-up pull of the small image. */
async function choosePodmanDriver(fs: string, base: string, keep: boolean, small: ImageInfo): Promise<string> {
  const failures: string[] = [];
  for (const driver of ["overlay", "vfs"]) {
    const dir = join(base, `p-${driver}`);
    checkStop();
    mkdirSync(dir, { recursive: true });
    const r = await exec([...podmanArgs(dir, driver), "pull", "--quiet", "--tls-verify=false", imageRef(small)], {
      env: envFor(dir),
      timeoutMs: 120_000,
    });
    if (!keep) removeTree(dir);
    if (r.code === 0) {
      podmanDriver.set(fs, driver);
      return failures.length ? `${driver} (${failures.join("; ")})` : driver;
    }
    failures.push(`${driver} failed: ${reason(r)}`);
  }
  podmanDriver.set(fs, "overlay"); // both failed: keep overlay so its failure is what the table shows
  return `none works (${failures.join("; ")})`;
}

// ---------------------------------------------------------------------------------------------
// The matrix

interface Row {
  fs: string;
  image: string;
  mode: Mode;
  tool: string;
  isUcr: boolean;
  times: number[];
  failure?: string;
  /** Phases of the median run. */
  phases: string[];
}

const notes: string[] = [];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Regular files below `dir` (find, so it does not count against anyone's timing). */
function countFiles(dir: string): number {
  const r = Bun.spawnSync(["find", dir, "-type", "f", "-printf", "."], { stdout: "pipe", stderr: "ignore" });
  return r.stdout.byteLength;
}

/** Flush dirty pages of the filesystem under test, so one run's writeback does not slow the next. */
async function settle(base: string): Promise<void> {
  await exec(["sync", "-f", base], { timeoutMs: 120_000 });
}

/**
 * How a filesystem pass treats used stores. `keep`: every run gets its own new directory and
 * none is deleted until the pass ends. On ext4 without a journal (this machine's disk) the
 * inode allocator skips inodes freed in the last 60 s (fs/ext4/ialloc.c recently_deleted()),
 * scanning past each of them on every create: right after deleting the previous run's 20,000
 * files, GNU tar needs ~6 s of kernel time for the same layer it unpacks in ~0.8 s otherwise.
 * Deleting between runs would measure that, not the tools. tmpfs has no such effect and not
 * the room to keep every store, so there each run's store is deleted after it.
 */
interface Pass {
  fs: string;
  base: string;
  keep: boolean;
  cases: number;
}

async function runCase(pass: Pass, img: ImageInfo, tools: Tool[], rows: Row[]): Promise<void> {
  const { fs, base } = pass;
  const caseNo = pass.cases++;
  const caseRows = tools.map<Row>((t) => ({
    fs,
    image: img.name,
    mode: t.mode,
    tool: t.name,
    isUcr: t.isUcr,
    times: [],
    phases: [],
  }));
  const phasesByRun = tools.map(() => [] as { ms: number; phases: string[] }[]);
  const runOnce = async (i: number, run: number | "warm-up"): Promise<void> => {
    const tool = tools[i]!;
    const row = caseRows[i]!;
    const counted = run !== "warm-up";
    if (row.failure) return;
    // Short on purpose: podman refuses a --runroot longer than 50 characters.
    const dir = join(base, pass.keep ? `c${caseNo}t${i}${counted ? `r${run}` : "w"}` : `t${i}`);
    checkStop();
    removeTree(dir);
    mkdirSync(dir, { recursive: true });
    await settle(base);
    let out: Outcome;
    try {
      out = await tool.run(dir, img);
    } catch (e) {
      out = { ok: false, ms: 0, reason: (e as Error).message, phases: [] };
    }
    if (!out.ok) {
      row.failure = out.reason ?? "unknown";
    } else if (counted) {
      row.times.push(out.ms);
      phasesByRun[i]!.push({ ms: out.ms, phases: out.phases });
      // Once per case: a tool that "succeeds" without unpacking would look very fast.
      if (row.times.length === 1) {
        const n = countFiles(dir);
        if (n < img.files) notes.push(`${fs}/${img.name}/${tool.name}: only ${n} regular files in its store, expected >= ${img.files}`);
      }
    }
    if (!pass.keep) removeTree(dir);
  };
  // One uncounted warm-up each: binaries, the registry's blobs and podman's first-run setup
  // into memory, so run 1 is not special.
  for (let i = 0; i < tools.length; i++) await runOnce(i, "warm-up");
  // Rotate the order every run so no tool always runs right after the same other one.
  for (let r = 0; r < RUNS; r++) {
    for (let k = 0; k < tools.length; k++) await runOnce((k + r) % tools.length, r);
  }
  caseRows.forEach((row, i) => {
    const runs = phasesByRun[i]!;
    if (runs.length) {
      const m = median(runs.map((x) => x.ms));
      row.phases = [...runs].sort((a, b) => Math.abs(a.ms - m) - Math.abs(b.ms - m))[0]!.phases;
    }
    rows.push(row);
    const status = row.failure ? `failed: ${row.failure}` : `median ${(median(row.times) / 1000).toFixed(3)}s`;
    console.error(`  ${fs} ${img.name} ${row.tool}: ${status}`);
  });
}

async function fsType(path: string): Promise<string> {
  const out = await mustRun(["df", "-T", path]);
  const cols = out.trim().split("\n").at(-1)?.split(/\s+/) ?? [];
  const [dev = "?", type = "?"] = cols;
  // Whether ext4 has a journal changes how it allocates inodes (see Pass): say which it is.
  let journal = "";
  const task = `/sys/fs/ext4/${dev.replace(/^\/dev\//, "")}/journal_task`;
  if (type === "ext4" && existsSync(task)) journal = readFileSync(task, "utf8").trim() === "<none>" ? ", no journal" : ", journaled";
  return `${type} (${dev}${journal}, mounted on ${cols[6] ?? "?"})`;
}

async function runFs(pass: Pass, images: ImageInfo[], podmanOk: boolean, rows: Row[]): Promise<void> {
  const { fs, base } = pass;
  console.error(`\n== ${fs}: stores under ${base}, ${await fsType(base)}${pass.keep ? ", stores kept until the pass ends" : ""}`);
  const small = images.find((i) => i.name === "small")!;
  if (podmanOk) {
    const driver = await choosePodmanDriver(fs, base, pass.keep, small);
    console.error(`  podman storage driver on ${fs}: ${driver}`);
    if (driver !== "overlay") notes.push(`podman on ${fs} uses storage driver: ${driver}`);
  }
  for (const img of images) {
    const pull: Tool[] = [ucrPull, skopeoUmoci, ...(podmanOk ? [podmanTool("pull", fs)] : [])];
    await runCase(pass, img, pull, rows);
  }
  for (const img of images) {
    const load: Tool[] = [ucrLoad, ...(podmanOk ? [podmanTool("load", fs)] : [])];
    await runCase(pass, img, load, rows);
  }
  // Free the space (the disk pass keeps several GB); mounts first, in case a tool left any.
  for (const name of readdirSync(base)) removeTree(join(base, name));
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function report(rows: Row[], header: string[]): string {
  const out: string[] = [...header, ""];
  out.push("| filesystem | image | tool | median s | min s | peer/ucr |", "|---|---|---|---:|---:|---:|");
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.fs}|${r.image}|${r.mode}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const summary: string[] = [];
  for (const group of groups.values()) {
    const ucr = group.find((r) => r.isUcr);
    const ucrMed = ucr && !ucr.failure && ucr.times.length ? median(ucr.times) : undefined;
    for (const r of group) {
      const image = r.mode === "load" ? `${r.image} (docker-save archive)` : r.image;
      if (r.failure || r.times.length === 0) {
        out.push(`| ${r.fs} | ${image} | ${r.tool} | failed: ${r.failure ?? "no runs"} | | |`);
        continue;
      }
      const med = median(r.times);
      const ratio = r.isUcr ? "1.00" : ucrMed ? (med / ucrMed).toFixed(2) : "n/a";
      out.push(`| ${r.fs} | ${image} | ${r.tool} | ${fmt(med)} | ${fmt(Math.min(...r.times))} | ${ratio} |`);
    }
    const peers = group.filter((r) => !r.isUcr && !r.failure && r.times.length);
    const first = group[0]!;
    const label = `${first.fs} / ${first.image} / ${first.mode}`;
    if (peers.length === 0) summary.push(`- ${label}: no peer finished`);
    else {
      const best = peers.reduce((a, b) => (median(a.times) <= median(b.times) ? a : b));
      const bm = median(best.times);
      summary.push(
        ucrMed
          ? `- ${label}: fastest peer **${best.tool}** (${fmt(bm)} s); ucr ${fmt(ucrMed)} s, ratio ${(bm / ucrMed).toFixed(2)} (${bm >= ucrMed ? "ucr faster" : "ucr slower"})`
          : `- ${label}: fastest peer **${best.tool}** (${fmt(bm)} s); ucr failed`,
      );
    }
  }
  out.push("", "Fastest peer per (filesystem, image):", "", ...summary);
  const phaseLines = rows.filter((r) => r.phases.length);
  if (phaseLines.length) {
    out.push("", "Phases of the median run:", "");
    for (const r of phaseLines) {
      out.push(`- ${r.fs} / ${r.image} / ${r.mode} / ${r.tool}:`);
      for (const p of r.phases) out.push(`  - ${p}`);
    }
  }
  if (notes.length) out.push("", "Notes:", "", ...notes.map((n) => `- ${n}`));
  return `${out.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root (podman --root, mount -t tmpfs)");
  if (!existsSync(BUILT_UCR)) throw new Error(`${BUILT_UCR} is missing: cd ${ROOT} && bun run build`);
  const binDir = mkdtempSync("/var/tmp/ucr-bench-bin-");
  tempDirs.push(binDir);
  UCR = join(binDir, "ucr");
  copyFileSync(BUILT_UCR, UCR);
  chmodSync(UCR, 0o755);
  const loadBefore = loadavg();
  for (const t of ["skopeo", "umoci", "docker-registry", "tar", "gzip"]) {
    if (!Bun.which(t) && !existsSync(`/usr/bin/${t}`)) throw new Error(`${t} is not installed`);
  }
  const started = performance.now();
  const cache = await prepareImages();
  const images = ["small", "big"].map((n) => cache.images.find((i) => i.name === n)!);

  registry = await startRegistry();
  console.error(`registry: ${registry.url} (storage ${registry.storageDir})`);
  for (const img of images) await pushImage(join(CACHE, "layout"), `${registry.host}/${img.name}:1`, { srcTag: img.tag });

  const podmanProblem = await podmanUsable();
  if (podmanProblem) {
    console.error(`podman skipped: ${podmanProblem}`);
    notes.push(`podman skipped: ${podmanProblem}`);
  }

  const rows: Row[] = [];
  const diskBase = mkdtempSync("/var/tmp/ucr-bench-");
  tempDirs.push(diskBase);
  const diskFs = await fsType(diskBase);
  notes.push(
    `On disk, stores are not deleted between runs but at the end of the pass${diskFs.includes("no journal") ? ": this ext4 has no journal, and such an ext4 skips inodes freed in the last 60 s on every create (recently_deleted() in fs/ext4/ialloc.c), so a run right after deleting 20,000 files pays seconds of kernel time for it. Anything else deleting many files on the same filesystem during the run still adds that noise" : " (on ext4 without a journal, creating files right after deleting many is much slower)"}.`,
  );
  await runFs({ fs: "disk", base: diskBase, keep: true, cases: 0 }, images, !podmanProblem, rows);

  const tmpfs = mkdtempSync(TMPFS_PREFIX);
  tmpfsDir = tmpfs;
  const m = await exec(["mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", tmpfs]);
  let tmpfsFs = "not mounted";
  if (m.code !== 0) {
    notes.push(`tmpfs pass skipped: mount failed: ${reason(m)}`);
  } else {
    tmpfsFs = await fsType(tmpfs);
    await runFs({ fs: "tmpfs", base: tmpfs, keep: false, cases: 0 }, images, !podmanProblem, rows);
  }

  const versions = async (cmd: string[]) => (await exec(cmd)).stdout.trim().split("\n")[0] ?? "?";
  const header = [
    `# ucr pull / load vs peers, ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`,
    "",
    `Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}.`,
    `Tools: ${await versions([UCR, "version"])}; ${await versions(["skopeo", "--version"])}; ${await versions(["umoci", "--version"])}; ${await versions(["podman", "--version"])}.`,
    `Filesystems: disk = ${diskFs}; tmpfs = ${tmpfsFs}. The registry (distribution, plain http on 127.0.0.1) keeps its blobs on disk (page-cached).`,
    `Images: ${images
      .map(
        (i) =>
          `${i.name}: ${i.layers} gzip layer(s), ${(i.compressedBytes / 2 ** 20).toFixed(1)} MiB compressed, ${(i.uncompressedBytes / 2 ** 20).toFixed(1)} MiB in ${i.files} files`,
      )
      .join("; ")}.`,
    `Method: ${RUNS} timed run(s) per case after one uncounted warm-up; wall time of the whole command(s); every store and TMPDIR fresh per run (a new directory; on tmpfs the previous run's is deleted first, on disk all are kept until the pass ends, see the notes), \`sync -f\` before each run, all outside the timed region; tool order rotated per run. skopeo+umoci is \`skopeo copy\` to an OCI layout then \`umoci unpack\`, timed together. Load: \`ucr load\` vs \`podman load -i\` of the same docker-save archive.`,
    `Load average (1 min) at start ${loadBefore[0]?.toFixed(2)}, at end ${loadavg()[0]?.toFixed(2)}: anything else running on the machine shows up as noise here.`,
    `peer/ucr = peer median / ucr median: > 1 means ucr is faster.`,
  ];
  const text = report(rows, header);
  console.log(`\n${text}`);
  writeResult("pull", text, RUNS === 1, started);
}

await runBench("bench/pull.ts", main, cleanup, () => cleaning !== undefined);
