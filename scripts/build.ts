// Builds dist/ucr: one executable holding the agent, the init stage, the client commands
// and the worker threads (each worker is an extra entry point, embedded under
// /$bunfs/root/workers/). `--release` also cross-compiles for linux-arm64 and
// linux-x64-baseline and writes a SHA-256 beside each file.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { basename, dirname, join } from "node:path";
import { humanBytes } from "../src/config/units.ts";
import { WORKERS } from "../src/threads/workers.ts";

const root = join(import.meta.dir, "..");
const dist = join(root, "dist");
const release = process.argv.includes("--release");

// The commands' bundles (src/ucr.ts picks one) and every worker of the table, each its own entry.
const ENTRYPOINTS = [
  "src/ucr.ts",
  "src/main.ts",
  "src/runtime/init-entry.ts",
  "src/runtime/launcher-entry.ts",
  ...Object.values(WORKERS).map((w) => `src/${w.entry}`),
].map((p) => join(root, p));

function git(...args: string[]): string | undefined {
  const r = Bun.spawnSync(["git", ...args], { cwd: root, stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : undefined;
}

const now = new Date();
// SOURCE_DATE_EPOCH keeps release builds reproducible when the caller sets it.
const epoch = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) : Math.floor(now.getTime() / 1000);
const date = new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
const sha = git("rev-parse", "HEAD");
const dirty = git("status", "--porcelain") ? "-dirty" : "";
const define: Record<string, string> = {
  UCR_BUILD_DATE: JSON.stringify(date),
  UCR_BUILD_TIME: String(epoch),
  UCR_BUILD_USER: JSON.stringify(process.env.USER ?? process.env.LOGNAME ?? userInfo().username),
  UCR_GIT_SHA: JSON.stringify(sha ? `${sha}${dirty}` : "unknown"),
};

// Bytecode moves parsing to build time: the binary starts faster, which matters because
// every container launch starts it again as `ucr __init`.
const BYTECODE = process.env.UCR_BYTECODE !== "0";

type Target = "bun-linux-x64" | "bun-linux-x64-baseline" | "bun-linux-arm64";

async function compile(outfile: string, target?: Target): Promise<void> {
  const started = performance.now();
  const result = await Bun.build({
    entrypoints: ENTRYPOINTS,
    root: join(root, "src"),
    compile: target ? { target, outfile } : { outfile },
    // Keep identifiers so stack traces name functions; the sourcemap is embedded (zstd).
    minify: { whitespace: true, syntax: true, identifiers: false },
    sourcemap: "linked",
    bytecode: BYTECODE,
    define,
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    throw new Error(`build of ${basename(outfile)} failed`);
  }
  // The sourcemap lives inside the executable; the loose copies Bun also writes are not needed.
  for (const f of readdirSync(dirname(outfile))) if (f.endsWith(".map")) rmSync(join(dirname(outfile), f));
  const size = statSync(outfile).size;
  const ms = (performance.now() - started).toFixed(0);
  console.log(`${basename(outfile)}: ${humanBytes(size)} (${size} bytes)${target ? ` for ${target}` : ""} in ${ms}ms`);
}

function writeChecksum(file: string): void {
  const hex = createHash("sha256").update(readFileSync(file)).digest("hex");
  writeFileSync(`${file}.sha256`, `${hex}  ${basename(file)}\n`);
  console.log(`${basename(file)}.sha256: ${hex}`);
}

mkdirSync(dist, { recursive: true });
const main = join(dist, "ucr");
rmSync(main, { force: true });
await compile(main);

if (release) {
  const arch = process.arch === "arm64" ? "arm64" : "x64";
  const files = [main];
  for (const target of ["bun-linux-x64-baseline", "bun-linux-arm64"] as const) {
    const out = join(dist, `ucr-${target.replace(/^bun-/, "")}`);
    rmSync(out, { force: true });
    await compile(out, target);
    files.push(out);
  }
  console.log(`(dist/ucr is the native linux-${arch} build)`);
  for (const f of files) writeChecksum(f);
}
