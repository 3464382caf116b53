// Builds the mesos-go test client (main.go here) against Debian's mesos-go, offline, once per
// test run: the binary is cached in the temp dir under a hash of the source and go's version.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "../../helpers/command.ts";

/** Where Debian's golang-*-dev packages put their sources (GOPATH layout, no modules). */
export const DEBIAN_GOPATH = "/usr/share/gocode";
const MESOS_GO = join(DEBIAN_GOPATH, "src/github.com/mesos/mesos-go/api/v1/lib");
const SOURCE_DIR = import.meta.dir;

export type Built = { path: string } | { skip: string };

let building: Promise<Built> | undefined;

/** The client binary, or why it cannot be built here (the tests skip with that reason). */
export function mesosGoClient(): Promise<Built> {
  building ??= build();
  return building;
}

async function build(): Promise<Built> {
  const go = Bun.which("go");
  if (!go) return { skip: "no go compiler (Debian package golang-go; scripts/setup.sh installs it)" };
  if (!existsSync(MESOS_GO)) return { skip: `no mesos-go at ${MESOS_GO} (Debian package golang-github-mesos-mesos-go-dev)` };
  const version = await runCommand([go, "version"], { timeoutMs: 30_000 });
  const source = readFileSync(join(SOURCE_DIR, "main.go"));
  const key = createHash("sha256").update(source).update(version.stdout).digest("hex").slice(0, 16);
  const dir = join(tmpdir(), `ucr-mesos-go-client-${key}`);
  const path = join(dir, "mesos-go-client");
  if (existsSync(path)) return { path };
  mkdirSync(dir, { recursive: true });
  // Built to a name of its own, then renamed: test runs side by side never see half a binary.
  const partial = join(dir, `mesos-go-client.${process.pid}.partial`);
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: dir,
    GOPATH: DEBIAN_GOPATH,
    GO111MODULE: "off",
    GOPROXY: "off",
    GOFLAGS: "",
    GOCACHE: join(dir, "gocache"),
    CGO_ENABLED: "0",
  };
  const r = await runCommand([go, "build", "-o", partial, join(SOURCE_DIR, "main.go")], { env, timeoutMs: 300_000 });
  if (r.code !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`building the mesos-go client failed (exit ${r.code}):\n${r.stderr}`);
  }
  renameSync(partial, path);
  return { path };
}
