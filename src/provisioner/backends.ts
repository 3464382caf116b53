// Provisioner backends: how an image's layers become a container's root filesystem.
// Chosen as Mesos does (overlay if the kernel has it and the filesystem allows it, then
// aufs, then copy; bind only on request) and checked against the filesystem under
// <work_dir>/provisioner. The mounting itself happens in the container's own mount
// namespace (src/runtime/mounts.ts); here we prepare directories and describe the mount.
import { mkdirSync, readFileSync, statfsSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { mkdir } from "node:fs/promises";
import type { Backend } from "../config/flags.ts";
import type { RootfsSpec } from "../runtime/spec.ts";
import { errorOfKind } from "../errors.ts";

export class BackendError extends errorOfKind("invalid") {}

// statfs f_type values (linux/magic.h) of filesystems Mesos will not stack on.
const FS_NAMES: Record<number, string> = {
  0x61756673: "aufs",
  0x9123683e: "btrfs",
  0xf15f: "ecryptfs",
  0x2fc12fc1: "zfs",
  0x794c7630: "overlay",
  0x01021994: "tmpfs",
  0xef53: "ext4",
  0x58465342: "xfs",
};
const NO_OVERLAY_ON = new Set(["aufs", "btrfs", "ecryptfs", "zfs", "overlay"]);
const NO_AUFS_ON = new Set(["aufs", "btrfs", "ecryptfs"]);

function kernelHas(fs: string): boolean {
  try {
    return readFileSync("/proc/filesystems", "utf8")
      .split("\n")
      .some((l) => l.split("\t").pop() === fs);
  } catch {
    return false;
  }
}

function fsName(dir: string): string {
  const type = statfsSync(dir).type;
  return FS_NAMES[type] ?? `0x${type.toString(16)}`;
}

function isRoot(): boolean {
  return process.geteuid?.() === 0;
}

/** Why `backend` cannot work for a provisioner directory on this machine, or null. */
function backendProblem(backend: Backend, dir: string): string | null {
  const fs = fsName(dir);
  switch (backend) {
    case "overlay":
      if (!kernelHas("overlay")) return "the kernel has no overlay filesystem (/proc/filesystems)";
      if (!isRoot()) return "overlay needs root";
      if (NO_OVERLAY_ON.has(fs)) return `${dir} is on ${fs}, which overlay cannot be stacked on`;
      return null;
    case "aufs":
      if (!kernelHas("aufs")) return "the kernel has no aufs filesystem (/proc/filesystems); most mainline kernels do not";
      if (!isRoot()) return "aufs needs root";
      if (NO_AUFS_ON.has(fs)) return `${dir} is on ${fs}, which aufs cannot be stacked on`;
      return null;
    case "bind":
      return isRoot() ? null : "bind needs root";
    case "copy":
      return null;
  }
}

/** The backend to use: the flag's (checked), or the first that works, as Mesos picks. */
export function chooseBackend(flag: Backend | undefined, dir: string): Backend {
  mkdirSync(dir, { recursive: true });
  if (flag) {
    const problem = backendProblem(flag, dir);
    if (problem) throw new BackendError(`flag '--image_provisioner_backend=${flag}': ${problem}`);
    return flag;
  }
  for (const b of ["overlay", "aufs", "copy"] as const) if (backendProblem(b, dir) === null) return b;
  return "copy";
}

export interface Provisioned {
  rootfs: RootfsSpec;
  /** Directory holding everything of this container's rootfs, removed on REMOVE_CONTAINER. */
  dir: string;
}

/** Long lowerdir lists do not fit in a mount's one page of options: use short links. */
function shortLowers(layers: string[], scratch: string): string[] {
  const joined = layers.join(":");
  if (joined.length < 3000) return layers;
  const links = join(scratch, "links");
  mkdirSync(links, { recursive: true });
  return layers.map((l, i) => {
    const link = join(links, String(i));
    symlinkSync(l, link);
    return link;
  });
}

/**
 * Prepares the rootfs of one container from its image's layer trees (base first).
 * `dir` is <work_dir>/provisioner/containers/<id>/backends/<backend>.
 */
export async function provision(
  backend: Backend,
  layers: string[],
  dir: string,
  copyTree: (layers: string[], dest: string) => Promise<void>,
  /** The id of the skeleton already made in `dir` (a spare, provisioner/spares.ts), if one was. */
  made?: string,
): Promise<Provisioned> {
  const id = made ?? crypto.randomUUID();
  const target = join(dir, "rootfses", id);
  if (made === undefined) {
    // In Bun's thread pool, not on the agent's thread: ext4 takes ~0.1 ms a directory here
    // (nine per launch), and that thread serves every launch at once.
    await mkdir(target, { recursive: true, mode: 0o755 });
    if (backend === "overlay") {
      const scratch = join(dir, "scratch", id);
      await mkdir(join(scratch, "upperdir"), { recursive: true, mode: 0o755 });
      await mkdir(join(scratch, "workdir"), { mode: 0o755 });
    }
  }
  switch (backend) {
    case "overlay": {
      const scratch = join(dir, "scratch", id);
      return {
        dir,
        rootfs: { backend, target, lowers: shortLowers(layers, scratch), upper: join(scratch, "upperdir"), work: join(scratch, "workdir") },
      };
    }
    case "bind": {
      if (layers.length !== 1) throw new BackendError("Multiple layers are not supported by the bind backend");
      return { dir, rootfs: { backend, target, source: layers[0]!, readonly: true } };
    }
    case "copy": {
      await copyTree(layers, target);
      return { dir, rootfs: { backend, target, source: target } };
    }
    case "aufs":
      throw new BackendError("the aufs backend is not available on this kernel");
  }
}
