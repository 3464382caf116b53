// Benchmark (not a test): two ucr binaries, A and B, pulling and loading the same images in
// one run, interleaved (A B B A ...), so load from anything else on the machine falls on both
// alike. For checking that a change to the image pipeline made nothing slower.
//
//   bun bench/pull-ab.ts /path/to/ucr-A [/path/to/ucr-B (default dist/ucr)] [--runs N]
//
// Images (built once into /tmp/ucr-ab-cache): "many" (20,000 files of 1-8 KiB in 100 dirs,
// one gzip layer), "big" (3 gzip layers: 64 MiB random in 8 files, 32 MiB of text, busybox).
// Pulls come from a local docker-registry; loads from a docker-save archive; every store fresh.
import { commandRunner, runBench } from "./lib.ts";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { addImage, busyboxLayerTar, pushImage, saveArchive, tarDir, BUSYBOX_CONFIG } from "../test/helpers/images.ts";
import { startRegistry, type Registry } from "../test/helpers/registry.ts";
import { removeTree } from "../src/util/tree.ts";

const argv = process.argv.slice(2);
const runsArg = argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : 5;
const bins = argv.filter((a, i) => !a.startsWith("--") && argv[i - 1] !== "--runs");
if (bins.length < 1 || !Number.isInteger(RUNS) || RUNS < 1) {
  console.error("usage: bun bench/pull-ab.ts UCR_A [UCR_B] [--runs N]");
  process.exit(2);
}
const ROOT = dirname(import.meta.dir);
const A = bins[0]!;
const B = bins[1] ?? join(ROOT, "dist", "ucr");
const CACHE = "/tmp/ucr-ab-cache";
const VERSION = "ab-v1";
const PATH = process.env.PATH ?? "/usr/bin:/bin";

let stopping = false;
const { live, exec, reason, mustRun } = commandRunner({
  path: PATH,
  timeoutMs: 300_000,
  stdout: false,
  checkStop: () => {
    if (stopping) throw new Error("interrupted");
  },
});
let registry: Registry | undefined;
const temps: string[] = [];

async function cleanup(): Promise<void> {
  stopping = true;
  for (const p of live) p.kill("SIGKILL");
  for (const d of temps) removeTree(d);
  await registry?.stop();
}
process.on("SIGINT", () => void cleanup().finally(() => process.exit(130)));

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

function bytes(rand: () => number, size: number, text: boolean): Uint8Array {
  if (text) {
    let s = "";
    while (s.length < size) s += `${Math.floor(rand() * 1e6)} layer image registry manifest digest overlay mount\n`;
    return Buffer.from(s.slice(0, size));
  }
  const words = new Uint32Array(Math.ceil(size / 4));
  for (let i = 0; i < words.length; i++) words[i] = (rand() * 4294967296) >>> 0;
  return new Uint8Array(words.buffer, 0, size);
}

function layerOf(stage: string, fill: (root: string) => void): Uint8Array {
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  fill(stage);
  const tar = tarDir(stage, { format: "gnu" });
  rmSync(stage, { recursive: true, force: true });
  return tar;
}

async function ensureImages(): Promise<void> {
  if (existsSync(join(CACHE, `${VERSION}.done`))) return;
  console.error(`images: building into ${CACHE} (once)`);
  rmSync(CACHE, { recursive: true, force: true });
  mkdirSync(CACHE, { recursive: true });
  const rand = prng(20261201);
  const stage = join(CACHE, "stage");
  const many = layerOf(stage, (root) => {
    for (let d = 0; d < 100; d++) {
      const dir = join(root, "usr/share/app", `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 200; f++) writeFileSync(join(dir, `f${f}`), bytes(rand, 1024 + Math.floor(rand() * 7168), f % 2 === 0));
    }
  });
  const random = layerOf(stage, (root) => {
    for (let i = 0; i < 8; i++) writeFileSync(join(root, `blob${i}`), bytes(rand, 8 << 20, false));
  });
  const text = layerOf(stage, (root) => writeFileSync(join(root, "log.txt"), bytes(rand, 32 << 20, true)));
  const layout = join(CACHE, "layout");
  addImage(layout, { tag: "many", layers: [{ tar: many, compression: "gzip" }], config: BUSYBOX_CONFIG });
  addImage(layout, {
    tag: "big",
    layers: [
      { tar: busyboxLayerTar(), compression: "gzip" },
      { tar: random, compression: "gzip" },
      { tar: text, compression: "gzip" },
    ],
    config: BUSYBOX_CONFIG,
  });
  for (const name of ["many", "big"]) await saveArchive(layout, join(CACHE, `${name}.tar`), `${name}:1`, { srcTag: name });
  writeFileSync(join(CACHE, `${VERSION}.done`), "");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  await ensureImages();
  registry = await startRegistry();
  for (const name of ["many", "big"]) await pushImage(join(CACHE, "layout"), `${registry.host}/${name}:1`, { srcTag: name });
  const work = mkdtempSync("/tmp/ucr-ab-");
  temps.push(work);
  // Private copies, so a rebuild during the run changes nothing measured.
  const binA = join(work, "ucr-A");
  const binB = join(work, "ucr-B");
  copyFileSync(A, binA);
  copyFileSync(B, binB);
  await mustRun(["chmod", "755", binA, binB]);
  const cases = [
    { name: "pull many", args: (store: string) => ["pull", `${registry!.host}/many:1`, `--docker_store_dir=${store}`] },
    { name: "pull big", args: (store: string) => ["pull", `${registry!.host}/big:1`, `--docker_store_dir=${store}`] },
    { name: "load many", args: (store: string) => ["load", join(CACHE, "many.tar"), `--docker_store_dir=${store}`] },
    { name: "load big", args: (store: string) => ["load", join(CACHE, "big.tar"), `--docker_store_dir=${store}`] },
  ];
  const times = new Map<string, { A: number[]; B: number[] }>();
  let n = 0;
  for (let run = 0; run <= RUNS; run++) {
    for (const c of cases) {
      // A B on even runs, B A on odd ones; run 0 warms caches and is not counted.
      const order = run % 2 === 0 ? (["A", "B"] as const) : (["B", "A"] as const);
      for (const who of order) {
        const store = join(work, `s${n++}`);
        await mustRun(["sync"]);
        const r = await exec([who === "A" ? binA : binB, ...c.args(store)]);
        if (r.code !== 0) throw new Error(`${who} ${c.name}: ${reason(r)}`);
        removeTree(store);
        if (run === 0) continue;
        const t = times.get(c.name) ?? { A: [], B: [] };
        t[who].push(r.ms / 1000);
        times.set(c.name, t);
      }
    }
  }
  console.log(`A = ${A}\nB = ${B}\n${RUNS} interleaved runs each (after one warm-up), fresh store on disk each time.\n`);
  console.log("| case | A median s | B median s | B/A | A runs | B runs |\n|---|---:|---:|---:|---|---|");
  for (const [name, t] of times) {
    const a = median(t.A);
    const b = median(t.B);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(" ");
    console.log(`| ${name} | ${a.toFixed(3)} | ${b.toFixed(3)} | ${(b / a).toFixed(2)} | ${fmt(t.A)} | ${fmt(t.B)} |`);
  }
}

await runBench("pull-ab", main, cleanup, () => stopping);
