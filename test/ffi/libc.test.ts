// libc through bun:ffi, for real: namespaces and mounts in a child process (so the test
// runner's own namespaces are never touched), and errno turned into named errors.
import { afterAll, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { SysError } from "../../src/ffi/errno.ts";
import { MNT_DETACH, mount, umount2, unshare } from "../../src/ffi/libc.ts";
import { ROOT, tempDir } from "../helpers/agent.ts";

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
