// The image commands of the binary: ucr load and ucr images on a real archive, progress on
// a terminal, and an agent that keeps the store across restarts and cleans dead staging.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, runUcr, startAgent, tempDir } from "../helpers/agent.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

const work = tempDir("ucr-cli-images-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("ucr load imports every tagged image of an archive; ucr images lists them", async () => {
  const layout = join(work, "layout");
  buildBusyboxImage(layout, { tag: "1" });
  const archive = join(work, "bb.tar");
  await saveArchive(layout, archive, "example.com/tools/bb:7", { srcTag: "1" });
  const wd = join(work, "wd1");
  const load = await runUcr(["load", archive, `--work_dir=${wd}`]);
  expect(load.stderr).toMatch(/layer 1\/1 [0-9a-f]{12}: fetching/);
  expect(load.code).toBe(0);
  expect(load.stdout).toMatch(/^loaded example\.com\/tools\/bb:7: 1 layer\(s\), config [0-9a-f]{12}/);
  const list = await runUcr(["images", `--work_dir=${wd}`]);
  expect(list.code).toBe(0);
  const lines = list.stdout.trim().split("\n");
  expect(lines[0]).toMatch(/^REFERENCE +DIGEST +SIZE +LAYERS +LAST USED$/);
  expect(lines[1]).toMatch(/^example\.com\/tools\/bb:7 +[0-9a-f]{12} +[\d.]+ MiB +1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  const missing = await runUcr(["load", join(work, "nope.tar"), `--work_dir=${wd}`]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/ucr load: .*nope\.tar/);
  const usage = await runUcr(["pull"]);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toMatch(/expected one image name/);
});

test("on a terminal, progress lines are redrawn in place", async () => {
  const layout = join(work, "layout-tty");
  buildBusyboxImage(layout, { tag: "1" });
  const images = join(work, "images-tty");
  mkdirSync(images);
  await saveArchive(layout, join(images, "tty.tar"), "tty:latest", { srcTag: "1" });
  const cmd = `${join(ROOT, "dist/ucr")} pull tty --docker_registry=${images} --work_dir=${join(work, "wd-tty")}`;
  // script(1) gives the command a pseudo-terminal, as an operator's shell would.
  const proc = Bun.spawn(["script", "-qec", cmd, "/dev/null"], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  expect(await proc.exited).toBe(0);
  expect(out).toContain("\x1b[2K"); // lines cleared and redrawn
  expect(out).toMatch(/layer 1 [0-9a-f]{12}: done, [\d.]+ (KiB|MiB) in [\d.]+s/);
});

test("the agent keeps its store across restarts and removes staging a dead pull left", async () => {
  const wd = join(work, "wd-agent");
  const images = join(work, "images-agent");
  mkdirSync(images);
  const layout = join(work, "layout-agent");
  buildBusyboxImage(layout, { tag: "1" });
  await saveArchive(layout, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
  expect((await runUcr(["pull", "alpine", `--docker_registry=${images}`, `--work_dir=${wd}`])).code).toBe(0);
  // A staging directory of a process that cannot exist: pids are always below pid_max.
  const pidMax = (await Bun.file("/proc/sys/kernel/pid_max").text()).trim();
  const stale = join(wd, `store/docker/staging/${pidMax}.deadbeef`);
  mkdirSync(join(stale, "rootfs/partial"), { recursive: true });
  const agent = await startAgent({ args: [`--work_dir=${wd}`, `--docker_registry=${images}`] });
  try {
    expect(agent.log()).toContain("image store: removed 1 unfinished staging dir(s) left by an earlier run");
    expect(agent.log()).toMatch(/image store at .*store\/docker: 1 image\(s\)/);
    expect(existsSync(stale)).toBe(false);
    expect(readdirSync(join(wd, "store/docker/layers"))).toHaveLength(1);
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});
