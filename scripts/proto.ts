// Generates src/mesos/gen/ (the @bufbuild/protobuf code for ucr's Mesos schema in
// src/mesos/proto/) with Debian's protoc and protoc-gen-es; `--check` only compares.
// The generated code is committed, so building ucr needs neither tool.
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..");
const protoDir = join(root, "src/mesos/proto");
const genDir = join(root, "src/mesos/gen");
const check = process.argv.includes("--check");

function files(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(suffix))
    .sort();
}

/** Runs protoc with protoc-gen-es into `out`; throws with protoc's message when it fails. */
export function generate(out: string): void {
  const protoc = Bun.which("protoc");
  if (!protoc) throw new Error("protoc is not installed (Debian: protobuf-compiler; scripts/setup.sh installs it)");
  const scratch = mkdtempSync(join(tmpdir(), "ucr-proto-"));
  try {
    // protoc runs plugins as executables; this one is a script run by the same bun.
    const plugin = join(scratch, "protoc-gen-es");
    const script = join(root, "node_modules/@bufbuild/protoc-gen-es/bin/protoc-gen-es");
    writeFileSync(plugin, `#!/bin/sh\nexec '${process.execPath}' '${script}' "$@"\n`);
    chmodSync(plugin, 0o755);
    const r = Bun.spawnSync(
      [
        protoc,
        `--plugin=protoc-gen-es=${plugin}`,
        `--es_out=${out}`,
        "--es_opt=target=ts,import_extension=ts",
        `-I${protoDir}`,
        ...files(protoDir, ".proto"),
      ],
      { cwd: root, stderr: "pipe", stdout: "pipe" },
    );
    if (r.exitCode !== 0) throw new Error(`protoc failed (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  if (check) {
    const out = mkdtempSync(join(tmpdir(), "ucr-proto-check-"));
    try {
      generate(out);
      const want = files(out, ".ts");
      const have = files(genDir, ".ts");
      const stale = want.filter((f) => !have.includes(f) || readFileSync(join(out, f), "utf8") !== readFileSync(join(genDir, f), "utf8"));
      const extra = have.filter((f) => !want.includes(f));
      if (stale.length || extra.length) {
        console.error(`src/mesos/gen is out of date (${[...stale, ...extra].join(", ")}): run bun scripts/proto.ts`);
        process.exit(1);
      }
      console.log(`src/mesos/gen matches ${relative(root, protoDir)} (${want.length} files)`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  } else {
    rmSync(genDir, { recursive: true, force: true });
    mkdirSync(genDir, { recursive: true });
    generate(genDir);
    console.log(
      `generated ${files(genDir, ".ts")
        .map((f) => relative(root, join(genDir, f)))
        .join(", ")}`,
    );
  }
}
