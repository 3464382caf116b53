// Layer tars from staged directories with real GNU tar: busybox, and the rich image (every entry type).
// (Part of the image builders, test/helpers/images.ts; this section of it.)
import { chmodSync, chownSync, copyFileSync, linkSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { tempDir } from "../agent.ts";
import { type BuiltImage, type Compression, type ContainerConfig, DEFAULT_PATH, EPOCH, haveZstd, isRoot, run, setXattr } from "./basics.ts";
import { addImage } from "./layout.ts";

export interface TarOptions {
  /** gnu: ././@LongLink for long names; posix: pax headers (needed for xattrs). */
  format?: "gnu" | "posix";
  /** Entries as `./bin/sh` (tar -C dir .) instead of `bin/sh` (as docker writes them). */
  dotPrefix?: boolean;
  xattrs?: boolean;
}

export function tarDir(dir: string, opts: TarOptions = {}): Uint8Array {
  const format = opts.format ?? (opts.xattrs ? "posix" : "gnu");
  const args = ["tar", "--numeric-owner", "--sort=name", `--mtime=@${EPOCH}`, `--format=${format}`, "-C", dir];
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

const BUSYBOX_APPLETS = ["sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "env", "test", "stat"];

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

const RICH_CONFIG: ContainerConfig = {
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
