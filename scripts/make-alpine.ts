// Writes a small `docker save` archive named "alpine" from Debian's busybox-static, so an
// air-gapped machine has an image to start with: `bun scripts/make-alpine.ts DIR` makes
// DIR/alpine.tar (manifest.json layout, one layer made with GNU tar).
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = process.argv[2];
if (!out) {
  console.error("usage: bun scripts/make-alpine.ts DIR");
  process.exit(2);
}
const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => existsSync(p));
if (!busybox) {
  console.error("make-alpine: busybox-static is not installed (apt-get install busybox-static)");
  process.exit(1);
}

function run(cmd: string[]): Buffer {
  const r = Bun.spawnSync(cmd, { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout;
}
const sha = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

const work = mkdtempSync(join(tmpdir(), "ucr-alpine-"));
try {
  const root = join(work, "rootfs");
  for (const d of ["bin", "etc", "tmp", "root", "mnt/mesos/sandbox", "proc", "sys", "dev"]) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, "tmp"), 0o1777);
  writeFileSync(join(root, "bin/busybox"), readFileSync(busybox), { mode: 0o755 });
  for (const applet of [
    "sh",
    "ls",
    "cat",
    "echo",
    "true",
    "false",
    "sleep",
    "id",
    "env",
    "ps",
    "hostname",
    "mount",
    "uname",
    "wc",
    "head",
    "sed",
    "grep",
    "top",
  ]) {
    symlinkSync("busybox", join(root, "bin", applet));
  }
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");

  const layer = run(["tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "--mtime=@0", "-C", root, "-cf", "-", "."]);
  const diffId = sha(layer);
  const config = JSON.stringify({
    architecture: process.arch === "arm64" ? "arm64" : "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
    history: [{ created_by: "ucr scripts/make-alpine.ts (busybox-static)" }],
  });
  const configHex = sha(Buffer.from(config));
  const stage = join(work, "archive");
  mkdirSync(join(stage, diffId), { recursive: true });
  writeFileSync(join(stage, `${diffId}/layer.tar`), layer);
  writeFileSync(join(stage, `${configHex}.json`), config);
  writeFileSync(
    join(stage, "manifest.json"),
    JSON.stringify([{ Config: `${configHex}.json`, RepoTags: ["alpine:latest"], Layers: [`${diffId}/layer.tar`] }]),
  );
  mkdirSync(out, { recursive: true });
  run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", stage, "-cf", join(out, "alpine.tar"), "."]);
  console.log(`make-alpine: wrote ${join(out, "alpine.tar")} (busybox ${busybox}, layer sha256:${diffId.slice(0, 12)})`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
