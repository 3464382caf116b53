// Images built to attack the container runtime (stage 2 and the agent's launch): links from
// the image's mount points to host paths, special files where the runtime puts its own,
// device nodes and setuid files, extreme users, passwd files that never end. Each is the
// busybox image plus one layer written entry by entry (tar-stream: names, links, devices and
// modes exactly as given), saved as a `docker save` archive for a `--docker_registry=/dir`.
import { lstatSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import {
  BUSYBOX_CONFIG,
  type ContainerConfig,
  type TarEntry,
  addImage,
  busyboxLayerTar,
  packTar,
  saveArchive,
  treeManifest,
} from "./images.ts";

/** busybox applets the attack scripts use beyond the base image's. */
const MORE_APPLETS = ["head", "hostname", "readlink", "mkdir", "chmod", "grep", "wc", "touch", "pwd", "sha256sum", "tr"];

function appletLinks(): TarEntry[] {
  return MORE_APPLETS.map((a) => ({ name: `bin/${a}`, type: "symlink" as const, linkname: "busybox" }));
}

/** A relative link target that climbs out of any rootfs (however deep) and lands on `hostPath`. */
export function climbTo(hostPath: string): string {
  return `${"../".repeat(32)}${hostPath.replace(/^\/+/, "")}`;
}

/**
 * busybox + one layer of `entries` (+ the extra applets), or one layer per list given,
 * tagged `name:latest` and saved to `<imagesDir>/<name>.tar`. The layout goes to `<scratch>/<name>`.
 */
export async function saveHostileImage(
  scratch: string,
  imagesDir: string,
  name: string,
  entries: TarEntry[] | TarEntry[][],
  config: Partial<ContainerConfig> = {},
): Promise<void> {
  const layout = join(scratch, name);
  const lists = entries.length > 0 && Array.isArray(entries[0]) ? (entries as TarEntry[][]) : [entries as TarEntry[]];
  const hostile = await Promise.all(
    lists.map(async (list, i) => ({
      tar: await packTar(i === 0 ? [...appletLinks(), ...list] : list),
      compression: "gzip" as const,
      createdBy: `hostile: ${name} ${i}`,
    })),
  );
  addImage(layout, {
    tag: "1",
    layers: [{ tar: busyboxLayerTar(), compression: "gzip", createdBy: "busybox" }, ...hostile],
    config: { ...BUSYBOX_CONFIG, ...config },
  });
  await saveArchive(layout, join(imagesDir, `${name}.tar`), `${name}:latest`, { srcTag: "1" });
}

/**
 * The host's getent with the C library it needs, and an nsswitch.conf that asks files only
 * (no DNS: a test never sends traffic off the machine): `getent hosts NAME` inside an image.
 */
export function getentEntries(): TarEntry[] {
  const files = new Set<string>(["/usr/bin/getent"]);
  const ldd = Bun.spawnSync(["ldd", "/usr/bin/getent"]).stdout.toString();
  for (const m of ldd.matchAll(/(\/\S+)/g)) files.add(m[1]!);
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  for (const f of files) {
    // Keep the path the loader asks for (a link on Debian: /lib64 -> ...), and store the real file there.
    const rel = f.replace(/^\/+/, "");
    for (let d = rel.split("/").slice(0, -1), i = 1; i <= d.length; i++) dirs.add(d.slice(0, i).join("/"));
    entries.push({ name: rel, content: readFileSync(realpathSync(f)), mode: 0o755 });
  }
  return [
    ...[...dirs].sort().map((d) => ({ name: d, type: "directory" as const })),
    ...entries,
    { name: "etc/nsswitch.conf", content: "passwd: files\ngroup: files\nhosts: files\n" },
  ];
}

/** The host's root filesystem's block device (major, minor), or undefined for a virtual one. */
export function rootBlockDevice(): { major: number; minor: number } | undefined {
  const dev = lstatSync("/").dev;
  const major = (Math.floor(dev / 2 ** 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | (Math.floor(dev / 2 ** 12) & ~0xff);
  return major === 0 ? undefined : { major, minor };
}

/**
 * What a directory holds, for "nothing here changed": every entry with type, mode, owner,
 * size, content hash, link target and mtime. Compare a snapshot before and after.
 */
export function snapshot(dir: string): string {
  return JSON.stringify(treeManifest(dir, { mtime: true }));
}
