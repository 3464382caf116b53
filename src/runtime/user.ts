// The user a container runs as: a name or uid[:gid], looked up in the image's /etc/passwd
// and /etc/group (read inside the container's root, bounded), with supplementary groups; ids
// checked against 0..2^32-2 before any syscall, then dropped for good (real, effective, saved).
import { closeSync, readSync } from "node:fs";
import { O_NOCTTY, O_NONBLOCK, O_RDONLY, setgroups, setresgid, setresuid } from "../ffi/libc.ts";
import { PathError, kindOf, openInRoot } from "./inroot.ts";

export interface User {
  name: string;
  uid: number;
  gid: number;
  groups: number[];
  /** The passwd entry's home directory, if there is an entry and it names one. */
  home?: string;
}

/** (uid_t)-1 means "unchanged" to setresuid; anything above wraps: 4294967296 would be root. */
const MAX_ID = 2 ** 32 - 2;
/** passwd and group files larger than this are refused (4 MiB: ~50,000 entries). */
export const MAX_TABLE_BYTES = 4 * 1024 * 1024;
/** setgroups(2) takes at most NGROUPS_MAX (65536) groups. */
const MAX_GROUPS = 65536;

/** A name or number for a message, cut short: an image or request may send megabytes. */
function shown(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}... (${s.length} characters)` : s;
}

/** A decimal id in range, or an error naming `what` it is. */
function parseId(text: string, what: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > MAX_ID) {
    throw new Error(`${what}: '${shown(text)}' is not a valid id (a number from 0 to ${MAX_ID})`);
  }
  return Number(text);
}

/**
 * The entries of a passwd-style file inside the container's root, or [] if it has none. It
 * must be a regular file no larger than MAX_TABLE_BYTES: an image's /etc/passwd may be a link
 * to /dev/zero or a fifo, which would otherwise block the launch or fill memory.
 */
export function readTable(rootFd: number, path: string): string[][] {
  return readText(rootFd, path)
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

/** The text of a passwd-style file (see readTable), "" if it has none. */
function readText(rootFd: number, path: string): string {
  let opened;
  try {
    opened = openInRoot(rootFd, path, { flags: O_RDONLY | O_NONBLOCK | O_NOCTTY });
  } catch (err) {
    if (err instanceof PathError && (err.code === "ENOENT" || err.code === "ENOTDIR")) return "";
    throw new Error(`cannot read the image's ${path}: ${(err as Error).message}`);
  }
  const { fd, st } = opened;
  try {
    if (!st.isFile()) throw new Error(`the image's ${path} is ${kindOf(st)} (resolved to ${opened.path}), not a regular file`);
    if (st.size > MAX_TABLE_BYTES) throw new Error(`the image's ${path} is ${st.size} bytes, more than the ${MAX_TABLE_BYTES} ucr reads`);
    // Read to the bound whatever the size says (a file in /proc says 0).
    let buf = Buffer.allocUnsafe(Math.min(MAX_TABLE_BYTES + 1, Math.max(st.size + 1, 4096)));
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > MAX_TABLE_BYTES) throw new Error(`the image's ${path} is more than the ${MAX_TABLE_BYTES} bytes ucr reads`);
        const bigger = Buffer.allocUnsafe(Math.min(MAX_TABLE_BYTES + 1, buf.length * 2));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    return buf.toString("utf8", 0, n);
  } finally {
    closeSync(fd);
  }
}

/** The home directory in the first passwd entry of `uid` (as glibc), for HOME when no user was named. */
export function homeOf(rootFd: number, uid: number): string | undefined {
  const text = readText(rootFd, "/etc/passwd");
  // One native search instead of splitting every line: this runs on every launch.
  return new RegExp(`^[^:\n]*:[^:\n]*:${uid}:[^:\n]*:[^:\n]*:([^:\n]*)`, "m").exec(text)?.[1] || undefined;
}

/** Resolves `spec` ("name", "uid", "name:group", "uid:gid") in the tree of `rootFd` (the container's "/"). */
export function resolveUser(rootFd: number, spec: string): User {
  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  const numeric = (s: string) => /^-?\d+$/.test(s);
  if (userPart === "") throw new Error(`user '${shown(spec)}' names no user`);
  if (numeric(userPart)) parseId(userPart, "uid");
  if (groupPart !== undefined && numeric(groupPart)) parseId(groupPart, "gid");

  const passwd = readTable(rootFd, "/etc/passwd");
  const entry = passwd.find((p) => (numeric(userPart) ? p[2] === userPart : p[0] === userPart));
  if (!entry && !numeric(userPart)) throw new Error(`user '${shown(userPart)}' is not in the image's /etc/passwd`);
  const name = entry?.[0] ?? userPart;
  const uid = entry ? parseId(entry[2] ?? "", `uid of user '${shown(name)}' in the image's /etc/passwd`) : parseId(userPart, "uid");
  let gid = entry ? parseId(entry[3] ?? "", `gid of user '${shown(name)}' in the image's /etc/passwd`) : uid;

  const group = readTable(rootFd, "/etc/group");
  if (groupPart !== undefined) {
    const g = group.find((x) => (numeric(groupPart) ? x[2] === groupPart : x[0] === groupPart));
    if (!g && !numeric(groupPart)) throw new Error(`group '${shown(groupPart)}' is not in the image's /etc/group`);
    gid = g ? parseId(g[2] ?? "", `gid of group '${shown(g[0] ?? "")}' in the image's /etc/group`) : parseId(groupPart, "gid");
  }
  const groups = new Set([gid]);
  for (const g of group) {
    if (!(g[3] ?? "").split(",").includes(name)) continue;
    groups.add(parseId(g[2] ?? "", `gid of group '${shown(g[0] ?? "")}' in the image's /etc/group`));
    if (groups.size > MAX_GROUPS) throw new Error(`user '${shown(name)}' is in more than ${MAX_GROUPS} groups in the image's /etc/group`);
  }
  const home = entry?.[5] || undefined;
  return { name, uid, gid, groups: [...groups], ...(home ? { home } : {}) };
}

/** Checked again at the edge, before any set*id call: a wrapped id is root. */
export function checkIds(user: User): void {
  for (const id of [user.uid, user.gid, ...user.groups]) {
    if (!Number.isInteger(id) || id < 0 || id > MAX_ID) throw new Error(`id ${id} is out of range (0..${MAX_ID})`);
  }
}

export function dropPrivileges(user: User): void {
  checkIds(user);
  setgroups(user.groups);
  setresgid(user.gid);
  setresuid(user.uid);
}
