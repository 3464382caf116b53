// Layer unpacking against real tars: GNU tar output unpacks to the same tree as `tar -x`;
// hostile tars (made with tar-stream, since GNU tar will not write them) are refused with
// the entry named, and nothing outside the layer root is touched.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { lgetxattr, lsetxattr } from "../../src/ffi/libc.ts";
import { WriterPool } from "../../src/images/layer/file-writer.ts";
import { runLayerJob } from "../../src/images/layer-job.ts";
import { LayerError, unpackLayer } from "../../src/images/layer/pipeline.ts";
import { tempDir } from "../helpers/agent.ts";

const dir = tempDir("ucr-unpack-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => {
  const p = join(dir, `${name}-${n++}`);
  mkdirSync(p, { recursive: true });
  return p;
};

type Entry = { name: string; type?: tar.Header["type"]; linkname?: string; body?: string; mode?: number };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on("end", () => resolve()));
  for (const e of entries) {
    pack.entry({ name: e.name, type: e.type ?? "file", linkname: e.linkname, mode: e.mode ?? 0o644 }, e.body ?? "");
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function* from(buf: Uint8Array) {
  for (let i = 0; i < buf.length; i += 7000) yield buf.subarray(i, i + 7000);
}

const opts = { maxBytes: 1 << 30, what: "layer test" };

async function refused(entries: Entry[], pattern: RegExp): Promise<string> {
  const outer = fresh("outer");
  const root = join(outer, "root");
  mkdirSync(root);
  const before = readdirSync(outer);
  let error: unknown;
  try {
    await unpackLayer(from(gzipSync(await makeTar(entries))), root, opts);
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(LayerError);
  expect((error as Error).message).toMatch(pattern);
  expect(readdirSync(outer)).toEqual(before); // nothing appeared beside the root
  return (error as Error).message;
}

describe("hostile entries are refused, naming the entry", () => {
  test("path traversal", async () => {
    await refused([{ name: "ok" }, { name: "../evil", body: "x" }], /entry '\.\.\/evil' has a path with '\.\.'/);
    await refused([{ name: "a/../../evil" }], /entry 'a\/\.\.\/\.\.\/evil' has a path with '\.\.'/);
  });

  test("absolute names", async () => {
    await refused([{ name: "/etc/evil-ucr-test", body: "x" }], /entry '\/etc\/evil-ucr-test' has an absolute path/);
    expect(existsSync("/etc/evil-ucr-test")).toBe(false);
  });

  test("writing through a symlink that leads out", async () => {
    const target = fresh("victim");
    await refused(
      [
        { name: "esc", type: "symlink", linkname: target },
        { name: "esc/evil", body: "x" },
      ],
      /entry 'esc\/evil' would be written through symlink 'esc' -> '.*victim.*', which leads outside the layer/,
    );
    expect(readdirSync(target)).toEqual([]);
    await refused(
      [
        { name: "d/up", type: "symlink", linkname: "../../.." },
        { name: "d/up/evil", body: "x" },
      ],
      /entry 'd\/up\/evil' would be written through symlink 'd\/up' -> '\.\.\/\.\.\/\.\.'/,
    );
  });

  test("hard links that lead out or to nothing", async () => {
    await refused([{ name: "h", type: "link", linkname: "../../etc/passwd" }], /entry 'h' has a hard link target with '\.\.'/);
    await refused([{ name: "h", type: "link", linkname: "/etc/passwd" }], /entry 'h' has an absolute hard link target/);
    await refused([{ name: "h", type: "link", linkname: "missing" }], /entry 'h' is a hard link to 'missing', which is not in this layer/);
    const target = fresh("victim2");
    writeFileSync(join(target, "secret"), "s");
    await refused(
      [
        { name: "esc", type: "symlink", linkname: target },
        { name: "h", type: "link", linkname: "esc/secret" },
      ],
      /entry 'h' would be written through symlink 'esc'/,
    );
  });

  test("a layer that inflates past the limit", async () => {
    const root = fresh("big");
    const big = await makeTar([{ name: "zeros", body: "0".repeat(200_000) }]);
    await expect(unpackLayer(from(gzipSync(big)), root, { ...opts, maxBytes: 100_000 })).rejects.toThrow(
      /unpacks to more than 100000 bytes \(--docker_max_layer_size\)/,
    );
  });

  test("a truncated gzip stream and a corrupt tar", async () => {
    const gz = gzipSync(await makeTar([{ name: "f", body: "x".repeat(50_000) }]));
    await expect(unpackLayer(from(gz.subarray(0, gz.length - 200)), fresh("trunc"), opts)).rejects.toThrow(
      /gzip stream is corrupt or truncated|not a valid tar/,
    );
    const garbage = Buffer.alloc(2048, 7);
    await expect(unpackLayer(from(garbage), fresh("garbage"), opts)).rejects.toThrow(/not a valid tar archive/);
  });
});

describe("what a layer means is kept", () => {
  test("in-root symlinks are followed; whiteouts become overlay whiteouts", async () => {
    const root = fresh("wh");
    const result = await unpackLayer(
      from(
        gzipSync(
          await makeTar([
            { name: "sub", type: "directory", mode: 0o755 },
            { name: "lnk", type: "symlink", linkname: "sub" },
            { name: "lnk/f", body: "through" },
            { name: "etc/.wh.gone" },
            { name: "opq/.wh..wh..opq" },
            { name: "opq/new", body: "n" },
            { name: ".wh..wh..plnk" },
          ]),
        ),
      ),
      root,
      opts,
    );
    expect(readFileSync(join(root, "sub/f"), "utf8")).toBe("through");
    const wh = lstatSync(join(root, "etc/gone"));
    expect(wh.isCharacterDevice()).toBe(true);
    expect(wh.rdev).toBe(0);
    expect(Buffer.from(lgetxattr(join(root, "opq"), "trusted.overlay.opaque") ?? []).toString()).toBe("y");
    expect(readFileSync(join(root, "opq/new"), "utf8")).toBe("n");
    expect(existsSync(join(root, ".wh..wh..plnk"))).toBe(false);
    expect(result.whiteouts).toEqual(["etc/gone"]);
    expect(result.opaques).toEqual(["opq"]);
    expect(result.compression).toBe("gzip");
  });

  test("digests: the wrong one names both", async () => {
    const gz = gzipSync(await makeTar([{ name: "f", body: "x" }]));
    const wrong = `sha256:${"0".repeat(64)}`;
    await expect(unpackLayer(from(gz), fresh("dg"), { ...opts, expectDigest: wrong })).rejects.toThrow(
      new RegExp(`digest mismatch: expected ${wrong}, got sha256:[0-9a-f]{64}`),
    );
    await expect(unpackLayer(from(gz), fresh("dg"), { ...opts, expectDiffId: wrong })).rejects.toThrow(
      /\(uncompressed, diff_id\): digest mismatch/,
    );
  });

  for (const threads of [0, 2])
    test(`a GNU tar layer unpacks to the same tree as tar -x, owners, modes, links, xattrs included (${threads} write threads)`, async () => {
      const src = fresh("src");
      mkdirSync(join(src, "bin"));
      writeFileSync(join(src, "bin/tool"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
      Bun.spawnSync(["chmod", "4755", join(src, "bin/tool")]);
      writeFileSync(join(src, "owned"), "o");
      Bun.spawnSync(["chown", "1000:1000", join(src, "owned")]);
      Bun.spawnSync(["ln", join(src, "owned"), join(src, "hard")]);
      Bun.spawnSync(["ln", "-s", "bin/tool", join(src, "rel-link")]);
      Bun.spawnSync(["ln", "-s", "/usr/bin/env", join(src, "abs-link")]);
      Bun.spawnSync(["mkfifo", join(src, "fifo")]);
      Bun.spawnSync(["mknod", join(src, "null"), "c", "1", "3"]);
      const long = join(src, "l".repeat(60), "o".repeat(60), "n".repeat(60));
      mkdirSync(long, { recursive: true });
      writeFileSync(join(long, "g".repeat(120)), "long");
      writeFileSync(join(src, "cap"), "c", { mode: 0o755 });
      const caps = Bun.spawnSync(["setcap", "cap_net_raw+ep", join(src, "cap")]);
      lsetxattr(join(src, "owned"), "user.bin", Buffer.from([0, 1, 2, 250, 255]));
      const tarFile = join(dir, "gnu.tar.gz");
      expect(Bun.spawnSync(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", src, "-czf", tarFile, "."]).exitCode).toBe(0);

      const ours = fresh("ours");
      const writers = threads > 0 ? new WriterPool(threads) : undefined;
      const result = await unpackLayer(Bun.file(tarFile).stream() as unknown as AsyncIterable<Uint8Array>, ours, { ...opts, writers });
      const theirs = fresh("theirs");
      expect(Bun.spawnSync(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", theirs, "-xzf", tarFile]).exitCode).toBe(0);

      const listing = (root: string) =>
        Bun.spawnSync(["find", ".", "-printf", "%p %y %m %U:%G %s %l\\n"], { cwd: root })
          .stdout.toString()
          .split("\n")
          .filter((l) => !/^\. /.test(l))
          .sort();
      expect(listing(ours)).toEqual(listing(theirs));
      for (const f of ["bin/tool", "owned", `${long.slice(src.length + 1)}/${"g".repeat(120)}`]) {
        expect(readFileSync(join(ours, f))).toEqual(readFileSync(join(theirs, f)));
      }
      expect(statSync(join(ours, "owned")).ino).toBe(statSync(join(ours, "hard")).ino);
      // PAX keeps nanoseconds; we set times from a double, good to a couple of microseconds.
      const us = (p: string) => statSync(p).mtimeMs * 1000;
      expect(Math.abs(us(join(ours, "bin/tool")) - us(join(theirs, "bin/tool")))).toBeLessThanOrEqual(2);
      expect(Math.abs(us(join(ours, "bin")) - us(join(theirs, "bin")))).toBeLessThanOrEqual(2);
      expect(lstatSync(join(ours, "null")).rdev).toBe(lstatSync(join(theirs, "null")).rdev);
      expect(Buffer.from(lgetxattr(join(ours, "owned"), "user.bin")!)).toEqual(Buffer.from([0, 1, 2, 250, 255]));
      if (caps.exitCode === 0) {
        expect(lgetxattr(join(ours, "cap"), "security.capability")).toEqual(lgetxattr(join(theirs, "cap"), "security.capability"));
        expect(Bun.spawnSync(["getcap", join(ours, "cap")]).stdout.toString()).toContain("cap_net_raw=ep");
      }
      expect(result.entries).toBeGreaterThan(10);
    });
});

test("a failed job removes its staging directory", async () => {
  const staging = fresh("staging");
  const bad = join(dir, "bad.tar");
  writeFileSync(bad, gzipSync(await makeTar([{ name: "../x" }])));
  const ctx = { progress: () => {} };
  await expect(
    runLayerJob(
      { source: { kind: "file", path: bad, offset: 0, length: statSync(bad).size }, staging, maxBytes: 1 << 20, what: "layer bad" },
      ctx,
    ),
  ).rejects.toThrow(/has a path with '\.\.'/);
  expect(existsSync(staging)).toBe(false);
});

test("GNU sparse files (PAX 1.0) keep their holes; older sparse formats are refused by name", async () => {
  const src = fresh("sparse-src");
  const file = join(src, "disk.img");
  expect(Bun.spawnSync(["truncate", "-s", "8M", file]).exitCode).toBe(0);
  for (const [offset, text] of [
    [4096, "start"],
    [5_000_000, "middle"],
    [8 * 1024 * 1024 - 3, "end"],
  ] as const) {
    expect(Bun.spawnSync(["sh", "-c", `printf '${text}' | dd of='${file}' bs=1 seek=${offset} conv=notrunc status=none`]).exitCode).toBe(0);
  }
  const v1 = join(dir, "sparse-1.0.tar");
  expect(Bun.spawnSync(["tar", "--sparse", "--sparse-version=1.0", "--format=posix", "-C", src, "-cf", v1, "disk.img"]).exitCode).toBe(0);
  const root = fresh("sparse-out");
  await unpackLayer(Bun.file(v1).stream() as unknown as AsyncIterable<Uint8Array>, root, opts);
  const out = join(root, "disk.img");
  expect(statSync(out).size).toBe(8 * 1024 * 1024);
  expect(readFileSync(out).equals(readFileSync(file))).toBe(true);
  expect(statSync(out).blocks * 512).toBeLessThan(64 * 1024); // still sparse, not 8 MiB of zeros

  const v01 = join(dir, "sparse-0.1.tar");
  expect(Bun.spawnSync(["tar", "--sparse", "--sparse-version=0.1", "--format=posix", "-C", src, "-cf", v01, "disk.img"]).exitCode).toBe(0);
  const err = await unpackLayer(Bun.file(v01).stream() as unknown as AsyncIterable<Uint8Array>, fresh("sparse-old"), opts).catch(
    (e: Error) => e,
  );
  expect((err as Error).message).toMatch(/entry '.*disk\.img' is a GNU sparse file in a format before 1\.0/);
});

test("with write threads: many files, a later duplicate wins, hard links wait for their target", async () => {
  const entries: Entry[] = [];
  for (let i = 0; i < 400; i++) entries.push({ name: `d${i % 7}/f${i}`, body: `file ${i}\n`.repeat(i % 50), mode: i % 2 ? 0o644 : 0o755 });
  const at = (i: number) => `d${i % 7}/f${i}`;
  entries.push({ name: at(300), body: "second version\n" }); // replaces an earlier entry, possibly still queued
  entries.push({ name: "late-link", type: "link", linkname: at(399) }); // target likely still in a batch
  entries.push({ name: "d2/f303", type: "symlink", linkname: "f2" }); // a symlink replacing a queued file
  const root = fresh("threads");
  const result = await unpackLayer(from(gzipSync(await makeTar(entries))), root, { ...opts, writers: new WriterPool(2) });
  expect(result.entries).toBe(403);
  expect(readFileSync(join(root, at(300)), "utf8")).toBe("second version\n");
  expect(statSync(join(root, "late-link")).ino).toBe(statSync(join(root, at(399))).ino);
  expect(readFileSync(join(root, "late-link"), "utf8")).toBe("file 399\n".repeat(399 % 50));
  expect(lstatSync(join(root, "d2/f303")).isSymbolicLink()).toBe(true);
  for (const i of [0, 1, 150, 398]) {
    const st = statSync(join(root, `d${i % 7}/f${i}`));
    expect(st.mode & 0o777).toBe(i % 2 ? 0o644 : 0o755);
    expect(readFileSync(join(root, `d${i % 7}/f${i}`), "utf8")).toBe(`file ${i}\n`.repeat(i % 50));
  }
});
