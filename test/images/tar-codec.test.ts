// The tar header codec alone, against headers GNU tar writes and ones written by hand:
// ustar prefixes, base-256 numbers, checksums, PAX records kept as bytes, strictness.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TarFormatError, decodeHeader, parsePax, paxTime } from "../../src/images/tar/codec.ts";
import { tempDir } from "../helpers/agent.ts";
import { headerBlock, paxData } from "../helpers/hostile-tar.ts";

const work = tempDir("ucr-codec-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("GNU tar's own headers: names with a ustar prefix, modes, owners, types", () => {
  const src = join(work, "src");
  const long = `${"p".repeat(120)}/name`;
  mkdirSync(join(src, "p".repeat(120)), { recursive: true });
  writeFileSync(join(src, long), "x");
  const tarFile = join(work, "ustar.tar");
  expect(
    Bun.spawnSync(["tar", "--format=ustar", "--owner=1234", "--group=5678", "--mode=0640", "-C", src, "-cf", tarFile, long]).exitCode,
  ).toBe(0);
  const h = decodeHeader(readFileSync(tarFile).subarray(0, 512))!;
  expect(h.name).toBe(long);
  expect(h.type).toBe("file");
  expect(h.mode & 0o777).toBe(0o640);
  expect([h.uid, h.gid, h.size]).toEqual([1234, 5678, 1]);
});

test("base-256 sizes, a zero block, a bad checksum, and unknown types kept by their flag", () => {
  const big = headerBlock({ name: "huge", size: 2 ** 40 });
  expect(decodeHeader(big)!.size).toBe(2 ** 40);
  expect(decodeHeader(Buffer.alloc(512))).toBeNull();
  const broken = Buffer.from(big);
  broken[0] = 0x79;
  expect(() => decodeHeader(broken)).toThrow(TarFormatError);
  expect(() => decodeHeader(broken)).toThrow(/bad checksum/);
  expect(decodeHeader(headerBlock({ name: "v", type: "V" }))!.type).toEqual({ unknown: "V" });
  expect(decodeHeader(headerBlock({ name: "bytes\xff", type: "2", linkname: Buffer.from([0x80, 0x81]) }))).toMatchObject({
    name: "bytes\u00c3\u00bf",
    linkname: "\x80\x81",
  });
});

test("PAX: records keep their bytes, lengths are checked, NUL padding is allowed", () => {
  const data = paxData({
    path: Buffer.from([0x61, 0xff]),
    "SCHILY.xattr.user.\xfe": Buffer.from([0, 1, 0xff]),
    mtime: "1700000000.123456789",
  });
  const rec = parsePax(Buffer.concat([data, Buffer.alloc(100)]));
  expect(rec.path).toBe("a\xff");
  expect(rec["SCHILY.xattr.user.\xfe"]).toBe("\x00\x01\xff");
  expect(paxTime(rec.mtime!, "mtime")).toEqual([1700000000, 123456789]);
  expect(paxTime("-1.5", "mtime")).toEqual([-2, 500000000]);
  expect(() => parsePax(Buffer.from("30 path=short\n"))).toThrow(/malformed PAX record at byte 0/);
  expect(() => parsePax(Buffer.from("9 novalue\n"))).toThrow(/malformed PAX record/);
  expect(() => paxTime("soon", "mtime")).toThrow(/not a time/);
});
