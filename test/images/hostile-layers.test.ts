// Layers made to attack the unpacker: traversal, absolute names, writing through symlinks
// (also symlinked parents, loops, a symlink then a file of its name), hard links out, huge PAX
// headers and long names (refused before they are read), uids past 2^32-2, deep trees, names
// that are not UTF-8, and the copy backend applying a layer over a lower layer's symlink.
// Every case: the error names the entry (or the outcome is safe), and a sentinel directory
// beside the layer root is unchanged.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { dlopen } from "bun:ffi";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { diskUsage, removeTree as removeGcTree } from "../../src/gc/disk.ts";
import { applyLayers } from "../../src/provisioner/copy.ts";
import { WriterPool } from "../../src/images/layer/file-writer.ts";
import { LayerError, unpackLayer, type UnpackResult } from "../../src/images/layer/pipeline.ts";
import { removeTree } from "../../src/util/tree.ts";
import { tempDir } from "../helpers/agent.ts";
import { snapshot } from "../helpers/hostile-registry.ts";
import { countingStream, headerBlock, makeDeepTree, paxData, rawTar, type RawEntry } from "../helpers/hostile-tar.ts";

const work = tempDir("ucr-hostile-layers-");
const sentinel = join(work, "sentinel");
mkdirSync(join(sentinel, "sub"), { recursive: true });
writeFileSync(join(sentinel, "secret"), "host secret\n");
writeFileSync(join(sentinel, "sub", "file"), "sub file\n");

let n = 0;
function freshRoot(): string {
  const root = join(work, `root-${n++}`);
  mkdirSync(root);
  return root;
}

let before: string[];
beforeEach(() => {
  before = snapshot(sentinel);
});

async function* chunks(buf: Uint8Array, size = 7000) {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

const opts = { maxBytes: 1 << 30, what: "layer test" };

async function unpack(entries: RawEntry[], root = freshRoot()): Promise<{ root: string; result: UnpackResult }> {
  const result = await unpackLayer(chunks(gzipSync(rawTar(entries))), root, opts);
  return { root, result };
}

/** The error, after checking the layer root holds nothing outside it and the sentinel is untouched. */
async function refused(entries: RawEntry[], pattern: RegExp): Promise<string> {
  const err = await unpack(entries).then(
    () => new Error("the layer was accepted"),
    (e: Error) => e,
  );
  expect(err).toBeInstanceOf(LayerError);
  expect(err.message).toMatch(pattern);
  expect(snapshot(sentinel)).toEqual(before);
  return err.message;
}

afterAll(() => {
  // Whatever a case did, nothing appeared beside the roots and the sentinel.
  const stray = readdirSync(work).filter(
    (name) => name !== "sentinel" && !/^(root|deep|names|lower|upper|dest)-/.test(name) && !/\.tar$/.test(name),
  );
  // Deep trees: rmSync takes minutes on them (it walks from the root per entry).
  removeTree(work);
  expect(stray).toEqual([]);
});

describe("paths", () => {
  test("traversal and absolute names into the sentinel", async () => {
    await refused(
      [
        { name: "ok", data: "x" },
        { name: "../sentinel/evil", data: "x" },
      ],
      /entry '\.\.\/sentinel\/evil' has a path with '\.\.'/,
    );
    await refused([{ name: "a/b/../../../sentinel/evil", data: "x" }], /has a path with '\.\.'/);
    await refused([{ name: `${sentinel}/evil`, data: "x" }], /has an absolute path; layer entries must be relative/);
  });

  test("a symlink out, then a write through it (absolute and relative targets)", async () => {
    await refused(
      [
        { name: "l", type: "2", linkname: sentinel },
        { name: "l/evil", data: "x" },
      ],
      /entry 'l\/evil' would be written through symlink 'l' -> '.*sentinel', which leads outside the layer/,
    );
    await refused(
      [
        { name: "d/", type: "5", mode: 0o755 },
        { name: "d/l", type: "2", linkname: "../../sentinel" },
        { name: "d/l/evil", data: "x" },
      ],
      /would be written through symlink 'd\/l' -> '\.\.\/\.\.\/sentinel'/,
    );
  });

  test("symlinked parents: two hops that end outside, and a loop", async () => {
    await refused(
      [
        { name: "x", type: "2", linkname: "y" },
        { name: "y", type: "2", linkname: "../sentinel" },
        { name: "x/evil", data: "x" },
      ],
      /would be written through symlink 'y' -> '\.\.\/sentinel', which leads outside the layer/,
    );
    await refused(
      [
        { name: "a", type: "2", linkname: "b" },
        { name: "b", type: "2", linkname: "a" },
        { name: "a/f", data: "x" },
      ],
      /is written through too many symlinks/,
    );
  });

  test("symlinked parents that stay inside are followed", async () => {
    const { root } = await unpack([
      { name: "real/", type: "5", mode: 0o755 },
      { name: "link", type: "2", linkname: "real" },
      { name: "link/deeper/file", data: "in" },
    ]);
    expect(readFileSync(join(root, "real/deeper/file"), "utf8")).toBe("in");
  });

  test("hard links out, directly or through a symlink, are refused", async () => {
    await refused([{ name: "h", type: "1", linkname: "../sentinel/secret" }], /hard link target with '\.\.'/);
    await refused([{ name: "h", type: "1", linkname: `${sentinel}/secret` }], /absolute hard link target/);
    await refused(
      [
        { name: "l", type: "2", linkname: sentinel },
        { name: "h", type: "1", linkname: "l/secret" },
      ],
      /entry 'h' would be written through symlink 'l'/,
    );
  });

  test("a symlink to a host file, then a regular file of the same name, replaces the symlink", async () => {
    const { root } = await unpack([
      { name: "s", type: "2", linkname: `${sentinel}/secret` },
      { name: "s", data: "mine\n" },
      { name: "h", type: "2", linkname: `${sentinel}/sub/file` },
      { name: "h2", type: "1", linkname: "h" },
      { name: "h2", data: "mine too\n" },
    ]);
    expect(lstatSync(join(root, "s")).isFile()).toBe(true);
    expect(readFileSync(join(root, "s"), "utf8")).toBe("mine\n");
    expect(readFileSync(join(root, "h2"), "utf8")).toBe("mine too\n");
    expect(snapshot(sentinel)).toEqual(before);
  });

  test("a later entry replaces a directory (with what was written in it) by a file or a symlink", async () => {
    const entries: RawEntry[] = [];
    for (let i = 0; i < 300; i++) entries.push({ name: `d${i % 3}/f${i}`, data: `file ${i}\n` });
    entries.push({ name: "d0", data: "now a file\n" }, { name: "d1", type: "2", linkname: "d2" }, { name: "d1/late", data: "via link\n" });
    entries.push({ name: "e/deep/er/x", data: "x" }, { name: "e/deep", data: "flat\n" }, { name: "e/z", data: "z\n" });
    const root = freshRoot();
    await unpackLayer(chunks(gzipSync(rawTar(entries))), root, { ...opts, writers: new WriterPool(2) });
    expect(readFileSync(join(root, "d0"), "utf8")).toBe("now a file\n");
    expect(lstatSync(join(root, "d1")).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(root, "d2/late"), "utf8")).toBe("via link\n");
    expect(readdirSync(join(root, "d2")).length).toBe(101);
    expect(readFileSync(join(root, "e/deep"), "utf8")).toBe("flat\n");
    expect(readdirSync(join(root, "e")).sort()).toEqual(["deep", "z"]);
    expect(readdirSync(root).sort()).toEqual(["d0", "d1", "d2", "e"]);
  });

  test("a directory later replaced by a symlink out is not followed when directory times are set", async () => {
    const { root } = await unpack([
      { name: "a/", type: "5", mode: 0o755 },
      { name: "a/sub/", type: "5", mode: 0o755 },
      { name: "a", type: "2", linkname: sentinel },
    ]);
    expect(lstatSync(join(root, "a")).isSymbolicLink()).toBe(true);
    expect(snapshot(sentinel)).toEqual(before);
  });

  test("whiteouts and opaque markers cannot reach out either", async () => {
    await refused(
      [
        { name: "l", type: "2", linkname: sentinel },
        { name: "l/.wh.secret", data: "" },
      ],
      /would be written through symlink 'l'/,
    );
    await refused(
      [
        { name: "l", type: "2", linkname: sentinel },
        { name: "l/.wh..wh..opq", data: "" },
      ],
      /would be written through symlink 'l'/,
    );
    await refused([{ name: "a/.wh...", data: "" }], /has a path with '\.\.'|is a whiteout of nothing/);
  });
});

describe("bounded headers", () => {
  test("a PAX header that claims 64 MiB is refused before it is read", async () => {
    const head = headerBlock({ name: "PaxHeaders/big", type: "x", size: 64 * 1024 * 1024 });
    const src = countingStream(head, 64 * 1024 * 1024);
    const err = await unpackLayer(src.stream, freshRoot(), opts).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/PAX header 'PaxHeaders\/big' is 67108864 bytes, more than the 1048576 bytes ucr reads/);
    expect(src.pulled()).toBeLessThan(4 * 1024 * 1024);
    expect(snapshot(sentinel)).toEqual(before);
  });

  test("a GNU long name of 64 MiB is refused before it is read", async () => {
    const head = headerBlock({ name: "././@LongLink", type: "L", size: 64 * 1024 * 1024 });
    const src = countingStream(head, 64 * 1024 * 1024);
    const err = await unpackLayer(src.stream, freshRoot(), opts).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/GNU long name '\.\/\.\/@LongLink' is 67108864 bytes, more than the 1048576 bytes ucr reads/);
    expect(src.pulled()).toBeLessThan(4 * 1024 * 1024);
  });

  test("global PAX headers that add up past 1 MiB are refused", async () => {
    const g = (i: number): RawEntry => ({ name: `g${i}`, type: "g", data: paxData({ [`comment${i}`]: "x".repeat(600_000) }) });
    await refused([g(1), g(2), { name: "f", data: "x" }], /global PAX headers add up to more than 1048576 bytes/);
  });

  test("a malformed PAX record makes the header invalid", async () => {
    await refused(
      [
        { name: "PaxHeaders/x", type: "x", data: "99 path=oops\n" },
        { name: "f", data: "x" },
      ],
      /not a valid tar archive \(Invalid tar header: malformed PAX record at byte 0\)/,
    );
  });

  test("a uid or gid past 2^32-2 is refused (2^32-1 would mean 'unchanged' to chown)", async () => {
    await refused([{ name: "f", data: "x", pax: { uid: "4294967295" } }], /entry 'f' has uid 4294967295, beyond 4294967294/);
    await refused([{ name: "f", data: "x", pax: { gid: "99999999999" } }], /has gid 99999999999, beyond 4294967294/);
  });
});

describe("names are bytes", () => {
  // Two names that a UTF-8 decoder turns into the same U+FFFD, and a Latin-1 and a UTF-8 'é'.
  const names = [Buffer.from([0x78, 0xff]), Buffer.from([0x78, 0xfe]), Buffer.from("caf\xe9", "latin1"), Buffer.from("café", "utf8")];

  for (const format of ["gnu", "posix"] as const) {
    test(`non-UTF-8 file names survive byte for byte, no two collide (GNU tar, --format=${format})`, async () => {
      const src = join(work, `names-src-${format}`);
      mkdirSync(src);
      const dirName = Buffer.from([0x64, 0x80, 0x81]);
      mkdirSync(Buffer.concat([Buffer.from(`${src}/`), dirName]));
      for (const [i, name] of names.entries())
        writeFileSync(Buffer.concat([Buffer.from(`${src}/`), dirName, Buffer.from("/"), name]), `file ${i}\n`);
      const tarFile = join(work, `names-${format}.tar`);
      const r = Bun.spawnSync(["tar", `--format=${format}`, "-C", src, "-cf", tarFile, "."], { stderr: "pipe" });
      expect(r.stderr.toString()).toBe("");
      const root = join(work, `names-out-${format}`);
      mkdirSync(root);
      await unpackLayer(Bun.file(tarFile).stream() as unknown as AsyncIterable<Uint8Array>, root, { ...opts, writers: new WriterPool(2) });
      const dir = Buffer.concat([Buffer.from(`${root}/`), dirName]);
      const listed = (readdirSync(dir, { encoding: "buffer" }) as Buffer[]).map((b) => b.toString("hex")).sort();
      expect(listed).toEqual(names.map((b) => b.toString("hex")).sort());
      for (const [i, name] of names.entries())
        expect(readFileSync(Buffer.concat([dir, Buffer.from("/"), name]), "utf8")).toBe(`file ${i}\n`);
    });
  }

  test("symlink targets, hard links and whiteouts keep their bytes too; xattr names and values as well", async () => {
    const weird = Buffer.from([0x77, 0xff, 0x01]);
    const xname = Buffer.concat([Buffer.from("user.x"), Buffer.from([0xfe])]);
    const xvalue = Buffer.from([0, 0xff, 0x80, 1]);
    const { root, result } = await unpack([
      { name: weird, data: "w\n", pax: { [`SCHILY.xattr.${xname.toString("latin1")}`]: xvalue } },
      { name: "link", type: "2", linkname: weird },
      { name: "hard", type: "1", linkname: weird },
      { name: Buffer.concat([Buffer.from(".wh."), Buffer.from([0xc0, 0xaf])]), data: "" },
    ]);
    const w = Buffer.concat([Buffer.from(`${root}/`), weird]);
    expect(readFileSync(w, "utf8")).toBe("w\n");
    expect(readFileSync(join(root, "link"), "utf8")).toBe("w\n");
    expect(statSync(join(root, "hard")).ino).toBe(statSync(w).ino);
    expect(lstatSync(Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0xc0, 0xaf])])).isCharacterDevice()).toBe(true);
    // Recorded so the bytes come back (not valid UTF-8: a NUL and base64).
    expect(result.whiteouts).toEqual([`\0${Buffer.from([0xc0, 0xaf]).toString("base64")}`]);
    const libc = dlopen("libc.so.6", { lgetxattr: { args: ["ptr", "ptr", "ptr", "u64"], returns: "i64" } });
    const buf = new Uint8Array(64);
    const got = Number(libc.symbols.lgetxattr(Buffer.concat([w, Buffer.from([0])]), Buffer.concat([xname, Buffer.from([0])]), buf, 64));
    expect(Buffer.from(buf.subarray(0, got))).toEqual(xvalue);
  });
});

test("a tree 10,000 directories deep unpacks completely and correctly", async () => {
  const src = join(work, "deep-src");
  makeDeepTree(src, 10_000);
  const tarFile = join(work, "deep.tar");
  expect(Bun.spawnSync(["tar", "-C", src, "-cf", tarFile, "."]).exitCode).toBe(0);
  const root = join(work, "deep-out");
  mkdirSync(root);
  const result = await unpackLayer(Bun.file(tarFile).stream() as unknown as AsyncIterable<Uint8Array>, root, {
    ...opts,
    writers: new WriterPool(2),
  });
  expect(result.entries).toBe(10_000 + 10 + 1 + 1);
  // find walks with descriptors, so it sees the whole tree; compare everything it prints.
  const listing = (dir: string) =>
    Bun.spawnSync(["sh", "-c", "find . -printf '%y %m %s\\n' | sort | uniq -c; find . -type f -exec md5sum {} + | cut -c1-32 | sort"], {
      cwd: dir,
    }).stdout.toString();
  expect(listing(root)).toEqual(listing(src));
  expect(listing(root)).toContain("10001 d 755");
  // GC measures and deletes such a layer through descriptors too (paths would be too long).
  expect(diskUsage(root).entries).toBe(10_000 + 10 + 1 + 1);
  expect(removeGcTree(root, work)).toEqual({ removed: true });
  expect(existsSync(root)).toBe(false);
});

describe("the copy backend over a lower layer's symlink", () => {
  async function layer(name: string, entries: RawEntry[]): Promise<{ dir: string; record: UnpackResult }> {
    const dir = join(work, name);
    mkdirSync(dir);
    const record = await unpackLayer(chunks(gzipSync(rawTar(entries))), dir, opts);
    return { dir, record };
  }

  test("an upper layer's whiteout, opaque dir and files land in the container's tree, never through the symlink", async () => {
    const lower = await layer("lower-1", [
      { name: "a", type: "2", linkname: sentinel },
      { name: "b", type: "2", linkname: sentinel },
      { name: "c", type: "2", linkname: `${sentinel}/secret` },
    ]);
    const upper = await layer("upper-1", [
      { name: "a/", type: "5", mode: 0o755 },
      { name: "a/.wh.secret", data: "" },
      { name: "a/new", data: "new\n" },
      { name: "b/", type: "5", mode: 0o755 },
      { name: "b/.wh..wh..opq", data: "" },
      { name: "c", data: "replaced\n" },
    ]);
    const dest = join(work, "dest-1");
    mkdirSync(dest);
    applyLayers([lower.dir, upper.dir], dest, [lower.record, upper.record]);
    expect(snapshot(sentinel)).toEqual(before);
    expect(lstatSync(join(dest, "a")).isDirectory()).toBe(true);
    expect(readdirSync(join(dest, "a"))).toEqual(["new"]);
    expect(lstatSync(join(dest, "b")).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, "c"), "utf8")).toBe("replaced\n");
    expect(existsSync(join(sentinel, "secret"))).toBe(true);
  });
});
