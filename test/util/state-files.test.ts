// Runtime state files (runtime/state.ts, util/atomic-file.ts): replaced whole or not at all,
// also when the writer is SIGKILLed at a random moment, and nothing half-written left after a
// failure. Real files on this machine's filesystem and a tiny tmpfs for a full disk.
import { afterAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STATE_PAGE, blankPage, isBlankPage, rewriteStateFile, writeStateFile } from "../../src/runtime/state.ts";
import { writeFileAtomic } from "../../src/util/atomic-file.ts";

const root = mkdtempSync(join(tmpdir(), "ucr-state-files-"));
afterAll(() => {
  Bun.spawnSync(["umount", "-l", join(root, "full")]);
  rmSync(root, { recursive: true, force: true });
});

const isRoot = process.getuid?.() === 0;

describe("state files", () => {
  test("writeStateFile: a new file, then replaced (a new inode, no temporary name left)", () => {
    const dir = join(root, "replace");
    mkdirSync(dir);
    const path = join(dir, "f.json");
    writeStateFile(path, '{"v":1}');
    expect(readFileSync(path, "utf8")).toBe('{"v":1}');
    const first = statSync(path).ino;
    writeStateFile(path, '{"v":2}');
    expect(readFileSync(path, "utf8")).toBe('{"v":2}');
    expect(statSync(path).ino).not.toBe(first);
    expect(readdirSync(dir)).toEqual(["f.json"]);
  });

  test("writeStateFile: an empty file made ahead is filled in place (same inode) with a page or less; else replaced", () => {
    const dir = join(root, "fill");
    mkdirSync(dir);
    const path = join(dir, "launch.json");
    writeFileSync(path, "");
    const ino = statSync(path).ino;
    writeStateFile(path, '{"spec":1}');
    expect(readFileSync(path, "utf8")).toBe('{"spec":1}');
    expect(statSync(path).ino).toBe(ino);
    // Not empty any more: the next write replaces it.
    writeStateFile(path, '{"spec":2}');
    expect(readFileSync(path, "utf8")).toBe('{"spec":2}');
    expect(statSync(path).ino).not.toBe(ino);
    // More than a page (which a killed writer could leave half-done in place): replaced.
    const big = join(dir, "big.json");
    writeFileSync(big, "");
    const bigIno = statSync(big).ino;
    const text = JSON.stringify({ big: "b".repeat(STATE_PAGE) });
    writeStateFile(big, text);
    expect(readFileSync(big, "utf8")).toBe(text);
    expect(statSync(big).ino).not.toBe(bigIno);
    // A link, even to an empty file, is replaced, never written through.
    const target = join(dir, "target");
    writeFileSync(target, "");
    symlinkSync(target, join(dir, "link.json"));
    writeStateFile(join(dir, "link.json"), '{"v":3}');
    expect(readFileSync(target, "utf8")).toBe("");
    expect(lstatSync(join(dir, "link.json")).isFile()).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(["big.json", "launch.json", "link.json", "target"]);
  });

  test("rewriteStateFile: a blank page made ahead is rewritten in place; isBlankPage knows it, and nothing else", () => {
    const dir = join(root, "blank");
    mkdirSync(dir);
    const path = join(dir, "container.json");
    writeFileSync(path, blankPage());
    expect(isBlankPage(readFileSync(path, "utf8"))).toBe(true);
    const ino = statSync(path).ino;
    rewriteStateFile(path, JSON.stringify({ state: "PROVISIONING" }));
    expect(statSync(path).ino).toBe(ino);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ state: "PROVISIONING" });
    expect(isBlankPage(readFileSync(path, "utf8"))).toBe(false);
    expect(isBlankPage("")).toBe(false);
    expect(isBlankPage(" ".repeat(100))).toBe(false);
  });

  test("rewriteStateFile: one page, rewritten in place (same inode), parsed as the text", () => {
    const dir = join(root, "rewrite");
    mkdirSync(dir);
    const path = join(dir, "c.json");
    rewriteStateFile(path, JSON.stringify({ state: "PROVISIONING" }));
    const ino = statSync(path).ino;
    expect(statSync(path).size).toBe(STATE_PAGE);
    for (const state of ["LAUNCHING", "RUNNING", "EXITED"]) {
      rewriteStateFile(path, JSON.stringify({ state, pad: state === "RUNNING" ? "x".repeat(1000) : "" }));
      expect(statSync(path).ino).toBe(ino);
      expect(statSync(path).size).toBe(STATE_PAGE);
      expect(JSON.parse(readFileSync(path, "utf8")).state).toBe(state);
    }
    expect(readdirSync(dir)).toEqual(["c.json"]);
  });

  test("rewriteStateFile: a file of another size (an older ucr's) or a text of a page or more is replaced whole", () => {
    const dir = join(root, "sizes");
    mkdirSync(dir);
    const path = join(dir, "c.json");
    writeFileSync(path, JSON.stringify({ state: "RUNNING", old: "y".repeat(5000) }));
    rewriteStateFile(path, JSON.stringify({ state: "EXITED" }));
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ state: "EXITED" });
    expect(statSync(path).size).toBe(STATE_PAGE);
    const big = JSON.stringify({ state: "RUNNING", big: "z".repeat(STATE_PAGE) });
    rewriteStateFile(path, big);
    expect(readFileSync(path, "utf8")).toBe(big);
    rewriteStateFile(path, JSON.stringify({ state: "EXITED" }));
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ state: "EXITED" });
    expect(readdirSync(dir)).toEqual(["c.json"]);
  });

  test.skipIf(!isRoot)("a full disk: the write fails, the old content stays, no temporary file is left (needs root: a tmpfs)", () => {
    const dir = join(root, "full");
    mkdirSync(dir);
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]).exitCode).toBe(0);
    const kept = join(dir, "kept.json");
    writeStateFile(kept, '{"v":1}');
    const page = join(dir, "page.json");
    rewriteStateFile(page, '{"v":1}');
    // Fill it.
    let n = 0;
    try {
      for (;;) writeFileSync(join(dir, `fill-${n++}`), Buffer.alloc(4096, 1));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
    }
    expect(() => writeStateFile(kept, JSON.stringify({ v: 2, pad: "p".repeat(8000) }))).toThrow(/ENOSPC|no space/i);
    expect(readFileSync(kept, "utf8")).toBe('{"v":1}');
    // A page already there is rewritten in place: no new block needed.
    rewriteStateFile(page, '{"v":2}');
    expect(JSON.parse(readFileSync(page, "utf8"))).toEqual({ v: 2 });
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  test("a writer SIGKILLed at random moments leaves every file whole: one of the versions it wrote", async () => {
    const dir = join(root, "kill");
    mkdirSync(dir);
    const script = join(dir, "writer.ts");
    // Alternates two versions of each file as fast as it can, each of another length.
    writeFileSync(
      script,
      `import { rewriteStateFile, writeStateFile } from ${JSON.stringify(join(import.meta.dir, "../../src/runtime/state.ts"))};
const [dir] = process.argv.slice(2);
const versions = [JSON.stringify({ v: "a", pad: "a".repeat(100) }), JSON.stringify({ v: "b", pad: "b".repeat(3000) })];
process.stdout.write("ready\\n");
for (let i = 0; ; i++) {
  rewriteStateFile(dir + "/page.json", versions[i % 2]);
  writeStateFile(dir + "/file.json", versions[(i + 1) % 2]);
}
`,
    );
    const allowed = new Set(["a", "b"]);
    for (let round = 0; round < 20; round++) {
      const writer = Bun.spawn([process.execPath, script, dir], { stdout: "pipe", stderr: "inherit" });
      const reader = writer.stdout.getReader();
      await reader.read(); // "ready"
      await Bun.sleep(5 + Math.random() * 40);
      writer.kill("SIGKILL");
      await writer.exited;
      for (const name of ["page.json", "file.json"]) {
        const path = join(dir, name);
        if (!existsSync(path)) continue; // killed before its first write
        const parsed = JSON.parse(readFileSync(path, "utf8")) as { v: string; pad: string };
        expect(allowed.has(parsed.v)).toBe(true);
        expect(parsed.pad).toBe(parsed.v.repeat(parsed.v === "a" ? 100 : 3000));
      }
    }
    // A writer killed between the exchange and the removal may leave the old content under a
    // temporary name (never in place of the file); each is a whole version too.
    for (const f of readdirSync(dir).filter((n) => n.includes(".tmp-"))) {
      const text = readFileSync(join(dir, f), "utf8");
      if (text !== "") expect(allowed.has((JSON.parse(text) as { v: string }).v)).toBe(true);
    }
  }, 60_000);

  test("writeFileAtomic, durable (the image store's): replaced by rename, fsync'd", () => {
    const dir = join(root, "durable");
    mkdirSync(dir);
    const path = join(dir, "r.json");
    writeFileAtomic(path, "one");
    writeFileAtomic(path, "two");
    expect(readFileSync(path, "utf8")).toBe("two");
    expect(readdirSync(dir)).toEqual(["r.json"]);
  });
});
