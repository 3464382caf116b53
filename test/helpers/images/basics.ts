// Media types and shapes of the test images, the processes and xattr calls the builders use.
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { dlopen, ptr } from "bun:ffi";
import { runCommand } from "../command.ts";

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
export const EPOCH = 1_700_000_000;
export const CREATED = new Date(EPOCH * 1000).toISOString();

export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------------
// Processes

export function run(argv: string[], opts: { stdin?: Uint8Array; cwd?: string } = {}): Uint8Array {
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

export async function runAsync(argv: string[], timeoutMs = 60_000): Promise<string> {
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
