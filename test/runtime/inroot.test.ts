// The in-root walk and the user files, on real trees: links out of the root (absolute and
// ../../..), loops, /proc's magic links, making what is missing, chown -R that follows no link,
// and passwd/group files that are not regular or too large. The sentinel outside the root
// must be untouched by all of it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, lstatSync, mkdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { O_DIRECTORY, O_PATH, O_RDONLY, close, openat } from "../../src/ffi/libc.ts";
import { type PathError, chownTree, openDir, openInRoot } from "../../src/runtime/inroot.ts";
import { MAX_TABLE_BYTES, homeOf, readTable, resolveUser } from "../../src/runtime/user.ts";
import { tempDir } from "../helpers/agent.ts";
import { climbTo, snapshot } from "../helpers/hostile-images.ts";

const isRoot = process.getuid?.() === 0;
const dir = tempDir("ucr-inroot-");
const root = join(dir, "root");
const sentinel = join(dir, "sentinel");
let rootFd: number;

beforeAll(() => {
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(join(root, "a", "b"), { recursive: true });
  mkdirSync(join(sentinel, "inside"), { recursive: true });
  writeFileSync(join(sentinel, "secret"), "host\n");
  writeFileSync(join(root, "a", "b", "file"), "in the root\n");
  symlinkSync(sentinel, join(root, "abs")); // absolute, out
  symlinkSync(climbTo(sentinel), join(root, "a", "rel")); // ../../.., out
  symlinkSync("b/file", join(root, "a", "flink")); // relative, in
  symlinkSync("/a/b", join(root, "ab")); // absolute, in
  symlinkSync("loop2", join(root, "loop1"));
  symlinkSync("loop1", join(root, "loop2"));
  symlinkSync(join(sentinel, "new"), join(root, "dangling"));
  writeFileSync(
    join(root, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnohome:x:1001:1001::/:/bin/sh\n",
  );
  writeFileSync(join(root, "etc", "group"), "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\n");
  rootFd = openDir(root);
});
afterAll(() => {
  close(rootFd);
  rmSync(dir, { recursive: true, force: true });
});

/** Where an opened descriptor really is, as the host sees it. */
function hostPathOf(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}

function opened(path: string, options = {}): { host: string; path: string } {
  const o = openInRoot(rootFd, path, options);
  try {
    return { host: hostPathOf(o.fd), path: o.path };
  } finally {
    close(o.fd);
  }
}

function failure(path: string, options = {}): { code: string; message: string } {
  try {
    close(openInRoot(rootFd, path, options).fd);
  } catch (err) {
    return { code: (err as PathError).code, message: (err as Error).message };
  }
  throw new Error(`${path} opened`);
}

test("links are followed inside the root, never out of it", () => {
  const before = snapshot(sentinel);
  expect(opened("a/flink")).toEqual({ host: join(root, "a/b/file"), path: "/a/b/file" });
  expect(opened("/ab/file")).toEqual({ host: join(root, "a/b/file"), path: "/a/b/file" });
  expect(opened("../../../a/./b/../b")).toEqual({ host: join(root, "a/b"), path: "/a/b" });
  // Out of the root: the link's target is looked up inside it, where it does not exist.
  expect(failure("abs/secret")).toEqual({ code: "ENOENT", message: `${sentinel.split("/").slice(0, 2).join("/")} does not exist` });
  expect(failure("a/rel/secret").code).toBe("ENOENT");
  expect(failure("loop1")).toEqual({ code: "ELOOP", message: "loop1: too many levels of symlinks" });
  expect(failure("a/b/file/x")).toEqual({ code: "ENOTDIR", message: "/a/b/file is not a directory" });
  expect(failure("a/flink", { finalLink: "refuse" })).toEqual({ code: "ELOOP", message: "/a/flink is a symlink (to 'b/file')" });
  expect(failure("ab/file", { noLinks: true })).toEqual({ code: "ELOOP", message: "/ab is a symlink (to '/a/b')" });
  expect(snapshot(sentinel)).toBe(before);
});

test("what is missing is made inside the root, through links out included", () => {
  const before = snapshot(sentinel);
  expect(opened("abs/inside/made", { create: "dir" })).toEqual({
    host: join(root, sentinel, "inside/made"),
    path: `${sentinel}/inside/made`,
  });
  expect(opened("a/rel/file", { create: "file" })).toEqual({ host: join(root, sentinel, "file"), path: `${sentinel}/file` });
  expect(opened("dangling", { create: "dir" })).toEqual({ host: join(root, sentinel, "new"), path: `${sentinel}/new` });
  expect(lstatSync(join(root, sentinel, "file")).isFile()).toBe(true);
  expect(snapshot(sentinel)).toBe(before);
});

test("/proc's magic links are refused; its ordinary ones (self) are followed", () => {
  const host = openDir("/");
  try {
    const self = openInRoot(host, "/proc/self/fd", { flags: O_PATH | O_DIRECTORY });
    expect(self.path).toBe(`/proc/${process.pid}/fd`);
    close(self.fd);
    for (const magic of ["/proc/self/cwd", "/proc/self/root/etc", `/proc/self/fd/${rootFd}`]) {
      let err: unknown;
      try {
        close(openInRoot(host, magic).fd);
      } catch (e) {
        err = e;
      }
      expect((err as Error).message).toMatch(/is a magic link of \/proc \(to '\/.*'\), which ucr does not follow/);
    }
  } finally {
    close(host);
  }
});

test.skipIf(!isRoot)("chown -R of a tree changes links, not what they point at (needs root)", () => {
  const tree = join(dir, "sandbox");
  mkdirSync(join(tree, "sub", "deeper"), { recursive: true });
  writeFileSync(join(tree, "stdout"), "");
  writeFileSync(join(tree, "sub", "deeper", "f"), "");
  symlinkSync(join(sentinel, "secret"), join(tree, "out-file"));
  symlinkSync(sentinel, join(tree, "sub", "out-dir"));
  const before = snapshot(sentinel);
  const fd = openat(-100, tree, O_RDONLY | O_DIRECTORY);
  try {
    chownTree(fd, 100, 101);
  } finally {
    close(fd);
  }
  for (const p of ["", "stdout", "sub", "sub/deeper", "sub/deeper/f", "out-file", "sub/out-dir"]) {
    const st = lstatSync(join(tree, p));
    expect({ p, owner: `${st.uid}:${st.gid}` }).toEqual({ p, owner: "100:101" });
  }
  expect(snapshot(sentinel)).toBe(before);
  chownSync(tree, 0, 0);
});

describe("the image's passwd and group files", () => {
  test("users by name and number, groups, HOME; ids bounded to 0..2^32-2", () => {
    expect(resolveUser(rootFd, "app")).toEqual({ name: "app", uid: 1000, gid: 1000, groups: [1000, 2000], home: "/home/app" });
    expect(resolveUser(rootFd, "1000:0")).toEqual({ name: "app", uid: 1000, gid: 0, groups: [0, 2000], home: "/home/app" });
    expect(resolveUser(rootFd, "4294967294")).toEqual({ name: "4294967294", uid: 4294967294, gid: 4294967294, groups: [4294967294] });
    expect(homeOf(rootFd, 0)).toBe("/root");
    expect(homeOf(rootFd, 1234)).toBeUndefined();
    for (const [spec, message] of [
      ["4294967296", "uid: '4294967296' is not a valid id (a number from 0 to 4294967294)"],
      ["4294967295", "uid: '4294967295' is not a valid id (a number from 0 to 4294967294)"],
      ["-1", "uid: '-1' is not a valid id (a number from 0 to 4294967294)"],
      ["app:-2", "gid: '-2' is not a valid id (a number from 0 to 4294967294)"],
      [":0", "user ':0' names no user"],
      ["nobody-here", "user 'nobody-here' is not in the image's /etc/passwd"],
      ["app:nogroup", "group 'nogroup' is not in the image's /etc/group"],
    ]) {
      expect(() => resolveUser(rootFd, spec!)).toThrow(message);
    }
  });

  test("a passwd that is not a regular file, or larger than the bound, is refused; a missing one is empty", () => {
    const r2 = join(dir, "root2");
    mkdirSync(join(r2, "etc"), { recursive: true });
    const fd = openDir(r2);
    try {
      expect(readTable(fd, "/etc/passwd")).toEqual([]);
      Bun.spawnSync(["mkfifo", join(r2, "etc", "passwd")]);
      expect(() => readTable(fd, "/etc/passwd")).toThrow("the image's /etc/passwd is a fifo (resolved to /etc/passwd), not a regular file");
      rmSync(join(r2, "etc", "passwd"));
      mkdirSync(join(r2, "etc", "passwd"));
      expect(() => readTable(fd, "/etc/passwd")).toThrow("the image's /etc/passwd is a directory");
      rmSync(join(r2, "etc", "passwd"), { recursive: true });
      writeFileSync(join(r2, "etc", "passwd"), Buffer.alloc(MAX_TABLE_BYTES + 1, "a"));
      expect(() => readTable(fd, "/etc/passwd")).toThrow(
        `the image's /etc/passwd is ${MAX_TABLE_BYTES + 1} bytes, more than the ${MAX_TABLE_BYTES} ucr reads`,
      );
      // A link out of the root is a link inside it.
      rmSync(join(r2, "etc", "passwd"));
      symlinkSync(join(root, "etc", "passwd"), join(r2, "etc", "passwd"));
      expect(readTable(fd, "/etc/passwd")).toEqual([]);
    } finally {
      close(fd);
    }
  });
});
