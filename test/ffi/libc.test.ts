// libc through bun:ffi, for real: namespaces and mounts in a child process (so the test
// runner's own namespaces are never touched), and errno turned into named errors.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { SysError } from "../../src/ffi/errno.ts";
import { MNT_DETACH, mount, spreadSubdirs, umount2, unshare } from "../../src/ffi/libc.ts";
import { ROOT, tempDir } from "../helpers/agent.ts";
import { ext4Geometry, hasTopdirFlag } from "../helpers/fs.ts";

const isRoot = process.getuid?.() === 0;
const dir = tempDir("ucr-ffi-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run a TypeScript snippet in a fresh bun process; returns its stdout. */
function child(code: string): { code: number; stdout: string; stderr: string } {
  const script = join(dir, `child-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(script, code.replaceAll("@ffi", join(ROOT, "src/ffi/libc.ts")));
  const r = Bun.spawnSync([process.execPath, script]);
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test("errors name the call, the subject and the errno", () => {
  let err: unknown;
  try {
    mount("/nonexistent-source", "/nonexistent-target-ucr", null, 4096 /* MS_BIND */);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SysError);
  expect((err as SysError).code).toBe(isRoot ? "ENOENT" : "EPERM");
  expect((err as Error).message).toMatch(/^mount\(\/nonexistent-source -> \/nonexistent-target-ucr\) failed: E[A-Z]+ \(.+\)$/);

  try {
    umount2("/nonexistent-target-ucr", MNT_DETACH);
    throw new Error("umount2 of a path that is not mounted succeeded");
  } catch (e) {
    expect((e as SysError).code).toMatch(/^(ENOENT|EINVAL|EPERM)$/);
  }
  try {
    unshare(-1);
    throw new Error("unshare(-1) succeeded");
  } catch (e) {
    expect((e as SysError).code).toBe("EINVAL");
  }
});

// Needs root for CLONE_NEWUTS/CLONE_NEWNS; CI runs as root. Skipped with the reason otherwise.
test.skipIf(!isRoot)("unshare(UTS) + sethostname changes the child's hostname only (needs root)", async () => {
  const before = hostname();
  const r = child(`
    import { unshare, sethostname, CLONE_NEWUTS } from "@ffi";
    import { hostname } from "node:os";
    unshare(CLONE_NEWUTS);
    sethostname("ucr-ffi-test");
    console.log(hostname());
  `);
  expect(r.stderr).toBe("");
  expect(r.stdout.trim()).toBe("ucr-ffi-test");
  expect(hostname()).toBe(before);
});

test.skipIf(!isRoot)("a mount in a private mount namespace is invisible to the host (needs root)", () => {
  const target = join(dir, "mnt");
  Bun.spawnSync(["mkdir", "-p", target]);
  const r = child(`
    import { unshare, mount, CLONE_NEWNS, MS_REC, MS_PRIVATE } from "@ffi";
    import { readFileSync } from "node:fs";
    unshare(CLONE_NEWNS);
    mount(null, "/", null, MS_REC | MS_PRIVATE);
    mount("tmpfs", "${target}", "tmpfs", 0, "size=1m");
    console.log(readFileSync("/proc/self/mountinfo", "utf8").includes(" ${target} ") ? "mounted" : "missing");
  `);
  expect(r.stderr).toBe("");
  expect(r.stdout.trim()).toBe("mounted");
  expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${target} `);
});

test("dropCleanFilePages gives back the binary's clean pages, and the process runs on", () => {
  const r = child(`
    import { dropCleanFilePages } from "@ffi";
    import { readFileSync, realpathSync } from "node:fs";
    const rss = () => Number(/^Rss:\\s+(\\d+)/m.exec(readFileSync("/proc/self/smaps_rollup", "utf8"))[1]);
    const before = rss();
    const unmapped = dropCleanFilePages(realpathSync(process.execPath));
    const after = rss();
    // The code it runs next comes back from the page cache.
    const sum = [1, 2, 3].map((x) => x * 2).reduce((a, b) => a + b, 0);
    console.log(JSON.stringify({ before, after, unmapped, sum, again: JSON.parse(JSON.stringify({ ok: true })).ok }));
  `);
  expect(r.stderr).toBe("");
  const out = JSON.parse(r.stdout) as { before: number; after: number; unmapped: number; sum: number; again: boolean };
  expect(out.unmapped).toBeGreaterThan(0);
  expect(out.after).toBeLessThan(out.before);
  expect(out).toMatchObject({ sum: 12, again: true });
});

describe("spreadSubdirs (chattr +T)", () => {
  const geometry = ext4Geometry(dir);
  test.skipIf(!geometry)(
    `on ext4 it sets the flag, and the directories made in it go to block groups of their own${geometry ? "" : " (skipped: the temp dir is not on ext4 whose /proc/fs/ext4/<dev>/mb_groups is readable)"}`,
    () => {
      const plain = join(dir, "plain");
      const spread = join(dir, "spread");
      mkdirSync(plain);
      mkdirSync(spread);
      expect(hasTopdirFlag(spread)).toBe(false);
      expect(spreadSubdirs(spread)).toBe(true);
      expect(hasTopdirFlag(spread)).toBe(true);
      expect(hasTopdirFlag(plain)).toBe(false);
      // Set again: already set, still true, nothing else changed.
      expect(spreadSubdirs(spread)).toBe(true);
      const groups = (parent: string) => {
        for (let i = 0; i < 8; i++) mkdirSync(join(parent, `d${i}`));
        return new Set(readdirSync(parent).map((n) => Math.floor((statSync(join(parent, n)).ino - 1) / geometry!.inodesPerGroup)));
      };
      // Beside their parent without the flag (its group, the next one if that fills), spread with it
      // (on this machine 8 groups for 8 directories, every time).
      expect(groups(plain).size).toBeLessThanOrEqual(2);
      expect(groups(spread).size).toBeGreaterThanOrEqual(4);
    },
  );

  test("where the filesystem has no such flag, or the path is no directory, it answers false and changes nothing", () => {
    const shm = existsSync("/dev/shm") && statfsSync("/dev/shm").type === 0x01021994 /* TMPFS_MAGIC */ ? tempDirIn("/dev/shm") : undefined;
    if (shm) {
      try {
        expect(spreadSubdirs(shm)).toBe(false);
        mkdirSync(join(shm, "x"));
        expect(readdirSync(shm)).toEqual(["x"]);
      } finally {
        rmSync(shm, { recursive: true, force: true });
      }
    }
    expect(spreadSubdirs(join(dir, "missing"))).toBe(false);
    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    expect(spreadSubdirs(file)).toBe(false);
    expect(readFileSync(file, "utf8")).toBe("x");
    const link = join(dir, "a-link");
    Bun.spawnSync(["ln", "-s", dir, link]);
    expect(spreadSubdirs(link)).toBe(false); // a symlink is not followed
  });
});

function tempDirIn(parent: string): string {
  const path = join(parent, `ucr-ffi-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(path);
  return path;
}
