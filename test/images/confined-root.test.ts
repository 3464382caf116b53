// The root-confined resolver alone (the securejoin role): directories inside a root reached
// through handles, symlinks followed only while they stay inside, nothing created outside,
// the handle cache bounded and invalidated, names kept as bytes, depth no obstacle.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { O_CREAT, O_WRONLY, close, openat } from "../../src/ffi/fs-at.ts";
import { ConfinedRoot, ConfinementError, cleanKey } from "../../src/images/layer/confined-root.ts";
import { removeTree } from "../../src/util/tree.ts";
import { tempDir } from "../helpers/agent.ts";
import { snapshot } from "../helpers/hostile-registry.ts";

const work = tempDir("ucr-confined-");
afterAll(() => removeTree(work));
const outside = join(work, "outside");
mkdirSync(outside);
writeFileSync(join(outside, "keep"), "keep");
let n = 0;
function root(): string {
  const r = join(work, `root-${n++}`);
  mkdirSync(r);
  return r;
}

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfinementError);
    return (err as ConfinementError).reason;
  }
  throw new Error("resolution succeeded");
}

test("clean keys: absolute and '..' are named, './' and '//' are tidied", () => {
  expect(cleanKey("/etc/passwd")).toEqual({ problem: "absolute" });
  expect(cleanKey("a/../../b")).toEqual({ problem: "dotdot" });
  expect(cleanKey("..")).toEqual({ problem: "dotdot" });
  expect(cleanKey("./a//b/./c/")).toEqual({ key: "a/b/c" });
  expect(cleanKey("./././a/b")).toEqual({ key: "a/b" });
  expect(cleanKey("./")).toEqual({ key: "" });
  expect(cleanKey("a/b/")).toEqual({ key: "a/b" });
  expect(cleanKey("a..b/.c")).toEqual({ key: "a..b/.c" });
});

test("missing directories are created inside; without create they are absent", () => {
  const r = root();
  const cr = new ConfinedRoot(r);
  expect(cr.dir("a/b/c", false)).toBeUndefined();
  const h = cr.dir("a/b/c", true)!;
  expect(h.key).toBe("a/b/c");
  expect(existsSync(join(r, "a/b/c"))).toBe(true);
  expect(cr.dir("a/b/c", false)).toBe(h); // cached
  cr.close();
});

test("symlinks inside are followed; the key says where the directory really is", () => {
  const r = root();
  mkdirSync(join(r, "real/x"), { recursive: true });
  symlinkSync("real", join(r, "l"));
  symlinkSync("../real/x", join(r, "real/up"));
  const cr = new ConfinedRoot(r);
  expect(cr.dir("l/x", false)!.key).toBe("real/x");
  expect(cr.dir("real/up", false)!.key).toBe("real/x");
  cr.close();
});

test("symlinks that lead out are refused, however they do it, and nothing is made outside", () => {
  const r = root();
  const before = snapshot(outside);
  symlinkSync(outside, join(r, "abs"));
  symlinkSync("../outside", join(r, "rel"));
  mkdirSync(join(r, "d"));
  symlinkSync("../../outside", join(r, "d/rel2"));
  symlinkSync("hop2", join(r, "hop1"));
  symlinkSync("d/rel2", join(r, "hop2"));
  symlinkSync("loop2", join(r, "loop1"));
  symlinkSync("loop1", join(r, "loop2"));
  writeFileSync(join(r, "file"), "");
  const cr = new ConfinedRoot(r);
  expect(reason(() => cr.dir("abs/new", true))).toMatch(/symlink 'abs' -> '.*outside', which leads outside the layer/);
  expect(reason(() => cr.dir("rel/new", true))).toMatch(/symlink 'rel' -> '\.\.\/outside'/);
  expect(reason(() => cr.dir("d/rel2/new", true))).toMatch(/symlink 'd\/rel2' -> '\.\.\/\.\.\/outside'/);
  expect(reason(() => cr.dir("hop1/new", true))).toMatch(/symlink 'd\/rel2'/);
  expect(reason(() => cr.dir("loop1/x", true))).toBe("is written through too many symlinks");
  expect(reason(() => cr.dir("file/x", true))).toBe("needs 'file' to be a directory, but it is a file");
  expect(snapshot(outside)).toEqual(before);
  cr.close();
});

test("a directory swapped for a symlink after it was cached is not used once invalidated", () => {
  const r = root();
  const cr = new ConfinedRoot(r);
  cr.dir("a/b", true);
  removeTree(join(r, "a"));
  symlinkSync(outside, join(r, "a"));
  cr.invalidate();
  expect(reason(() => cr.dir("a/b", true))).toMatch(/leads outside the layer/);
  cr.close();
});

test("names are bytes: two names a UTF-8 decoder would merge stay two directories", () => {
  const r = root();
  const cr = new ConfinedRoot(r);
  const a = cr.dir("x\xff", true)!;
  const b = cr.dir("x\xfe", true)!;
  expect(a.fd).not.toBe(b.fd);
  expect((readdirSync(r, { encoding: "buffer" }) as Buffer[]).map((x) => x.toString("hex")).sort()).toEqual(["78fe", "78ff"]);
  cr.close();
});

test("the handle cache stays bounded, and a pinned handle outlives its eviction", () => {
  const r = root();
  const cr = new ConfinedRoot(r, 4);
  const pinned = cr.dir("p", true)!;
  cr.pin(pinned);
  for (let i = 0; i < 20; i++) cr.dir(`d${i}`, true);
  expect(pinned.evicted).toBe(true);
  // Still open: a write in flight can use it.
  const fd = openat(pinned.fd, "f", O_WRONLY | O_CREAT, 0o644);
  expect(fd).toBeGreaterThan(0);
  close(fd);
  cr.unpin(pinned);
  expect(existsSync(join(r, "p/f"))).toBe(true);
  cr.close();
});

test("10,000 levels deep: resolution works where a path would be too long", () => {
  const r = root();
  const cr = new ConfinedRoot(r);
  let key = "d";
  for (let i = 1; i < 10_000; i++) {
    cr.dir(key, true);
    key += "/d";
  }
  const deepest = cr.dir(key, true)!;
  const fd = openat(deepest.fd, "bottom", O_WRONLY | O_CREAT, 0o644);
  expect(fd).toBeGreaterThan(0);
  close(fd);
  // From a cold cache too (the walk starts at the root and caches as it goes).
  cr.invalidate();
  expect(cr.dir(key, false)!.key.length).toBe(key.length);
  cr.close();
});
