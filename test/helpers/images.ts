// Builds real test images as OCI image layouts (GNU tar layers, gzip/zstd/plain), malicious
// and corrupt variants, pushes them with skopeo, and turns them into the archive formats.
import { dlopen, ptr } from "bun:ffi";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  type Stats,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import * as tarStream from "tar-stream";
import { tempDir } from "./agent.ts";
import { runCommand } from "./command.ts";

// ---------------------------------------------------------------------------------------------
// Media types and shapes

export const MT = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerTar: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  schema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  schema1: "application/vnd.docker.distribution.manifest.v1+json",
} as const;

export type Compression = "gzip" | "zstd" | "none";

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface LayerInfo extends Descriptor {
  /** sha256 of the uncompressed tar, as recorded in the config's rootfs.diff_ids. */
  diffId: string;
  compression: Compression;
}

export interface ContainerConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, Record<string, never>>;
  Volumes?: Record<string, Record<string, never>>;
  StopSignal?: string;
}

export interface ImageConfig {
  created: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ContainerConfig;
  rootfs: { type: "layers"; diff_ids: string[] };
  history: Array<{ created: string; created_by: string; empty_layer?: boolean }>;
}

export interface BuiltImage {
  /** The OCI layout directory. */
  dir: string;
  /** Its org.opencontainers.image.ref.name in index.json (skopeo's `oci:<dir>:<tag>`). */
  tag: string;
  manifest: Descriptor;
  config: Descriptor;
  layers: LayerInfo[];
  configJson: ImageConfig;
}

/** OCI / Go architecture name of this machine. */
export function hostArch(): string {
  switch (process.arch) {
    case "x64":
      return "amd64";
    case "arm64":
      return "arm64";
    case "arm":
      return "arm";
    case "ia32":
      return "386";
    case "ppc64":
      return "ppc64le";
    default:
      return process.arch;
  }
}

/** An architecture that is not this machine's, for the fake entry of a multi-platform index. */
export function foreignArch(): string {
  return hostArch() === "arm64" ? "amd64" : "arm64";
}

// Fixed so the same builder gives the same digests in every run (and the busybox layer is
// byte-identical in every image that starts from it, like a shared base layer).
const EPOCH = 1_700_000_000;
const CREATED = new Date(EPOCH * 1000).toISOString();

export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------------
// Processes

function run(argv: string[], opts: { stdin?: Uint8Array; cwd?: string } = {}): Uint8Array {
  const r = Bun.spawnSync(argv, {
    stdin: opts.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env.HOME ?? "/root" },
  });
  if (r.exitCode !== 0) {
    throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}`);
  }
  return new Uint8Array(r.stdout);
}

async function runAsync(argv: string[], timeoutMs = 60_000): Promise<string> {
  const env = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env.HOME ?? "/root" };
  const { code, stdout, stderr } = await runCommand(argv, { env, timeoutMs });
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${stderr}${stdout}`);
  return stdout;
}

export const haveZstd = Bun.which("zstd") !== null;
export const isRoot = process.getuid?.() === 0;

// ---------------------------------------------------------------------------------------------
// xattrs through libc: no setfattr/getfattr (the attr package) is needed, and GNU tar and
// umoci are the things under test, not a python one-liner.

const libc = dlopen("libc.so.6", {
  lsetxattr: { args: ["ptr", "ptr", "ptr", "u64", "i32"], returns: "i32" },
  lgetxattr: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i64" },
  llistxattr: { args: ["ptr", "ptr", "u64"], returns: "i64" },
});

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

export function setXattr(path: string, name: string, value: Uint8Array | string): void {
  const v = typeof value === "string" ? Buffer.from(value) : Buffer.from(value);
  // A zero-length buffer has no pointer; pass a one-byte one with size 0.
  const buf = v.byteLength === 0 ? Buffer.alloc(1) : v;
  if (libc.symbols.lsetxattr(cstr(path), cstr(name), ptr(buf), v.byteLength, 0) !== 0) {
    throw new Error(`lsetxattr(${path}, ${name}) failed`);
  }
}

/** All xattrs of `path` (not following symlinks), values base64. */
export function listXattrs(path: string): Record<string, string> {
  const p = cstr(path);
  const size = Number(libc.symbols.llistxattr(p, null, 0));
  if (size <= 0) return {};
  const names = Buffer.alloc(size);
  const got = Number(libc.symbols.llistxattr(p, ptr(names), size));
  if (got <= 0) return {};
  const out: Record<string, string> = {};
  for (const name of names.subarray(0, got).toString("utf8").split("\0")) {
    if (!name) continue;
    const n = cstr(name);
    const len = Number(libc.symbols.lgetxattr(p, n, null, 0));
    if (len < 0) continue;
    const val = Buffer.alloc(Math.max(len, 1));
    const l2 = Number(libc.symbols.lgetxattr(p, n, ptr(val), val.byteLength));
    out[name] = val.subarray(0, Math.max(l2, 0)).toString("base64");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// OCI layout primitives

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export function blobPath(layoutDir: string, digest: string): string {
  const [alg, hex] = digest.split(":");
  return join(layoutDir, "blobs", alg ?? "sha256", hex ?? "");
}

export function initLayout(dir: string): void {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  if (!existsSync(join(dir, "oci-layout"))) {
    writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  }
  if (!existsSync(join(dir, "index.json"))) {
    writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [] }));
  }
}

export function writeBlob(layoutDir: string, data: Uint8Array | string): { digest: string; size: number } {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const digest = sha256(bytes);
  writeFileSync(blobPath(layoutDir, digest), bytes);
  return { digest, size: bytes.byteLength };
}

export function readBlob(layoutDir: string, digest: string): Buffer {
  return readFileSync(blobPath(layoutDir, digest));
}

interface IndexJson {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

export function readIndex(layoutDir: string): IndexJson {
  return JSON.parse(readFileSync(join(layoutDir, "index.json"), "utf8")) as IndexJson;
}

function writeIndex(layoutDir: string, index: IndexJson): void {
  writeFileSync(join(layoutDir, "index.json"), JSON.stringify(index));
}

/** Point `tag` in index.json at `desc`, replacing what the tag named before. */
export function tagManifest(layoutDir: string, tag: string, desc: Descriptor): void {
  const index = readIndex(layoutDir);
  index.manifests = index.manifests.filter((m) => m.annotations?.["org.opencontainers.image.ref.name"] !== tag);
  index.manifests.push({
    ...desc,
    annotations: { ...(desc.annotations ?? {}), "org.opencontainers.image.ref.name": tag },
  });
  writeIndex(layoutDir, index);
}

/** The index.json descriptor for `tag` (or the only one). */
export function findManifest(layoutDir: string, tag?: string): Descriptor {
  const index = readIndex(layoutDir);
  const found =
    tag === undefined
      ? index.manifests.length === 1
        ? index.manifests[0]
        : undefined
      : index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag);
  if (!found) throw new Error(`no manifest ${tag ?? "(only one)"} in ${layoutDir}/index.json`);
  return found;
}

/** Load an image (manifest, config, layers) back from a layout. */
export function loadImage(layoutDir: string, tag?: string): BuiltImage {
  const desc = findManifest(layoutDir, tag);
  const manifest = JSON.parse(readBlob(layoutDir, desc.digest).toString("utf8")) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const configJson = JSON.parse(readBlob(layoutDir, manifest.config.digest).toString("utf8")) as ImageConfig;
  return {
    dir: layoutDir,
    tag: desc.annotations?.["org.opencontainers.image.ref.name"] ?? tag ?? "",
    manifest: desc,
    config: manifest.config,
    configJson,
    layers: manifest.layers.map((l, i) => ({
      ...l,
      diffId: configJson.rootfs.diff_ids[i] ?? "",
      compression: l.mediaType.endsWith("zstd") ? "zstd" : l.mediaType.endsWith("gzip") ? "gzip" : "none",
    })),
  };
}

export function compress(tar: Uint8Array, c: Compression): Uint8Array {
  switch (c) {
    case "none":
      return tar;
    case "gzip":
      // Real gzip, -n so no name/mtime goes in the header and the bytes are reproducible.
      return run(["gzip", "-n", "-6", "-c"], { stdin: tar });
    case "zstd":
      if (!haveZstd) throw new Error("zstd is not installed (apt-get install zstd)");
      return run(["zstd", "-q", "-3", "-c"], { stdin: tar });
  }
}

export function decompress(data: Uint8Array, c: Compression): Uint8Array {
  switch (c) {
    case "none":
      return data;
    case "gzip":
      return run(["gzip", "-d", "-c"], { stdin: data });
    case "zstd":
      return run(["zstd", "-q", "-d", "-c"], { stdin: data });
  }
}

function layerMediaType(c: Compression): string {
  return c === "gzip" ? MT.ociLayerGzip : c === "zstd" ? MT.ociLayerZstd : MT.ociLayerTar;
}

export interface LayerInput {
  /** The uncompressed layer tar. */
  tar: Uint8Array;
  compression: Compression;
  createdBy?: string;
}

export interface ImageSpec {
  tag: string;
  layers: LayerInput[];
  config: ContainerConfig;
  architecture?: string;
  os?: string;
  variant?: string;
  /** Extra history entries marked empty_layer, appended after the layers'. */
  emptyHistory?: string[];
}

/** Write layers, config and manifest into the layout and tag it. */
export function addImage(layoutDir: string, spec: ImageSpec): BuiltImage {
  initLayout(layoutDir);
  const layers: LayerInfo[] = spec.layers.map((l) => {
    const blob = compress(l.tar, l.compression);
    const { digest, size } = writeBlob(layoutDir, blob);
    return { mediaType: layerMediaType(l.compression), digest, size, diffId: sha256(l.tar), compression: l.compression };
  });
  const configJson: ImageConfig = {
    created: CREATED,
    architecture: spec.architecture ?? hostArch(),
    os: spec.os ?? "linux",
    ...(spec.variant ? { variant: spec.variant } : {}),
    config: spec.config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: [
      ...spec.layers.map((l, i) => ({ created: CREATED, created_by: l.createdBy ?? `layer ${i}` })),
      ...(spec.emptyHistory ?? []).map((c) => ({ created: CREATED, created_by: c, empty_layer: true })),
    ],
  };
  const cfg = writeBlob(layoutDir, JSON.stringify(configJson));
  const config: Descriptor = { mediaType: MT.ociConfig, ...cfg };
  const manifestJson = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config,
    layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
  };
  const man = writeBlob(layoutDir, JSON.stringify(manifestJson));
  const manifest: Descriptor = {
    mediaType: MT.ociManifest,
    ...man,
    platform: {
      architecture: configJson.architecture,
      os: configJson.os,
      ...(spec.variant ? { variant: spec.variant } : {}),
    },
  };
  tagManifest(layoutDir, spec.tag, manifest);
  return { dir: layoutDir, tag: spec.tag, manifest, config, layers, configJson };
}

// ---------------------------------------------------------------------------------------------
// Layer tars from staged directories, with real GNU tar

export interface TarOptions {
  /** gnu: ././@LongLink for long names; posix: pax headers (needed for xattrs). */
  format?: "gnu" | "posix";
  /** Entries as `./bin/sh` (tar -C dir .) instead of `bin/sh` (as docker writes them). */
  dotPrefix?: boolean;
  xattrs?: boolean;
}

export function tarDir(dir: string, opts: TarOptions = {}): Uint8Array {
  const format = opts.format ?? (opts.xattrs ? "posix" : "gnu");
  const args = [
    "tar",
    "--numeric-owner",
    "--sort=name",
    `--mtime=@${EPOCH}`,
    `--format=${format}`,
    "-C",
    dir,
  ];
  if (opts.xattrs) args.push("--xattrs", "--xattrs-include=*");
  if (format === "posix") {
    // Without these, pax headers carry atime/ctime and the process id, and no two runs agree.
    args.push("--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime");
  }
  args.push("-cf", "-");
  if (opts.dotPrefix) args.push(".");
  else args.push(...readdirSync(dir).sort());
  return run(args);
}

function mkdirp(path: string, mode = 0o755, uid = 0, gid = 0): void {
  mkdirSync(path, { recursive: true });
  chmodSync(path, mode);
  if (isRoot) chownSync(path, uid, gid);
}

function file(path: string, content: string | Uint8Array, mode = 0o644, uid = 0, gid = 0): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  // chown before chmod: chown clears setuid/setgid bits.
  if (isRoot) chownSync(path, uid, gid);
  chmodSync(path, mode);
}

export const BUSYBOX_APPLETS = ["sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "env", "test", "stat"];

/** The busybox root filesystem, staged into `root` (which must not exist yet, or be empty). */
export function stageBusybox(root: string): void {
  mkdirp(root);
  mkdirp(join(root, "bin"));
  copyFileSync("/bin/busybox", join(root, "bin", "busybox"));
  chmodSync(join(root, "bin", "busybox"), 0o755);
  for (const a of BUSYBOX_APPLETS) symlinkSync("busybox", join(root, "bin", a));
  mkdirp(join(root, "etc"));
  file(
    join(root, "etc", "passwd"),
    [
      "root:x:0:0:root:/root:/bin/sh",
      "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
      "app:x:1000:1000:app:/home/app:/bin/sh",
      "",
    ].join("\n"),
  );
  file(join(root, "etc", "group"), ["root:x:0:", "nogroup:x:65534:", "app:x:1000:", ""].join("\n"));
  mkdirp(join(root, "tmp"), 0o1777);
  mkdirp(join(root, "root"), 0o700);
  mkdirp(join(root, "home", "app"), 0o755, 1000, 1000);
  mkdirp(join(root, "mnt", "mesos", "sandbox"));
}

function withStage<T>(fn: (root: string) => T): T {
  const stage = tempDir("ucr-stage-");
  try {
    return fn(join(stage, "root"));
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** The busybox layer tar (uncompressed); identical bytes every time. */
export function busyboxLayerTar(): Uint8Array {
  return withStage((root) => {
    stageBusybox(root);
    return tarDir(root, { format: "gnu" });
  });
}

export const BUSYBOX_CONFIG: ContainerConfig = { Env: [DEFAULT_PATH], Cmd: ["/bin/sh"] };

/** One layer: busybox and its applets, /etc/passwd with root, nobody and app (1000:1000). */
export function buildBusyboxImage(dir: string, opts: { tag?: string; compression?: Compression } = {}): BuiltImage {
  return addImage(dir, {
    tag: opts.tag ?? "latest",
    layers: [{ tar: busyboxLayerTar(), compression: opts.compression ?? "gzip", createdBy: "busybox" }],
    config: BUSYBOX_CONFIG,
  });
}

// Names the rich image uses, exported so tests can check the extracted tree against them.
const LONG_NAME = `${"long-name-".repeat(15)}end.txt`; // 157 chars: past ustar's 100
const DEEP_DIR = ["a", "b", "c", "d", "e"].map((c) => c.repeat(60)).join("/"); // path > 255 total
export const RICH = {
  longName: `/long/${LONG_NAME}`,
  deepFile: `/deep/${DEEP_DIR}/file.txt`,
  whitedOut: "/etc/rich/old.txt",
  kept: "/etc/rich/keep.txt",
  whitedOutDir: "/etc/rich/gone-dir",
  opaqueDir: "/opt/opq",
  opaqueOld: ["/opt/opq/a.txt", "/opt/opq/sub/b.txt"],
  opaqueNew: "/opt/opq/new.txt",
  replaced: "/replace/file.txt",
  replacedContent: "v2\n",
  setuid: "/modes/setuid",
  setgid: "/modes/setgid",
  owned: "/owned/file",
  hardlinks: ["/links/target.txt", "/links/hard1", "/links/hard2"],
  symlinks: { "/links/rel": "target.txt", "/links/relup": "../etc/rich/keep.txt", "/links/abs": "/etc/passwd" },
  emptyDir: "/empty",
  fifo: "/devs/fifo",
  charDev: "/devs/null",
  capFile: "/xattr/cap-file",
  userXattrFile: "/xattr/user-file",
  userXattr: { name: "user.ucr.test", value: "hello" },
  zstdMarker: "/zstd/marker.txt",
  plainMarker: "/plain/marker.txt",
} as const;

export const RICH_CONFIG: ContainerConfig = {
  Entrypoint: ["/bin/echo", "entry"],
  Cmd: ["cmd"],
  Env: [DEFAULT_PATH, "FOO=bar"],
  WorkingDir: "/work",
  User: "1000:1000",
  Labels: { "org.example.ucr": "rich" },
};

function richFeatureLayer(): Uint8Array {
  return withStage((root) => {
    mkdirp(root);
    // Things later layers delete.
    file(join(root, "etc/rich/old.txt"), "old\n");
    file(join(root, "etc/rich/keep.txt"), "keep\n");
    file(join(root, "etc/rich/gone-dir/x.txt"), "x\n");
    file(join(root, "opt/opq/a.txt"), "a\n");
    file(join(root, "opt/opq/sub/b.txt"), "b\n");
    file(join(root, "replace/file.txt"), "v1\n");
    // Modes.
    file(join(root, "modes/0600.txt"), "0600\n", 0o600);
    file(join(root, "modes/0755.sh"), "#!/bin/sh\necho hi\n", 0o755);
    file(join(root, "modes/0444.txt"), "0444\n", 0o444);
    file(join(root, "modes/setuid"), "setuid\n", 0o4755);
    file(join(root, "modes/setgid"), "setgid\n", 0o2755);
    mkdirp(join(root, "modes/0700dir"), 0o700);
    mkdirp(join(root, "modes/sticky"), 0o1777);
    // Ownership.
    file(join(root, "owned/file"), "owned\n", 0o640, 1000, 1000);
    mkdirp(join(root, "owned/dir"), 0o750, 1000, 1000);
    mkdirp(join(root, "work"), 0o755, 1000, 1000);
    // Hard and symbolic links.
    file(join(root, "links/target.txt"), "target\n");
    linkSync(join(root, "links/target.txt"), join(root, "links/hard1"));
    linkSync(join(root, "links/target.txt"), join(root, "links/hard2"));
    symlinkSync("target.txt", join(root, "links/rel"));
    symlinkSync("../etc/rich/keep.txt", join(root, "links/relup"));
    symlinkSync("/etc/passwd", join(root, "links/abs"));
    symlinkSync("/nonexistent", join(root, "links/dangling"));
    // Long names: one component past ustar's 100 bytes, one path past 255.
    file(join(root, "long", LONG_NAME), "long\n");
    file(join(root, "deep", DEEP_DIR, "file.txt"), "deep\n");
    mkdirp(join(root, "empty"));
    // Special files (need root for mknod; the fifo does not).
    mkdirp(join(root, "devs"));
    run(["mkfifo", "-m", "0644", join(root, "devs/fifo")]);
    if (isRoot) run(["mknod", "-m", "0666", join(root, "devs/null"), "c", "1", "3"]);
    // xattrs: a file capability (what `setcap` writes) and a user.* one.
    file(join(root, "xattr/cap-file"), "cap\n", 0o755);
    if (isRoot && Bun.which("setcap")) run(["setcap", "cap_net_bind_service=+ep", join(root, "xattr/cap-file")]);
    file(join(root, "xattr/user-file"), "user\n");
    setXattr(join(root, "xattr/user-file"), RICH.userXattr.name, RICH.userXattr.value);
    return tarDir(root, { format: "posix", dotPrefix: true, xattrs: true });
  });
}

function richWhiteoutLayer(): Uint8Array {
  return withStage((root) => {
    mkdirp(root);
    // A whiteout is an empty regular file named .wh.<name> next to what it deletes.
    file(join(root, "etc/rich/.wh.old.txt"), "", 0o644);
    // An opaque directory hides everything below it from earlier layers.
    file(join(root, "opt/opq/.wh..wh..opq"), "", 0o644);
    file(join(root, "opt/opq/new.txt"), "new\n");
    file(join(root, "zstd/marker.txt"), "zstd\n");
    return tarDir(root, { format: "gnu" });
  });
}

function richPlainLayer(): Uint8Array {
  return withStage((root) => {
    mkdirp(root);
    file(join(root, "replace/file.txt"), RICH.replacedContent);
    file(join(root, "etc/rich/.wh.gone-dir"), "");
    file(join(root, "plain/marker.txt"), "plain\n");
    return tarDir(root, { format: "gnu" });
  });
}

/**
 * Four layers: busybox (gzip), every kind of entry (gzip, pax), whiteouts and an opaque dir
 * (zstd when the zstd tool is here, else gzip), and a plain tar that replaces a file and
 * whites out a directory. Without root, the char device and the capability are left out.
 */
export function buildRichImage(dir: string, opts: { tag?: string; zstd?: boolean } = {}): BuiltImage {
  const useZstd = (opts.zstd ?? true) && haveZstd;
  return addImage(dir, {
    tag: opts.tag ?? "latest",
    layers: [
      { tar: busyboxLayerTar(), compression: "gzip", createdBy: "busybox" },
      { tar: richFeatureLayer(), compression: "gzip", createdBy: "features" },
      { tar: richWhiteoutLayer(), compression: useZstd ? "zstd" : "gzip", createdBy: "whiteouts" },
      { tar: richPlainLayer(), compression: "none", createdBy: "plain" },
    ],
    config: RICH_CONFIG,
    emptyHistory: ["ENV FOO=bar", "USER 1000:1000"],
  });
}

// ---------------------------------------------------------------------------------------------
// Malicious layers (tar-stream: GNU tar refuses to write these)

export type BadLayerKind =
  | "traversal"
  | "absolute"
  | "symlink-escape"
  | "symlink-escape-relative"
  | "hardlink-escape"
  | "hardlink-absolute";

export interface TarEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "fifo" | "character-device" | "block-device";
  content?: string | Uint8Array;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
  /** pax records, e.g. {"SCHILY.xattr.user.x": "v"}. */
  pax?: Record<string, string>;
}

type PackHeader = Parameters<ReturnType<typeof tarStream.pack>["entry"]>[0];

/** A tar written entry by entry, exactly as given (no path cleaning). */
export async function packTar(entries: TarEntry[]): Promise<Uint8Array> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const e of entries) {
    const type = e.type ?? "file";
    const body = e.content === undefined ? undefined : Buffer.from(e.content);
    const header: PackHeader & { pax?: Record<string, string> } = {
      name: e.name,
      type,
      mode: e.mode ?? (type === "directory" ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(EPOCH * 1000),
      size: type === "file" ? (body?.byteLength ?? 0) : 0,
    };
    if (e.linkname !== undefined) header.linkname = e.linkname;
    if (e.devmajor !== undefined) header.devmajor = e.devmajor;
    if (e.devminor !== undefined) header.devminor = e.devminor;
    if (e.pax) header.pax = e.pax;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === "file") pack.entry(header, body ?? Buffer.alloc(0), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return new Uint8Array(Buffer.concat(chunks));
}

/** The entries of the malicious layer for `kind` (after a harmless ok.txt). */
export function badLayerEntries(kind: BadLayerKind): TarEntry[] {
  const ok: TarEntry = { name: "ok.txt", content: "ok\n" };
  switch (kind) {
    case "traversal":
      return [ok, { name: "../evil", content: "evil\n" }];
    case "absolute":
      return [ok, { name: "/etc/evil", content: "evil\n" }];
    case "symlink-escape":
      return [ok, { name: "esc", type: "symlink", linkname: "/tmp" }, { name: "esc/evil", content: "evil\n" }];
    case "symlink-escape-relative":
      return [
        ok,
        { name: "esc", type: "symlink", linkname: "../../../../../../.." },
        { name: "esc/tmp/evil", content: "evil\n" },
      ];
    case "hardlink-escape":
      return [ok, { name: "hl", type: "link", linkname: "../../etc/passwd" }];
    case "hardlink-absolute":
      return [ok, { name: "hl", type: "link", linkname: "/etc/passwd" }];
  }
}

/** busybox plus one malicious gzip layer of `kind`. */
export async function buildBadLayerImage(
  dir: string,
  kind: BadLayerKind,
  opts: { tag?: string } = {},
): Promise<BuiltImage> {
  const bad = await packTar(badLayerEntries(kind));
  return addImage(dir, {
    tag: opts.tag ?? "latest",
    layers: [
      { tar: busyboxLayerTar(), compression: "gzip", createdBy: "busybox" },
      { tar: bad, compression: "gzip", createdBy: `bad: ${kind}` },
    ],
    config: BUSYBOX_CONFIG,
  });
}

// ---------------------------------------------------------------------------------------------
// Corrupt images, at the OCI-layout level

export type Corruption =
  /** The top layer's blob no longer hashes to the digest it is stored (and recorded) under. */
  | "layer-digest"
  /** The manifest records a wrong size for the top layer. */
  | "layer-size"
  /** The top layer is cut in half; digest and size recorded for the cut bytes (so only decompression fails). */
  | "truncated-gzip"
  /** The config's last diff_id does not match the uncompressed top layer. */
  | "diff-id"
  /** The manifest blob is not JSON (index.json points at it with the right digest). */
  | "manifest-not-json"
  /** The manifest and its index.json descriptor carry a media type nobody knows. */
  | "unknown-media-type";

export const UNKNOWN_MEDIA_TYPE = "application/vnd.example.unknown.v1+json";

function rewriteManifest(layoutDir: string, tag: string, edit: (m: Record<string, unknown>) => void): Descriptor {
  const desc = findManifest(layoutDir, tag);
  const m = JSON.parse(readBlob(layoutDir, desc.digest).toString("utf8")) as Record<string, unknown>;
  edit(m);
  const blob = writeBlob(layoutDir, JSON.stringify(m));
  const next: Descriptor = { ...desc, ...blob };
  tagManifest(layoutDir, tag, next);
  return next;
}

/** Damage the image tagged `tag` in place; returns its (possibly new) manifest descriptor. */
export function corruptImage(layoutDir: string, kind: Corruption, tag = "latest"): Descriptor {
  const img = loadImage(layoutDir, tag);
  const top = img.layers[img.layers.length - 1];
  if (!top) throw new Error("image has no layers");
  const topIndex = img.layers.length - 1;
  switch (kind) {
    case "layer-digest": {
      const p = blobPath(layoutDir, top.digest);
      const b = readFileSync(p);
      const i = Math.floor(b.byteLength / 2);
      b[i] = (b[i] ?? 0) ^ 0xff;
      writeFileSync(p, b);
      return img.manifest;
    }
    case "layer-size":
      return rewriteManifest(layoutDir, tag, (m) => {
        const layers = m.layers as Descriptor[];
        const l = layers[topIndex];
        if (l) l.size += 1;
      });
    case "truncated-gzip": {
      const b = readBlob(layoutDir, top.digest);
      const cut = writeBlob(layoutDir, b.subarray(0, Math.floor(b.byteLength / 2)));
      return rewriteManifest(layoutDir, tag, (m) => {
        const layers = m.layers as Descriptor[];
        layers[topIndex] = { ...top, ...cut, mediaType: top.mediaType };
        delete (layers[topIndex] as Partial<LayerInfo>).diffId;
        delete (layers[topIndex] as Partial<LayerInfo>).compression;
      });
    }
    case "diff-id": {
      const cfg = { ...img.configJson, rootfs: { ...img.configJson.rootfs } };
      cfg.rootfs.diff_ids = [...cfg.rootfs.diff_ids];
      cfg.rootfs.diff_ids[topIndex] = sha256("not the layer");
      const blob = writeBlob(layoutDir, JSON.stringify(cfg));
      return rewriteManifest(layoutDir, tag, (m) => {
        m.config = { ...(m.config as Descriptor), ...blob };
      });
    }
    case "manifest-not-json": {
      const blob = writeBlob(layoutDir, "this is not a manifest {");
      const next: Descriptor = { ...img.manifest, ...blob };
      tagManifest(layoutDir, tag, next);
      return next;
    }
    case "unknown-media-type": {
      const next = rewriteManifest(layoutDir, tag, (m) => {
        m.mediaType = UNKNOWN_MEDIA_TYPE;
      });
      const withType: Descriptor = { ...next, mediaType: UNKNOWN_MEDIA_TYPE };
      tagManifest(layoutDir, tag, withType);
      return withType;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Registries: skopeo for images, plain HTTP for what skopeo cannot push (indexes)

export interface PushOptions {
  /** "user:password" */
  creds?: string;
  /**
   * oci keeps the layout's manifest (but skopeo gzips uncompressed layers, which changes
   * it: use `exact` to keep those); v2s2 and v2s1 convert (v2s1 needs a schema1 registry).
   */
  format?: "oci" | "v2s2" | "v2s1";
  /** The tag inside the layout (default: the only one). */
  srcTag?: string;
  /**
   * Push the layout's exact bytes over HTTP instead of with skopeo: plain-tar layers stay
   * plain, and corrupt images (wrong diff_id, truncated gzip) go up as they are.
   */
  exact?: boolean;
}

/** Push one image; returns the manifest digest the registry stored. */
export async function pushImage(layoutDir: string, ref: string, opts: PushOptions = {}): Promise<string> {
  const srcTag = opts.srcTag ?? findManifest(layoutDir).annotations?.["org.opencontainers.image.ref.name"] ?? "latest";
  if (opts.exact) {
    if (opts.format && opts.format !== "oci") throw new Error("pushImage: exact pushes the layout as it is (oci)");
    return pushExact(layoutDir, ref, srcTag, opts.creds);
  }
  const digestFile = join(tempDir("ucr-push-"), "digest");
  try {
    await runAsync([
      "skopeo",
      "--insecure-policy",
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      ...(opts.creds ? ["--dest-creds", opts.creds] : ["--dest-no-creds"]),
      ...(opts.format ? ["--format", opts.format] : []),
      "--digestfile",
      digestFile,
      `oci:${layoutDir}:${srcTag}`,
      `docker://${ref}`,
    ]);
    return readFileSync(digestFile, "utf8").trim();
  } finally {
    rmSync(dirname(digestFile), { recursive: true, force: true });
  }
}

/** Split "host:port/name:tag" (or "@sha256:...") into its parts. */
export function parseRef(ref: string): { host: string; name: string; reference: string } {
  const slash = ref.indexOf("/");
  if (slash < 0) throw new Error(`reference ${ref} has no registry host`);
  const host = ref.slice(0, slash);
  let rest = ref.slice(slash + 1);
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon >= 0) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  return { host, name: rest, reference };
}

/**
 * A minimal Docker registry client: answers Basic and Bearer challenges with `creds` and
 * keeps the Authorization it got, so a run of requests costs one token round trip.
 */
export class RegistryClient {
  private authorization: string | undefined;
  constructor(
    readonly base: string,
    readonly creds?: string,
    /** Scope asked for when a Bearer challenge names none (e.g. for /v2/). */
    readonly scope?: string,
  ) {}

  async fetch(pathOrUrl: string, init: RequestInit = {}): Promise<Response> {
    const url = pathOrUrl.startsWith("http") ? pathOrUrl : `${this.base}${pathOrUrl}`;
    // A streamed body cannot be sent twice; buffer it so a 401 can be retried.
    const body = init.body instanceof ReadableStream ? new Uint8Array(await new Response(init.body).arrayBuffer()) : init.body;
    const attempt = (authorization?: string) => {
      const headers = new Headers(init.headers);
      if (authorization) headers.set("Authorization", authorization);
      return fetch(url, { ...init, body, headers, redirect: "manual" });
    };
    const first = await attempt(this.authorization);
    if (first.status !== 401) return first;
    const challenge = first.headers.get("www-authenticate") ?? "";
    await first.arrayBuffer();
    const basic = this.creds ? `Basic ${Buffer.from(this.creds).toString("base64")}` : undefined;
    if (/^basic/i.test(challenge)) {
      this.authorization = basic;
    } else if (/^bearer/i.test(challenge)) {
      const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] ?? "", m[2] ?? ""]));
      const realm = new URL(params.realm ?? "");
      if (params.service) realm.searchParams.set("service", params.service);
      const scope = params.scope ?? this.scope;
      if (scope) for (const sc of scope.split(" ")) realm.searchParams.append("scope", sc);
      const tr = await fetch(realm, { headers: basic ? { Authorization: basic } : {} });
      if (!tr.ok) throw new Error(`token request ${realm} failed: ${tr.status} ${await tr.text()}`);
      const tj = (await tr.json()) as { token?: string; access_token?: string };
      this.authorization = `Bearer ${tj.token ?? tj.access_token ?? ""}`;
    } else {
      return first;
    }
    return attempt(this.authorization);
  }
}

/** One request with credentials, for tests that need a single call (see RegistryClient). */
export async function registryFetch(
  url: string,
  init: RequestInit & { creds?: string; scope?: string } = {},
): Promise<Response> {
  const { creds, scope, ...rest } = init;
  return new RegistryClient(new URL(url).origin, creds, scope).fetch(url, rest);
}

async function pushExact(layoutDir: string, ref: string, srcTag: string, creds?: string): Promise<string> {
  const { host, name, reference } = parseRef(ref);
  // Ask for push on the first challenge so the token covers the whole upload.
  const client = new RegistryClient(`http://${host}`, creds, `repository:${name}:pull,push`);
  const desc = findManifest(layoutDir, srcTag);
  const manifestBytes = readBlob(layoutDir, desc.digest);
  let blobs: Descriptor[] = [];
  try {
    const m = JSON.parse(manifestBytes.toString("utf8")) as { config?: Descriptor; layers?: Descriptor[] };
    blobs = [...(m.config ? [m.config] : []), ...(m.layers ?? [])];
  } catch {
    // Not JSON: the registry will refuse the manifest, which is the caller's business.
  }
  for (const b of blobs) {
    const head = await client.fetch(`/v2/${name}/blobs/${b.digest}`, { method: "HEAD" });
    if (head.status === 200) continue;
    const start = await client.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
    await start.arrayBuffer();
    const location = start.headers.get("location");
    if (start.status !== 202 || !location) throw new Error(`blob upload start for ${name}: ${start.status}`);
    const put = new URL(location, `http://${host}`);
    put.searchParams.set("digest", b.digest);
    const data = readBlob(layoutDir, b.digest);
    const done = await client.fetch(put.toString(), {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(data.byteLength) },
      body: data,
    });
    if (done.status !== 201) throw new Error(`blob upload ${b.digest}: ${done.status} ${await done.text()}`);
  }
  const r = await client.fetch(`/v2/${name}/manifests/${reference}`, {
    method: "PUT",
    headers: { "Content-Type": desc.mediaType },
    body: manifestBytes,
  });
  if (r.status !== 201) throw new Error(`manifest PUT ${ref}: ${r.status} ${await r.text()}`);
  return r.headers.get("docker-content-digest") ?? desc.digest;
}

export interface PushIndexOptions {
  /** "127.0.0.1:PORT" */
  registry: string;
  /** Repository name, e.g. "multi". */
  name: string;
  tag: string;
  /** Layout holding the real image for this machine's architecture. */
  layoutDir: string;
  srcTag?: string;
  /** OCI image index (default) or Docker manifest list. */
  kind?: "oci" | "docker";
  creds?: string;
  /** Fake platforms to add (default: linux/<foreignArch()>); each gets a tiny stub image. */
  extraPlatforms?: Platform[];
}

export interface PushedIndex {
  digest: string;
  size: number;
  mediaType: string;
  body: string;
  /** The host-arch image's manifest digest, as listed in the index. */
  hostDigest: string;
  manifests: Descriptor[];
}

/**
 * A multi-platform index: each platform's image pushed under `<tag>-<arch>` (the registry
 * refuses an index that names manifests it does not have), then the index PUT by hand.
 */
export async function pushIndex(opts: PushIndexOptions): Promise<PushedIndex> {
  const kind = opts.kind ?? "oci";
  const format = kind === "oci" ? "oci" : "v2s2";
  const manifestType = kind === "oci" ? MT.ociManifest : MT.dockerManifest;
  const base = `/v2/${opts.name}`;
  const client = new RegistryClient(`http://${opts.registry}`, opts.creds, `repository:${opts.name}:pull,push`);
  const describe = async (digest: string, platform: Platform): Promise<Descriptor> => {
    const r = await client.fetch(`${base}/manifests/${digest}`, { headers: { Accept: manifestType } });
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (!r.ok) throw new Error(`GET manifest ${digest}: ${r.status}`);
    return { mediaType: manifestType, digest, size: bytes.byteLength, platform };
  };
  const src = loadImage(opts.layoutDir, opts.srcTag);
  const hostPlatform: Platform = { architecture: src.configJson.architecture, os: src.configJson.os };
  const hostDigest = await pushImage(opts.layoutDir, `${opts.registry}/${opts.name}:${opts.tag}-${hostPlatform.architecture}`, {
    creds: opts.creds,
    format,
    srcTag: src.tag,
  });
  const manifests: Descriptor[] = [await describe(hostDigest, hostPlatform)];
  const stubDir = tempDir("ucr-stub-");
  try {
    for (const p of opts.extraPlatforms ?? [{ architecture: foreignArch(), os: "linux" }]) {
      const stubTag = `${p.os}-${p.architecture}${p.variant ? `-${p.variant}` : ""}`;
      const tar = await packTar([{ name: "ARCH", content: `${p.architecture}\n` }]);
      addImage(stubDir, {
        tag: stubTag,
        layers: [{ tar, compression: "gzip", createdBy: "stub" }],
        config: { Cmd: ["/ARCH"] },
        architecture: p.architecture,
        os: p.os,
        ...(p.variant ? { variant: p.variant } : {}),
      });
      const d = await pushImage(stubDir, `${opts.registry}/${opts.name}:${opts.tag}-${stubTag}`, {
        creds: opts.creds,
        format,
        srcTag: stubTag,
      });
      manifests.push(await describe(d, p));
    }
  } finally {
    rmSync(stubDir, { recursive: true, force: true });
  }
  const mediaType = kind === "oci" ? MT.ociIndex : MT.dockerList;
  const body = JSON.stringify({ schemaVersion: 2, mediaType, manifests }, null, 2);
  const put = await client.fetch(`${base}/manifests/${opts.tag}`, {
    method: "PUT",
    headers: { "Content-Type": mediaType },
    body,
  });
  if (put.status !== 201) throw new Error(`PUT index: ${put.status} ${await put.text()}`);
  return { digest: sha256(body), size: Buffer.byteLength(body), mediaType, body, hostDigest, manifests };
}

// ---------------------------------------------------------------------------------------------
// Archives

/** `docker save` as Docker <= 24 wrote it (manifest.json + <config>.json + layer tars), by skopeo. */
export async function saveArchive(
  layoutDir: string,
  outTar: string,
  ref: string,
  opts: { srcTag?: string; familiar?: boolean } = {},
): Promise<string> {
  const tag = opts.srcTag ?? loadImage(layoutDir).tag;
  rmSync(outTar, { force: true });
  // docker-archive has no zstd (skopeo: "zstd compression is not supported for docker images").
  const src = withoutZstd(layoutDir, tag);
  try {
    await runAsync(["skopeo", "--insecure-policy", "copy", "--quiet", `oci:${src.dir}:${tag}`, `docker-archive:${outTar}:${ref}`]);
  } finally {
    src.cleanup();
  }
  if (opts.familiar ?? true) familiarizeArchive(outTar);
  return outTar;
}

/** docker.io/library/x:t -> x:t, docker.io/o/x:t -> o/x:t: Docker's short names. */
export function familiarName(name: string): string {
  return name.replace(/^docker\.io\/library\/(?=[^/]+$|[^/]+:)/, "").replace(/^docker\.io\//, "");
}

/**
 * skopeo writes fully-qualified names (docker.io/library/busybox:1) in manifest.json and
 * repositories; `docker save` writes busybox:1. Rewrite them so the archive reads like
 * Docker's (the rest of skopeo's layout is kept: <diffid>.tar with <id>/layer.tar symlinks).
 */
function familiarizeArchive(tarFile: string): void {
  const stage = tempDir("ucr-docker-archive-");
  try {
    run(["tar", "-xf", tarFile, "-C", stage]);
    const mf = join(stage, "manifest.json");
    const manifest = JSON.parse(readFileSync(mf, "utf8")) as Array<{ RepoTags?: string[] }>;
    for (const m of manifest) m.RepoTags = m.RepoTags?.map(familiarName);
    writeFileSync(mf, JSON.stringify(manifest));
    const rf = join(stage, "repositories");
    if (existsSync(rf)) {
      const repos = JSON.parse(readFileSync(rf, "utf8")) as Record<string, unknown>;
      writeFileSync(rf, JSON.stringify(Object.fromEntries(Object.entries(repos).map(([k, v]) => [familiarName(k), v]))));
    }
    gnuTarOf(stage, tarFile);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * Copy image `tag` into layout `destDir` (as `destTag`) with its layers recompressed by
 * `to`. The config is copied byte for byte: diff_ids are of the uncompressed tars, so they
 * still hold. Returns the new image.
 */
export function recompressImage(
  layoutDir: string,
  tag: string,
  destDir: string,
  to: (layer: LayerInfo) => Compression,
  destTag = tag,
): BuiltImage {
  const img = loadImage(layoutDir, tag);
  initLayout(destDir);
  writeFileSync(blobPath(destDir, img.config.digest), readBlob(layoutDir, img.config.digest));
  const layers: LayerInfo[] = img.layers.map((l) => {
    const c = to(l);
    let data: Uint8Array = readBlob(layoutDir, l.digest);
    if (c !== l.compression) data = compress(decompress(data, l.compression), c);
    return { mediaType: layerMediaType(c), ...writeBlob(destDir, data), diffId: l.diffId, compression: c };
  });
  const manifestJson = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: img.config,
    layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
  };
  const manifest: Descriptor = { mediaType: MT.ociManifest, ...writeBlob(destDir, JSON.stringify(manifestJson)) };
  tagManifest(destDir, destTag, manifest);
  return { ...img, dir: destDir, tag: destTag, manifest, layers };
}

/** The layout itself, or a scratch copy with zstd layers as gzip (umoci 0.4.7, docker-archive). */
export function withoutZstd(layoutDir: string, tag: string): { dir: string; cleanup(): void } {
  const img = loadImage(layoutDir, tag);
  if (!img.layers.some((l) => l.compression === "zstd")) return { dir: layoutDir, cleanup() {} };
  const scratch = tempDir("ucr-nozstd-");
  recompressImage(layoutDir, tag, scratch, (l) => (l.compression === "zstd" ? "gzip" : l.compression));
  return { dir: scratch, cleanup: () => rmSync(scratch, { recursive: true, force: true }) };
}

function splitRef(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  return colon > slash ? { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { repo: ref, tag: "latest" };
}

/** docker.io/library/busybox:latest for busybox:latest, as containerd names images. */
function fullName(ref: string): string {
  const first = ref.split("/")[0] ?? "";
  const hasDomain = ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasDomain) return ref;
  return ref.includes("/") ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

function gnuTarOf(stage: string, outTar: string): void {
  rmSync(outTar, { force: true });
  run(["tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C", stage, "-cf", outTar, ...readdirSync(stage).sort()]);
}

/**
 * `docker save` as Docker 25+ writes it: an OCI layout (index.json naming the image by
 * io.containerd.image.name and ref.name) plus manifest.json and repositories for old loaders.
 * Layers are stored uncompressed, as Docker does, unless `uncompressed: false`.
 */
export function ociArchive(
  layoutDir: string,
  outTar: string,
  opts: { ref?: string; srcTag?: string; uncompressed?: boolean } = {},
): string {
  const src = loadImage(layoutDir, opts.srcTag);
  const ref = opts.ref ?? `ucr-test:${src.tag || "latest"}`;
  const { repo, tag } = splitRef(ref);
  const stage = tempDir("ucr-ociarchive-");
  try {
    const uncompressed = opts.uncompressed ?? true;
    const img = recompressImage(layoutDir, src.tag, stage, (l) => (uncompressed ? "none" : l.compression), tag);
    const desc: Descriptor = {
      mediaType: img.manifest.mediaType,
      digest: img.manifest.digest,
      size: img.manifest.size,
      annotations: { "io.containerd.image.name": fullName(ref), "org.opencontainers.image.ref.name": tag },
    };
    writeFileSync(join(stage, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [desc] }));
    const hex = (d: string) => `blobs/sha256/${d.slice("sha256:".length)}`;
    writeFileSync(
      join(stage, "manifest.json"),
      JSON.stringify([{ Config: hex(img.config.digest), RepoTags: [ref], Layers: img.layers.map((l) => hex(l.digest)) }]),
    );
    const top = img.configJson.rootfs.diff_ids[img.configJson.rootfs.diff_ids.length - 1] ?? "";
    writeFileSync(join(stage, "repositories"), JSON.stringify({ [repo]: { [tag]: top.replace("sha256:", "") } }));
    gnuTarOf(stage, outTar);
    return outTar;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * The legacy (pre-1.10) `docker save` layout: `repositories` and one `<id>/` directory per
 * layer with json, layer.tar and VERSION. `withManifest` adds manifest.json and
 * `<config>.json` as Docker 1.10 to 24 also did.
 */
export function legacyArchive(
  layoutDir: string,
  outTar: string,
  ref: string,
  opts: { srcTag?: string; withManifest?: boolean } = {},
): { ids: string[] } {
  const src = loadImage(layoutDir, opts.srcTag);
  const { repo, tag } = splitRef(ref);
  const stage = tempDir("ucr-legacy-");
  try {
    const ids: string[] = [];
    let parent = "";
    src.layers.forEach((l, i) => {
      // Docker's v1 ids were a chain over the layers; any stable unique hex works for a loader.
      const id = createHash("sha256").update(`${parent} ${l.diffId}`).digest("hex");
      const dir = join(stage, id);
      mkdirSync(dir);
      writeFileSync(join(dir, "VERSION"), "1.0");
      writeFileSync(join(dir, "layer.tar"), decompress(readBlob(layoutDir, l.digest), l.compression));
      const last = i === src.layers.length - 1;
      const json: Record<string, unknown> = {
        id,
        ...(parent ? { parent } : {}),
        created: src.configJson.created,
        container_config: { Cmd: [src.configJson.history.filter((h) => !h.empty_layer)[i]?.created_by ?? ""] },
        os: src.configJson.os,
        architecture: src.configJson.architecture,
        ...(last ? { config: src.configJson.config } : {}),
      };
      writeFileSync(join(dir, "json"), JSON.stringify(json));
      ids.push(id);
      parent = id;
    });
    writeFileSync(join(stage, "repositories"), JSON.stringify({ [repo]: { [tag]: parent } }));
    if (opts.withManifest) {
      const cfgHex = src.config.digest.replace("sha256:", "");
      writeFileSync(join(stage, `${cfgHex}.json`), readBlob(layoutDir, src.config.digest));
      writeFileSync(
        join(stage, "manifest.json"),
        JSON.stringify([{ Config: `${cfgHex}.json`, RepoTags: [ref], Layers: ids.map((id) => `${id}/layer.tar`) }]),
      );
    }
    gnuTarOf(stage, outTar);
    return { ids };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Entry names of a tar file (GNU tar -t). */
export function tarList(tarFile: string): string[] {
  return new TextDecoder()
    .decode(run(["tar", "-tf", tarFile]))
    .split("\n")
    .filter((l) => l !== "");
}

// ---------------------------------------------------------------------------------------------
// Reference extraction and tree comparison

/**
 * umoci's extraction of the image, for comparing ucr's against. umoci 0.4.7 cannot read
 * zstd layers, so those are recompressed to gzip in a scratch copy of the layout first
 * (diff_ids are of the uncompressed tar, so the tree is the same). Returns the rootfs path.
 */
export async function umociUnpack(layoutDir: string, tag: string, outDir: string): Promise<string> {
  const src = withoutZstd(layoutDir, tag);
  try {
    rmSync(outDir, { recursive: true, force: true });
    await runAsync(["umoci", "unpack", ...(isRoot ? [] : ["--rootless"]), "--image", `${src.dir}:${tag}`, outDir]);
  } finally {
    src.cleanup();
  }
  return join(outDir, "rootfs");
}

export type EntryType = "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket";

export interface TreeEntry {
  /** "/" for the root, "/bin/sh" below it. */
  path: string;
  type: EntryType;
  /** Permission bits with setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  linkTarget?: string;
  rdev?: { major: number; minor: number };
  xattrs?: Record<string, string>;
  /** For a file with more than one link: the first path (sorted) of its hardlink group. */
  hardlinkGroup?: string;
  mtime?: number;
}

function typeOf(st: Stats): EntryType {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  return "socket";
}

/**
 * Every entry under rootDir, sorted by path, with what an extraction must preserve. Two
 * trees extracted from the same image should give deep-equal lists.
 */
export function treeManifest(rootDir: string, opts: { mtime?: boolean; ignoreXattrs?: RegExp } = {}): TreeEntry[] {
  const entries: TreeEntry[] = [];
  const inodes = new Map<string, string>();
  const walk = (rel: string): void => {
    const abs = rel === "/" ? rootDir : join(rootDir, rel);
    const st = lstatSync(abs);
    const type = typeOf(st);
    const e: TreeEntry = { path: rel, type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (type === "file") {
      e.size = st.size;
      e.sha256 = sha256(readFileSync(abs));
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const first = inodes.get(key);
        if (first === undefined) inodes.set(key, rel);
        e.hardlinkGroup = first ?? rel;
      }
    }
    if (type === "symlink") e.linkTarget = readlinkSync(abs);
    if (type === "char" || type === "block") {
      const r = st.rdev;
      // glibc's major()/minor(), in float arithmetic since dev_t is 64 bits.
      e.rdev = {
        major: (Math.floor(r / 2 ** 8) & 0xfff) | (Math.floor(r / 2 ** 32) & ~0xfff),
        minor: (r & 0xff) | (Math.floor(r / 2 ** 12) & ~0xff),
      };
    }
    const x = listXattrs(abs);
    for (const k of Object.keys(x)) if (opts.ignoreXattrs?.test(k)) delete x[k];
    if (Object.keys(x).length > 0) e.xattrs = x;
    if (opts.mtime) e.mtime = Math.floor(st.mtimeMs / 1000);
    entries.push(e);
    if (type === "dir") {
      for (const name of readdirSync(abs).sort()) walk(rel === "/" ? `/${name}` : `${rel}/${name}`);
    }
  };
  walk("/");
  // Groups are named by their first path in walk order, the same for any two trees.
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
