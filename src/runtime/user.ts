// The user a container runs as: a name or uid[:gid], looked up in the image's /etc/passwd
// and /etc/group (after pivot_root), with supplementary groups; privileges are dropped
// for good (real, effective and saved ids) before exec.
import { readFileSync } from "node:fs";
import { setgroups, setresgid, setresuid } from "../ffi/libc.ts";

export interface User {
  name: string;
  uid: number;
  gid: number;
  groups: number[];
  home?: string;
}

function table(path: string): string[][] {
  try {
    return readFileSync(path, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => l.split(":"));
  } catch {
    return [];
  }
}

const NUMERIC = /^\d+$/;

export function resolveUser(spec: string): User {
  const [userPart, groupPart] = spec.split(":", 2) as [string, string | undefined];
  const passwd = table("/etc/passwd");
  const group = table("/etc/group");
  const entry = passwd.find((p) => (NUMERIC.test(userPart) ? p[2] === userPart : p[0] === userPart));
  if (!entry && !NUMERIC.test(userPart)) throw new Error(`user '${userPart}' is not in the image's /etc/passwd`);
  const uid = entry ? Number(entry[2]) : Number(userPart);
  const name = entry?.[0] ?? userPart;
  let gid = entry ? Number(entry[3]) : uid;
  if (groupPart !== undefined) {
    const g = group.find((x) => (NUMERIC.test(groupPart) ? x[2] === groupPart : x[0] === groupPart));
    if (!g && !NUMERIC.test(groupPart)) throw new Error(`group '${groupPart}' is not in the image's /etc/group`);
    gid = g ? Number(g[2]) : Number(groupPart);
  }
  const groups = [gid, ...group.filter((g) => (g[3] ?? "").split(",").includes(name)).map((g) => Number(g[2]))];
  return { name, uid, gid, groups: [...new Set(groups)], home: entry?.[5] };
}

export function dropPrivileges(user: User): void {
  setgroups(user.groups);
  setresgid(user.gid);
  setresuid(user.uid);
}
