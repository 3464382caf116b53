// The launcher opens a workload's stdout and stderr in its sandbox as root, and a nested
// container's sandbox lies inside its parent's, which the parent's workload writes: a link put
// anywhere on the way (the child's directory swapped for a link to a host directory) must not
// lead the launcher out, and nothing may be created where the link points.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { openSandboxFile } from "../../src/runtime/launcher.ts";
import { tempDir } from "../helpers/agent.ts";

const work = tempDir("ucr-sandbox-files-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("a sandbox file is opened for appending, in the sandbox itself", () => {
  const top = join(work, "top");
  const child = join(top, "containers", "c");
  mkdirSync(child, { recursive: true });
  for (const sandbox of [
    { host: top, container: "/mnt/mesos/sandbox" },
    { host: child, container: "/mnt/mesos/sandbox", within: top },
  ]) {
    for (const text of ["one\n", "two\n"]) {
      const fd = openSandboxFile(sandbox, join(sandbox.host, "stdout"));
      writeSync(fd, text);
      closeSync(fd);
    }
    expect(readFileSync(join(sandbox.host, "stdout"), "utf8")).toBe("one\ntwo\n");
  }
  expect(() => openSandboxFile({ host: top, container: "/mnt/mesos/sandbox" }, "/etc/stdout")).toThrow("/etc/stdout is not in the sandbox");
});

test("a link below the top-level sandbox, or as the file itself, is refused; nothing is made where it points", () => {
  const top = join(work, "hostile");
  const outside = join(work, "outside");
  mkdirSync(join(top, "containers"), { recursive: true });
  mkdirSync(outside);
  // The child's directory swapped for a link to a host directory, as its parent's workload could.
  const child = join(top, "containers", "c");
  mkdirSync(child);
  renameSync(child, join(top, "containers", "moved"));
  symlinkSync(outside, child);
  expect(() => openSandboxFile({ host: child, container: "/mnt/mesos/sandbox", within: top }, join(child, "stdout"))).toThrow(/symlink/);
  // A link on the way further up (containers itself).
  const deeper = join(top, "containers", "moved", "containers", "d");
  mkdirSync(deeper, { recursive: true });
  renameSync(join(top, "containers"), join(top, "elsewhere"));
  symlinkSync(join(top, "elsewhere"), join(top, "containers"));
  expect(() => openSandboxFile({ host: deeper, container: "/mnt/mesos/sandbox", within: top }, join(deeper, "stderr"))).toThrow(/symlink/);
  // The file itself a link.
  const own = join(work, "own");
  mkdirSync(own);
  symlinkSync(join(outside, "target"), join(own, "stdout"));
  expect(() => openSandboxFile({ host: own, container: "/mnt/mesos/sandbox" }, join(own, "stdout"))).toThrow(/ELOOP/);
  expect(existsSync(join(outside, "stdout"))).toBe(false);
  expect(existsSync(join(outside, "stderr"))).toBe(false);
  expect(existsSync(join(outside, "target"))).toBe(false);
});
