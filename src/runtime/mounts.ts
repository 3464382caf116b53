// The container's filesystem, built inside its own mount namespace by init stage 2: the
// rootfs (overlay of the image's layers, or a bind of a copied/single layer), /proc of
// the new PID namespace, a read-only /sys with the container's cgroups, a minimal /dev,
// /etc files and the sandbox; then pivot_root into it with the old root detached. (Over 400
// lines: every mount of the container's filesystem, in the order stage 2 makes them.)
//
// The image is untrusted: every mount point is opened inside the rootfs (src/runtime/inroot.ts,
// never a host path string joined with the image's) and mounted onto through /proc/self/fd/N,
// as runc does since CVE-2021-30465. Per path:
//   /proc, /sys, /dev  must be directories of the image, or missing (then made). A link or any
//                      other file is refused, as runc refuses proc and sysfs anywhere else
//                      (CVE-2019-16884, CVE-2023-28642): a link would put them where the image
//                      chooses and leave an image file in their place.
//   /etc/hosts, hostname, resolv.conf
//                      are the runtime's files: a regular file is mounted over; a link, fifo,
//                      socket or device is replaced by an empty file in the container's own
//                      writable layer (never the image's layers), and refused on a read-only
//                      rootfs; a directory is refused.
//   sandbox, volumes   are the operator's paths: directories on the way and the last component
//                      are resolved inside the root (a link to /host/x is <root>/host/x, as in
//                      runc's securejoin); what is missing is made inside the root; a target
//                      of the wrong type (a directory for a file, or a special file) is refused.
import { existsSync, fstatSync, statSync } from "node:fs";
import {
  AT_FDCWD,
  MOUNT_ATTR_NODEV,
  MOUNT_ATTR_NOEXEC,
  MOUNT_ATTR_NOSUID,
  MOUNT_ATTR_RDONLY,
  MS_BIND,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_RDONLY,
  MS_REC,
  MS_REMOUNT,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_PATH,
  O_WRONLY,
  S_IFBLK,
  S_IFCHR,
  chdir,
  chroot,
  close,
  EEXIST,
  EINVAL,
  ELOOP,
  ENOENT,
  ENOTDIR,
  EROFS,
  mkdirat,
  mkdiratOrErrno,
  mknodat,
  openat,
  openatOrErrno,
  readlinkat,
  symlinkat,
  sysError,
  umask,
  unlinkat,
} from "../ffi/libc.ts";
import { MountOpt } from "../ffi/child.c.ts";
import { here, type MountEntry } from "./here.ts";
import { PathError, kindOf, openDir, openInRoot } from "./inroot.ts";
import type { CgroupMounts, KernelFiles, LaunchSpec } from "./spec.ts";

/**
 * mount(2) onto what `fd` refers to: the target is the one opened inside the root, not a path
 * looked up again (or onto `name` below it, where that directory is ours alone).
 */
function mountOn(
  fd: number,
  where: string,
  source: string | null,
  fstype: string | null,
  flags: number,
  data: string | null = null,
  name?: string,
): void {
  try {
    here.mount(source, here.fd(fd, name), fstype, flags, data);
  } catch (err) {
    throw new Error(`cannot mount ${fstype ?? source ?? "none"} on ${where} in the container: ${(err as Error).message}`);
  }
}

/**
 * Makes the mount now at `path` (inside the root) read-only. The descriptor mounted onto still
 * names the directory underneath, so the path is opened again, inside the root, to reach the
 * new mount (as runc does).
 */
function remountReadonly(rootFd: number, path: string, flags: number): void {
  const { fd } = openInRoot(rootFd, path);
  try {
    mountOn(fd, path, null, null, MS_BIND | MS_REMOUNT | MS_RDONLY | flags);
  } finally {
    close(fd);
  }
}

/** Opens `name` (no links) in `dirFd`, or undefined if it is missing (no exception: see openatOrErrno). */
function openHere(dirFd: number, name: string, flags = O_PATH): number | undefined {
  const fd = openatOrErrno(dirFd, name, flags | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return fd;
  if (fd === -ENOENT) return undefined;
  throw sysError("openat", fd, name);
}

/** What `name` in `dirFd` is, in words (for a refusal). */
function describe(dirFd: number, name: string): string {
  try {
    return `a symlink to '${readlinkat(dirFd, name)}'`;
  } catch {
    const fd = openHere(dirFd, name);
    if (fd === undefined) return "missing";
    try {
      return kindOf(fstatSync(fd));
    } finally {
      close(fd);
    }
  }
}

/**
 * /proc, /sys or /dev: an ordinary directory at the top of the rootfs (made if missing and
 * the rootfs is writable; undefined if missing on a read-only one). Anything else is refused.
 */
function systemDir(rootFd: number, name: string, what: string): number | undefined {
  for (let tries = 0; tries < 2; tries++) {
    const fd = openatOrErrno(rootFd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) return fd;
    if (fd === -ENOTDIR || fd === -ELOOP) {
      throw new Error(`the image's /${name} is ${describe(rootFd, name)}: ucr mounts ${what} only on a directory, never through a link`);
    }
    if (fd !== -ENOENT) throw sysError("openat", fd, `/${name} in the container`);
    const made = mkdiratOrErrno(rootFd, name, 0o755);
    if (made === -EROFS) return undefined; // a read-only rootfs without it: the container goes without
    if (made < 0 && made !== -EEXIST) {
      throw new Error(`cannot create /${name} in the container: ${sysError("mkdirat", made, name).message}`);
    }
  }
  throw new Error(`/${name} in the container keeps changing`);
}

/** Makes the mount at `name` in `dirFd` (a tree of ours, no image file in it) read-only. */
function remountHere(dirFd: number, name: string, where: string): void {
  const fd = openat(dirFd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  try {
    mountOn(fd, where, null, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
  } finally {
    close(fd);
  }
}

/**
 * /sys/fs/cgroup: the container's own cgroups, read-only (see CgroupMounts). Below the sysfs
 * just mounted at /sys (checked a directory, and nothing but us acts in this mount namespace)
 * every name is the kernel's or ours, so paths under /proc/self/fd/N are fine here.
 */
function mountCgroups(rootFd: number, m: CgroupMounts): void {
  const at = "/sys/fs/cgroup";
  const under = here.fd(rootFd, "sys/fs/cgroup");
  try {
    if (m.kind === "v2") here.mount(m.binds[0]!.source, under, null, MS_BIND | MS_REC);
    else here.mount("tmpfs", under, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k");
  } catch (err) {
    throw new Error(`cannot mount the container's cgroups on ${at}: ${(err as Error).message}`);
  }
  const dir = openat(rootFd, "sys/fs/cgroup", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); // the new mount
  try {
    if (m.kind === "v1") {
      for (const b of m.binds) mkdirat(dir, b.name, 0o755);
      here.mounts(
        m.binds.map((b) => ({
          source: b.source,
          target: here.fd(dir, b.name),
          fstype: null,
          flags: MS_BIND,
          data: null,
          opts: 0,
          fail: (errno: number) =>
            new Error(`cannot mount ${b.source} on ${at}/${b.name} in the container: ${sysError("mount", -errno, b.source).message}`),
        })),
      );
      for (const l of m.links ?? []) symlinkat(l.target, dir, l.name);
    }
    // Read-only, the binds below included: one call where the kernel has it, else one remount each.
    const ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if (!here.setattr(dir, ro, at)) {
      for (const b of m.kind === "v1" ? m.binds : []) remountHere(dir, b.name, `${at}/${b.name}`);
      mountOn(dir, at, null, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    }
  } finally {
    close(dir);
  }
}

/**
 * runc's default spec (and Mesos' filesystem/linux): files of the kernel no container needs
 * and some leak the host's state (/proc/keys lists the kernel's keys, /proc/timer_list every
 * CPU's timers, /proc/kcore its memory): masked by /dev/null (files) or an empty read-only
 * tmpfs (directories). Mesos also masks /proc/key-users.
 */
const MASKED_PROC = ["acpi", "asound", "kcore", "keys", "key-users", "latency_stats", "timer_list", "timer_stats", "sched_debug", "scsi"];
const MASKED_SYS = ["firmware"];
/** And what stays readable but must not be written: the host kernel's sysctls, sysrq, IRQ affinity. */
const READONLY_PROC = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/** The lists above, or the ones of them this kernel has (KernelFiles: the agent looks once, stage 2 skips the rest). */
export function kernelFilesHere(): KernelFiles {
  const has = (path: string) => existsSync(path);
  return {
    maskedProc: MASKED_PROC.filter((n) => has(`/proc/${n}`)),
    maskedSys: MASKED_SYS.filter((n) => has(`/sys/${n}`)),
    readonlyProc: READONLY_PROC.filter((n) => has(`/proc/${n}`)),
  };
}

const ALL_KERNEL_FILES: KernelFiles = { maskedProc: MASKED_PROC, maskedSys: MASKED_SYS, readonlyProc: READONLY_PROC };

/** Which of the masked names are directories (kernels differ; the other kind is tried on ENOTDIR). */
const MASKED_DIRS = new Set(["acpi", "asound", "scsi", "firmware"]);

/**
 * Masks and read-only binds over the kernel files above, in a /proc and /sys this init stage
 * mounted: names below them are the kernel's, fixed, so each mount goes onto
 * /proc/self/fd/<dir>/<name> in one call. `nullFd` is a /dev/null to bind over files. Names
 * this kernel lacks are skipped; no exception on the way (this runs in every launch).
 */
export function protectKernelFiles(procFd: number, sysFd: number | undefined, nullFd: number, files = ALL_KERNEL_FILES): void {
  const ro = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  const masks: Array<[number, string, string]> = files.maskedProc.map((n) => [procFd, n, `/proc/${n}`]);
  if (sysFd !== undefined) for (const n of files.maskedSys) masks.push([sysFd, n, `/sys/${n}`]);
  // One batch (here.mounts): a mask as the kind this name usually is, else the other kind
  // (ENOTDIR), a name this kernel lacks skipped; a read-only bind, then its remount (the path
  // now leads to the bind), both skipped for a missing name.
  const entries: MountEntry[] = [];
  for (const [dir, name, where] of masks) {
    const target = here.fd(dir, name);
    const fail = (errno: number) => new Error(`cannot mask ${where} in the container: ${sysError("mount", -errno, where).message}`);
    const asDir = { source: "tmpfs", target, fstype: "tmpfs", flags: MS_RDONLY | ro, data: "mode=555", fail };
    const asFile = { source: here.fd(nullFd), target, fstype: null, flags: MS_BIND, data: null, fail };
    const [first, second] = MASKED_DIRS.has(name) ? [asDir, asFile] : [asFile, asDir];
    entries.push({ ...first, opts: MountOpt.OK_MISSING | MountOpt.HAS_ALT }, { ...second, opts: MountOpt.ALT | MountOpt.OK_MISSING });
  }
  for (const name of files.readonlyProc) {
    const target = here.fd(procFd, name);
    const where = `/proc/${name}`;
    entries.push(
      {
        source: target,
        target,
        fstype: null,
        flags: MS_BIND | MS_REC,
        data: null,
        opts: MountOpt.OK_MISSING | MountOpt.SKIP_NEXT_IF_MISSING,
        fail: (errno) => new Error(`cannot bind ${where} read-only in the container: ${sysError("mount", -errno, where).message}`),
      },
      {
        // runc's remount, keeping nosuid, nodev, noexec.
        source: null,
        target,
        fstype: null,
        flags: MS_BIND | MS_REMOUNT | MS_RDONLY | ro,
        data: null,
        opts: 0,
        fail: (errno) => new Error(`cannot make ${where} read-only in the container: ${sysError("mount", -errno, where).message}`),
      },
    );
  }
  here.mounts(entries);
}

const DEVICES: Array<[string, number, number]> = [
  ["null", 1, 3],
  ["zero", 1, 5],
  ["full", 1, 7],
  ["random", 1, 8],
  ["urandom", 1, 9],
  ["tty", 5, 0],
];

type ShmSpec = NonNullable<LaunchSpec["ipc"]>["shm"];

function mountDev(rootFd: number, nodes: LaunchSpec["devices"] = [], shmSpec: ShmSpec = { sizeBytes: 64 * 1048576 }): void {
  const under = systemDir(rootFd, "dev", "its /dev tmpfs");
  if (under === undefined) return;
  try {
    mountOn(under, "/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k");
  } finally {
    close(under);
  }
  const dev = openat(rootFd, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); // the tmpfs now
  try {
    // Modes as given (0666 devices, a 1777 /dev/shm), whatever umask we inherited, as runc.
    const mask = umask(0);
    try {
      for (const [name, major, minor] of DEVICES) mknodat(dev, name, S_IFCHR, 0o666, major, minor);
      mkdirat(dev, "pts", 0o755);
      mkdirat(dev, "shm", 0o1777);
      // linux/devices: the --allowed_devices, at their paths below /dev (this tmpfs is ours alone).
      for (const n of nodes) {
        const parts = n.path.split("/");
        const name = parts.pop()!;
        let dir = dev;
        try {
          for (const p of parts) {
            const made = mkdiratOrErrno(dir, p, 0o755);
            if (made < 0 && made !== -EEXIST) throw sysError("mkdirat", made, `/dev/${parts.join("/")}`);
            const next = openat(dir, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (dir !== dev) close(dir);
            dir = next;
          }
          try {
            mknodat(dir, name, n.type === "b" ? S_IFBLK : S_IFCHR, n.mode, n.major, n.minor);
          } catch (err) {
            if ((err as { code?: string }).code !== "EEXIST") throw err; // one of the defaults, already made
          }
        } finally {
          if (dir !== dev) close(dir);
        }
      }
    } finally {
      umask(mask);
    }
    // /dev/pts and /dev/shm in one request to the container's process.
    const held: number[] = [];
    try {
      const pts = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      held.push(pts);
      const shm = openat(dev, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      held.push(shm);
      const failing = (what: string, where: string) => (errno: number) =>
        new Error(`cannot mount ${what} on ${where} in the container: ${sysError("mount", -errno, what).message}`);
      const batch: MountEntry[] = [
        {
          source: "devpts",
          target: here.fd(pts),
          fstype: "devpts",
          flags: MS_NOSUID | MS_NOEXEC,
          data: "newinstance,ptmxmode=0666,mode=0620",
          opts: 0,
          fail: failing("devpts", "/dev/pts"),
        },
      ];
      if ("bind" in shmSpec) {
        // A /dev/shm shared with the host or a parent (or a PRIVATE one the agent mounted): the agent's path.
        const source = openat(AT_FDCWD, here.host(shmSpec.bind), O_PATH | O_DIRECTORY | O_CLOEXEC);
        held.push(source);
        batch.push({
          source: here.fd(source),
          target: here.fd(shm),
          fstype: null,
          flags: MS_BIND,
          data: null,
          opts: 0,
          fail: failing(shmSpec.bind, "/dev/shm"),
        });
      } else {
        batch.push({
          source: "shm",
          target: here.fd(shm),
          fstype: "tmpfs",
          flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
          data: `mode=1777,size=${shmSpec.sizeBytes}`,
          opts: 0,
          fail: failing("tmpfs", "/dev/shm"),
        });
      }
      here.mounts(batch);
    } finally {
      for (const fd of held) close(fd);
    }
    symlinkat("pts/ptmx", dev, "ptmx");
    symlinkat("/proc/self/fd", dev, "fd");
    symlinkat("/proc/self/fd/0", dev, "stdin");
    symlinkat("/proc/self/fd/1", dev, "stdout");
    symlinkat("/proc/self/fd/2", dev, "stderr");
  } finally {
    close(dev);
  }
}

/** The masks and read-only paths in the /proc, /sys and /dev just mounted in the rootfs (those there are). */
function protectRootfsKernelFiles(rootFd: number, files?: KernelFiles): void {
  const procFd = openatOrErrno(rootFd, "proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (procFd < 0) return; // a read-only rootfs without /proc: the container goes without
  const sysFd = openatOrErrno(rootFd, "sys", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  // The host's (the rootfs may have no /dev): a device node, the same in every /dev.
  const nullFd = openat(AT_FDCWD, here.host("/dev/null"), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  try {
    protectKernelFiles(procFd, sysFd >= 0 ? sysFd : undefined, nullFd, files);
  } finally {
    for (const fd of [procFd, sysFd, nullFd]) if (fd >= 0) close(fd);
  }
}

/**
 * /etc/hosts, /etc/hostname or /etc/resolv.conf: the agent's file over the image's (see the
 * top). The mounts that do it (bind, then read-only), for the caller's batch; `held` gets the
 * descriptor they use, which the caller closes after the batch. None when the file is missing
 * on a read-only rootfs.
 */
function etcFileMounts(etc: number, name: string, source: string, writable: boolean, held: number[]): MountEntry[] {
  const where = `/etc/${name}`;
  let fd = openHere(etc, name);
  if (fd !== undefined) {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      close(fd);
      fd = undefined;
      if (st.isDirectory()) throw new Error(`the image's ${where} is a directory: ucr puts its own file there`);
      if (!writable) {
        throw new Error(`the image's ${where} is ${describe(etc, name)} and the rootfs is read-only: ucr cannot put its own file there`);
      }
      unlinkat(etc, name); // in the container's own layer: the image's layers are untouched
    }
  }
  if (fd === undefined) {
    if (!writable) return []; // missing on a read-only rootfs: the container goes without, as before
    const made = openatOrErrno(etc, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644);
    if (made < 0) throw new Error(`cannot create ${where} in the container: ${sysError("openat", made, name).message}`);
    close(made);
    fd = openat(etc, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  }
  held.push(fd);
  const fail = (errno: number) =>
    new Error(`cannot mount ${source} on ${where} in the container: ${sysError("mount", -errno, source).message}`);
  return [
    { source, target: here.fd(fd), fstype: null, flags: MS_BIND, data: null, opts: 0, fail },
    // By name under /etc, after the bind: the name now leads to the new mount, which is made
    // read-only. (The file was checked a regular file just now; nothing but us acts in the
    // container's mount namespace or its rootfs before its exec.)
    {
      source: null,
      target: here.fd(etc, name),
      fstype: null,
      flags: MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
      data: null,
      opts: 0,
      fail,
    },
  ];
}

/** A mount point for the operator's path `path` inside the root: made if missing, of the kind asked for. */
function mountPoint(rootFd: number, path: string, dir: boolean, what: string): number {
  let opened;
  try {
    opened = openInRoot(rootFd, path, { create: dir ? "dir" : "file" });
  } catch (err) {
    const c = err instanceof PathError ? err.code : "EIO";
    if (c === "EROFS") {
      throw new PathError(c, `cannot create the mount point ${path} for ${what}: the rootfs is read-only (${(err as Error).message})`);
    }
    throw new PathError(c, `cannot use ${path} in the container as the mount point for ${what}: ${(err as Error).message}`);
  }
  const ok = dir ? opened.st.isDirectory() : opened.st.isFile();
  if (!ok) {
    close(opened.fd);
    const at = opened.path === path ? "" : ` (${path} leads to ${opened.path})`;
    const want = dir ? "a directory" : "a regular file";
    throw new Error(`${path} in the container is ${kindOf(opened.st)}${at}: the mount point for ${what} must be ${want}`);
  }
  return opened.fd;
}

/**
 * BIDIRECTIONAL volumes: a detached copy of each host path's mount tree, taken right after the
 * new mount namespace is made and before its mounts are made slaves. The copy of a shared
 * mount is in that mount's peer group, and stays there when it is attached in the container
 * (mountVolumes); everything else becomes a slave. By volume index.
 */
export function cloneSharedVolumes(spec: LaunchSpec): Map<number, number> {
  const trees = new Map<number, number>();
  try {
    for (const [i, v] of (spec.volumes ?? []).entries()) {
      if (v.propagation !== "bidirectional") continue;
      try {
        trees.set(i, here.openTreeClone(v.source!));
      } catch (err) {
        throw new Error(`cannot take the host path ${v.source} for BIDIRECTIONAL propagation: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    for (const fd of trees.values()) here.closeTree(fd);
    throw err;
  }
  return trees;
}

/**
 * Volumes, after the sandbox so a volume may sit inside it. `rootFd` is the container's root,
 * or the host's "/" for a container on the host's filesystem (then its private mount
 * namespace keeps them from the host). `trees`: the BIDIRECTIONAL volumes' mount trees
 * (cloneSharedVolumes), attached instead of bound (and closed).
 */
export function mountVolumes(spec: LaunchSpec, rootFd: number, trees: ReadonlyMap<number, number> = new Map()): void {
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    const tree = trees.get(i);
    if (tree !== undefined) {
      const what = `volume ${v.source} (BIDIRECTIONAL)`;
      const fd = mountPoint(rootFd, v.target, statSync(here.host(v.source!)).isDirectory(), what);
      try {
        here.moveMount(tree, fd, `${v.source} onto ${v.target}`);
      } finally {
        close(fd);
        here.closeTree(tree);
      }
      if (v.readonly) {
        const { fd: attached } = openInRoot(rootFd, v.target);
        try {
          const ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
          if (!here.setattr(attached, ro, v.target)) {
            mountOn(attached, v.target, null, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV);
          }
        } finally {
          close(attached);
        }
      }
      continue;
    }
    if (v.lowers) {
      const what = "an image volume";
      const fd = mountPoint(rootFd, v.target, true, what);
      try {
        if (v.lowers.length === 1) mountOn(fd, v.target, v.lowers[0]!, null, MS_BIND | MS_REC);
        // Lower layers only: overlayfs is then read-only, and the image's layers stay shared.
        else mountOn(fd, v.target, "overlay", "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, `lowerdir=${[...v.lowers].reverse().join(":")}`);
      } finally {
        close(fd);
      }
      if (v.lowers.length === 1) remountReadonly(rootFd, v.target, MS_NOSUID | MS_NODEV);
      continue;
    }
    const what = `volume ${v.source}`;
    // A sandbox path of a nested container is in its parent's sandbox, which that workload
    // writes: opened through no link, and bound from the descriptor.
    const within = spec.sandbox.within;
    let source = v.source!;
    let held: number | undefined;
    if (within !== undefined && source.startsWith(`${within}/`)) {
      const top = openDir(here.host(within));
      try {
        held = openInRoot(top, source.slice(within.length + 1), { noLinks: true, flags: O_PATH | O_DIRECTORY }).fd;
      } catch (err) {
        throw new Error(`cannot use ${source} for the volume at ${v.target}: ${(err as Error).message}`);
      } finally {
        close(top);
      }
      source = here.fd(held);
    }
    try {
      const fd = mountPoint(rootFd, v.target, held !== undefined || statSync(here.host(source)).isDirectory(), what);
      try {
        mountOn(fd, v.target, source, null, MS_BIND | MS_REC);
      } finally {
        close(fd);
      }
    } finally {
      if (held !== undefined) close(held);
    }
    if (v.readonly) remountReadonly(rootFd, v.target, MS_NOSUID | MS_NODEV);
  }
}

/**
 * A container without an image sees the host's filesystem: in its own mount namespace it gets
 * a /proc of its PID namespace over the host's, the kernel files masked and read-only as in a
 * container with an image, and /sys read-only (root may otherwise write much of it: suspend
 * the host through /sys/power/state, for one).
 */
export function mountHostProc(files?: KernelFiles): void {
  here.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  const proc = openDir(here.host("/proc"));
  const sys = openat(AT_FDCWD, here.host("/sys"), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  const nul = openat(AT_FDCWD, here.host("/dev/null"), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  try {
    const ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if (!here.setattr(sys, ro, "/sys")) {
      here.mount(null, "/sys", null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    }
    protectKernelFiles(proc, sys, nul, files);
  } finally {
    close(nul);
    close(sys);
    close(proc);
  }
}

/** Does this kernel's overlay take `volatile`? (Until a mount with it fails with EINVAL.) */
let volatileOverlay = true;

/**
 * Builds the container's filesystem and pivot_roots into it. `sandboxFd` is the sandbox's host
 * directory, opened by the caller. Device nodes of the image do not work (the rootfs is
 * nodev): only the ones made here in /dev do, as a devices cgroup would allow in runc.
 */
export function enterRootfs(spec: LaunchSpec, sandboxFd: number, trees: ReadonlyMap<number, number> = new Map()): void {
  const r = spec.rootfs!;
  const writable = r.backend !== "bind" && !r.readonly;
  if (r.backend === "overlay") {
    const lower = [...r.lowers!].reverse().join(":"); // overlay lists the top layer first
    const options = `lowerdir=${lower},upperdir=${r.upper},workdir=${r.work}`;
    // volatile (Linux 5.10): the overlay does not sync its upper dir, at unmount above all,
    // where it synced the whole upper filesystem (ext4 writeback and a disk flush) in the
    // workload's exit: -0.56 ms LAUNCH+WAIT here. Nothing of the upper dir is to survive a
    // crash of the host: the container dies with it and its rootfs is removed at recovery (a
    // new upper dir per container; overlay refuses only to remount a volatile one). A kernel
    // without the option refuses it (EINVAL): mounted without it from then on.
    const rc = volatileOverlay ? here.mountOrErrno("overlay", r.target, "overlay", MS_NODEV, `${options},volatile`) : -EINVAL;
    if (rc === -EINVAL) {
      here.mount("overlay", r.target, "overlay", MS_NODEV, options);
      volatileOverlay = false;
    } else if (rc < 0) {
      throw sysError("mount", rc, `overlay -> ${r.target}`);
    }
  } else {
    here.mount(r.source!, r.target, null, MS_BIND | MS_REC);
    here.mount(null, r.target, null, MS_BIND | MS_REMOUNT | MS_NODEV | (r.readonly ? MS_RDONLY : 0));
  }
  const root = openDir(here.host(r.target)); // the rootfs just mounted (the agent's own directory)
  try {
    // /proc and /sys in one request to the container's process.
    const proc = systemDir(root, "proc", "proc");
    let sys: number | undefined;
    try {
      sys = systemDir(root, "sys", "sysfs");
      const kernel = (fd: number | undefined, name: string, flags: number): MountEntry[] =>
        fd === undefined
          ? []
          : [
              {
                source: name,
                target: here.fd(fd),
                fstype: name,
                flags,
                data: null,
                opts: 0,
                fail: (errno) =>
                  new Error(
                    `cannot mount ${name} on /${name === "proc" ? "proc" : "sys"} in the container: ${sysError("mount", -errno, name).message}`,
                  ),
              },
            ];
      const batch = [
        ...kernel(proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        ...kernel(sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
      ];
      if (batch.length > 0) here.mounts(batch);
    } finally {
      if (proc !== undefined) close(proc);
      if (sys !== undefined) close(sys);
    }
    if (sys !== undefined && spec.cgroupMounts) mountCgroups(root, spec.cgroupMounts);
    mountDev(root, spec.devices, spec.ipc?.shm);
    protectRootfsKernelFiles(root, spec.kernelFiles);
    let etc: number | undefined;
    try {
      etc = openInRoot(root, "/etc", { create: writable ? "dir" : undefined, flags: O_PATH | O_DIRECTORY }).fd;
    } catch (err) {
      // missing on a read-only rootfs: the container goes without the /etc files, as before
      if (!(err instanceof PathError && (err.code === "ENOENT" || err.code === "EROFS"))) {
        throw new Error(`the image's /etc: ${(err as Error).message}`);
      }
    }
    // The /etc files and the sandbox in one request to the container's process (seven mounts).
    const held: number[] = [];
    try {
      const batch: MountEntry[] = [];
      if (etc !== undefined) {
        if (spec.etc.hosts) batch.push(...etcFileMounts(etc, "hosts", spec.etc.hosts, writable, held));
        if (spec.etc.resolv) batch.push(...etcFileMounts(etc, "resolv.conf", spec.etc.resolv, writable, held));
        batch.push(...etcFileMounts(etc, "hostname", spec.etc.hostname, writable, held));
      }
      let sandbox;
      try {
        sandbox = mountPoint(root, spec.sandbox.container, true, "the sandbox");
      } catch (err) {
        if (err instanceof PathError && err.code === "EROFS") {
          const need = "--sandbox_directory must exist in the image for the bind backend";
          throw new Error(`the image has no ${spec.sandbox.container} and its rootfs is read-only (${need})`);
        }
        throw err;
      }
      held.push(sandbox);
      const at = spec.sandbox.container;
      batch.push({
        source: here.fd(sandboxFd),
        target: here.fd(sandbox),
        fstype: null,
        flags: MS_BIND | MS_REC,
        data: null,
        opts: 0,
        fail: (errno) => new Error(`cannot mount the sandbox on ${at} in the container: ${sysError("mount", -errno, at).message}`),
      });
      here.mounts(batch);
    } finally {
      for (const fd of held) close(fd);
      if (etc !== undefined) close(etc);
    }
    mountVolumes(spec, root, trees);
    here.pivot(root);
  } finally {
    close(root);
  }
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
 * A container on the host's filesystem with a /dev/shm that is not the host's (ipc_mode
 * PRIVATE, or a parent's): bound over the host's /dev/shm in its own mount namespace.
 */
export function bindHostShm(source: string): void {
  if (source === "/dev/shm") return;
  here.mount(source, "/dev/shm", null, MS_BIND);
}

/**
 * A container on the host's filesystem in a network namespace of its own sees its own
 * hosts, hostname and resolv.conf (read-only binds in its private mount namespace, as
 * Mesos does); a file the host does not have is not created on the host for it.
 */
export function mountEtcOverHost(spec: LaunchSpec): void {
  for (const [source, target] of [
    [spec.etc.hosts, "/etc/hosts"],
    [spec.etc.hostname, "/etc/hostname"],
    [spec.etc.resolv, "/etc/resolv.conf"],
  ] as const) {
    if (source === undefined || source === target || !existsSync(here.host(target))) continue;
    here.mount(source, target, null, MS_BIND);
    here.mount(null, target, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV);
  }
}
