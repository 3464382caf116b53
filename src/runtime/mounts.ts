// The container's filesystem, built inside its own mount namespace by init stage 2: the
// rootfs (overlay of the image's layers, or a bind of a copied/single layer), /proc of
// the new PID namespace, a read-only /sys, a minimal /dev, /etc files and the sandbox;
// then pivot_root into it with the old root detached.
import { existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  MNT_DETACH,
  MS_BIND,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_RDONLY,
  MS_REC,
  MS_REMOUNT,
  S_IFCHR,
  chdir,
  chroot,
  mknod,
  mount,
  pivotRoot,
  umount2,
} from "../ffi/libc.ts";
import type { LaunchSpec } from "./spec.ts";

/** Creates `path` (a directory) if it is missing; false where the rootfs is read-only. */
function ensureDir(path: string): boolean {
  try {
    mkdirSync(path, { recursive: true, mode: 0o755 });
    return true;
  } catch {
    return existsSync(path);
  }
}

function ensureFile(path: string): boolean {
  if (existsSync(path)) return true;
  try {
    writeFileSync(path, "", { mode: 0o644 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Volumes, after the sandbox so a volume may sit inside it. `root` is "" for a container
 * on the host's filesystem (then its private mount namespace keeps them from the host).
 */
export function mountVolumes(spec: LaunchSpec, root: string): void {
  for (const v of spec.volumes ?? []) {
    const target = `${root}${v.target}`;
    if (v.lowers) {
      if (!ensureDir(target)) throw new Error(`cannot create the mount point ${v.target} for an image volume`);
      if (v.lowers.length === 1) {
        mount(v.lowers[0]!, target, null, MS_BIND | MS_REC);
        mount(null, target, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV);
      } else {
        // Lower layers only: overlayfs is then read-only, and the image's layers stay shared.
        const lower = [...v.lowers].reverse().join(":");
        mount("overlay", target, "overlay", MS_RDONLY, `lowerdir=${lower}`);
      }
      continue;
    }
    const isDir = statSync(v.source!).isDirectory();
    if (!(isDir ? ensureDir(target) : ensureDir(join(target, "..")) && ensureFile(target))) {
      throw new Error(`cannot create the mount point ${v.target} for volume ${v.source}`);
    }
    mount(v.source!, target, null, MS_BIND | MS_REC);
    if (v.readonly) mount(null, target, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV);
  }
}

/** A /proc for the new PID namespace over the host's, for containers without an image. */
export function mountHostProc(): void {
  mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
}

const DEVICES: Array<[string, number, number]> = [
  ["null", 1, 3],
  ["zero", 1, 5],
  ["full", 1, 7],
  ["random", 1, 8],
  ["urandom", 1, 9],
  ["tty", 5, 0],
];

function mountDev(root: string): void {
  const dev = join(root, "dev");
  if (!ensureDir(dev)) return;
  mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k");
  for (const [name, major, minor] of DEVICES) mknod(join(dev, name), S_IFCHR, 0o666, major, minor);
  mkdirSync(join(dev, "pts"), { mode: 0o755 });
  mount("devpts", join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  symlinkSync("pts/ptmx", join(dev, "ptmx"));
  mkdirSync(join(dev, "shm"), { mode: 0o1777 });
  mount("shm", join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  symlinkSync("/proc/self/fd", join(dev, "fd"));
  symlinkSync("/proc/self/fd/0", join(dev, "stdin"));
  symlinkSync("/proc/self/fd/1", join(dev, "stdout"));
  symlinkSync("/proc/self/fd/2", join(dev, "stderr"));
}

function bindFile(source: string, target: string, readonly: boolean): void {
  if (!ensureFile(target)) return;
  mount(source, target, null, MS_BIND);
  if (readonly) mount(null, target, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV);
}

export function enterRootfs(spec: LaunchSpec): void {
  const r = spec.rootfs!;
  const root = r.target;
  if (r.backend === "overlay") {
    const lower = [...r.lowers!].reverse().join(":"); // overlay lists the top layer first
    mount("overlay", root, "overlay", 0, `lowerdir=${lower},upperdir=${r.upper},workdir=${r.work}`);
  } else {
    mount(r.source!, root, null, MS_BIND | MS_REC);
    if (r.readonly) mount(null, root, null, MS_BIND | MS_REMOUNT | MS_RDONLY);
  }

  if (ensureDir(join(root, "proc"))) mount("proc", join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  if (ensureDir(join(root, "sys"))) mount("sysfs", join(root, "sys"), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mountDev(root);
  if (ensureDir(join(root, "etc"))) {
    if (spec.etc.hosts) bindFile(spec.etc.hosts, join(root, "etc/hosts"), true);
    if (spec.etc.resolv) bindFile(spec.etc.resolv, join(root, "etc/resolv.conf"), true);
    bindFile(spec.etc.hostname, join(root, "etc/hostname"), true);
  }
  const sandbox = join(root, spec.sandbox.container);
  if (!ensureDir(sandbox)) {
    throw new Error(`the image has no ${spec.sandbox.container} and its rootfs is read-only (--sandbox_directory must exist in the image for the bind backend)`);
  }
  mount(spec.sandbox.host, sandbox, null, MS_BIND | MS_REC);
  mountVolumes(spec, root);

  chdir(root);
  pivotRoot(".", ".");
  umount2(".", MNT_DETACH);
  chdir("/");
}

/**
 * A nested container without an image sees its parent's filesystem. A mount cannot be
 * bound across mount namespaces, and a threaded process cannot join another's, so we
 * chroot into the parent's root as /proc shows it: lookups then walk the parent's mounts.
 * (The nested container runs inside its parent's container, in its PID namespace.)
 */
export function enterParentRoot(parentPid: number): void {
  chroot(`/proc/${parentPid}/root`);
  chdir("/");
}

/**
 * A container on the host's filesystem in a network namespace of its own sees its own
 * hosts, hostname and resolv.conf (read-only binds in its private mount namespace, as
 * Mesos does); a file the host does not have is not created on the host for it.
 */
export function mountEtcOverHost(spec: LaunchSpec): void {
  for (const [source, target] of [[spec.etc.hosts, "/etc/hosts"], [spec.etc.hostname, "/etc/hostname"], [spec.etc.resolv, "/etc/resolv.conf"]] as const) {
    if (source === undefined || source === target || !existsSync(target)) continue;
    mount(source, target, null, MS_BIND);
    mount(null, target, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV);
  }
}
