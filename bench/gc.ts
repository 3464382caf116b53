// PRUNE_IMAGES on a store of 100 images (each its own layer plus a shared one): how long it
// takes and how much of that the agent's server thread is busy. Run: bun bench/gc.ts [N].
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent } from "../test/helpers/agent.ts";

const N = Number(process.argv[2] ?? 100);
const ROOT = join(import.meta.dir, "..");
const UCR = join(ROOT, "dist", "ucr");
const work = mkdtempSync(join(tmpdir(), "ucr-bench-gc-"));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function run(cmd: string[]): Buffer {
  const r = Bun.spawnSync(cmd, { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** One docker-save archive (manifest.json layout) holding N images, made with GNU tar. */
function makeArchive(): string {
  const stage = join(work, "archive");
  mkdirSync(stage, { recursive: true });
  const shared = join(work, "shared");
  mkdirSync(join(shared, "bin"), { recursive: true });
  run(["cp", "/bin/busybox", join(shared, "bin/busybox")]);
  const sharedTar = run(["tar", "--numeric-owner", "--mtime=@0", "-C", shared, "-cf", "-", "."]);
  const sharedId = sha(sharedTar);
  mkdirSync(join(stage, sharedId));
  writeFileSync(join(stage, sharedId, "layer.tar"), sharedTar);
  const manifest = [];
  for (let i = 0; i < N; i++) {
    const dir = join(work, `img${i}`);
    mkdirSync(join(dir, "data"), { recursive: true });
    for (let f = 0; f < 20; f++) writeFileSync(join(dir, "data", `f${f}`), `image ${i} file ${f}\n`.repeat(50));
    const tar = run(["tar", "--numeric-owner", "--mtime=@0", "-C", dir, "-cf", "-", "."]);
    const id = sha(tar);
    mkdirSync(join(stage, id));
    writeFileSync(join(stage, id, "layer.tar"), tar);
    const config = JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/busybox", "true"] },
      rootfs: { type: "layers", diff_ids: [`sha256:${sharedId}`, `sha256:${id}`] },
    });
    const configId = sha(Buffer.from(config));
    writeFileSync(join(stage, `${configId}.json`), config);
    manifest.push({ Config: `${configId}.json`, RepoTags: [`bench/img${i}:1`], Layers: [`${sharedId}/layer.tar`, `${id}/layer.tar`] });
  }
  writeFileSync(join(stage, "manifest.json"), JSON.stringify(manifest));
  const out = join(work, "images.tar");
  run(["tar", "-C", stage, "-cf", out, "."]);
  return out;
}

async function main(): Promise<void> {
  const archive = makeArchive();
  const wd = join(work, "wd");
  const loadStart = performance.now();
  run([UCR, "load", archive, `--work_dir=${wd}`]);
  const loadMs = performance.now() - loadStart;

  const agent = await startAgent({ binary: UCR, args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, "--cgroups_root=ucr"] });
  const api = (body: unknown) => agent.call(body);

  // While pruning, the server keeps answering: time GET_HEALTH calls made meanwhile.
  let pruning = true;
  const health: number[] = [];
  const prober = (async () => {
    while (pruning) {
      const t = performance.now();
      await (await api({ type: "GET_HEALTH" })).text();
      health.push(performance.now() - t);
      await Bun.sleep(2);
    }
  })();
  const t0 = performance.now();
  const res = await api({ type: "PRUNE_IMAGES" });
  const wall = performance.now() - t0;
  pruning = false;
  await prober;
  if (res.status !== 200) throw new Error(`PRUNE_IMAGES: ${res.status} ${await res.text()}`);
  await Bun.sleep(50);
  await agent.stop();
  const log = agent.log();
  const m =
    /image gc: removed (\d+) image\(s\).*?, (\d+) layer\(s\), (\d+) config\(s\); freed (\d+) bytes in (\d+)ms \(([\d.]+)ms on the agent's thread\)/.exec(
      log,
    );
  if (!m) throw new Error(`no gc line in the agent's log:\n${log}`);
  health.sort((a, b) => a - b);
  const lines = [
    `# PRUNE_IMAGES on a store of ${N} images, ${new Date().toISOString().replace("T", " ").slice(0, 19)} UTC`,
    "",
    `Store made with \`ucr load\` of one docker-save archive holding ${N} images (each: a shared busybox layer + its own 20-file layer) in ${(loadMs / 1000).toFixed(2)} s.`,
    "",
    "| images removed | layers removed | configs removed | bytes freed | PRUNE wall time | agent thread busy | GET_HEALTH during prune (median / max) |",
    "|---:|---:|---:|---:|---:|---:|---:|",
    `| ${m[1]} | ${m[2]} | ${m[3]} | ${m[4]} | ${wall.toFixed(0)} ms | ${Number(m[6]).toFixed(1)} ms | ${health.length ? `${health[Math.floor(health.length / 2)]!.toFixed(1)} / ${health[health.length - 1]!.toFixed(1)} ms (${health.length} calls)` : "-"} |`,
    "",
    "Goal: under a second of server-thread time for 100 images.",
  ];
  console.log(lines.join("\n"));
  const out = join(ROOT, "bench", "results", `gc-${new Date().toISOString().slice(0, 10)}.md`);
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  await Bun.write(out, `${lines.join("\n")}\n`);
  console.log(`\nwrote ${out}`);
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
