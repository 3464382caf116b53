// Spare container directories (src/provisioner/spares.ts): the pool on a real directory (made
// as the disk worker makes them, renamed as a launch takes them), and an agent whose launches
// take them, for each backend: the container runs in them, its output lands in them, REMOVE
// removes them, and a restarted agent removes what the last one left.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeSpares, SparePool, skeletonDirs, type SpareKind } from "../../src/provisioner/spares.ts";
import { removeTree } from "../../src/gc/disk.ts";
import { isBlankPage } from "../../src/runtime/state.ts";
import type { Backend } from "../../src/config/flags.ts";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { hasTopdirFlag } from "../helpers/fs.ts";
import { buildBusyboxImage, saveArchive } from "../helpers/images.ts";

const isRoot = process.getuid?.() === 0;
const work = tempDir("ucr-spares-");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const umask = process.umask();
const onExt4 = statfsSync(work).type === 0xef53;
const shmElsewhere = existsSync("/dev/shm") && statSync("/dev/shm").dev !== statSync(work).dev;

/** A pool over `root` whose maker runs in this thread (as the disk worker would), counting its calls. */
function pool(root: string, backend: Backend = "overlay") {
  const calls = { make: 0, remove: [] as string[] };
  const p = new SparePool({ sandbox: root, rootfs: root, runtime: root }, backend, {
    make: async (args) => {
      calls.make++;
      return makeSpares(args);
    },
    remove: async (path, within) => {
      calls.remove.push(path);
      removeTree(path, within);
    },
  });
  return { p, calls };
}

/** Until `kind` has `n` spares ready (the pool refills once takes pause for 25 ms). */
async function ready(p: SparePool, kind: SpareKind, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (p.count(kind) < n) {
    if (Date.now() > deadline) throw new Error(`${p.count(kind)} ${kind} spares ready after 10 s, not ${n}`);
    await Bun.sleep(10);
  }
}

const mode = (path: string) => statSync(path).mode & 0o7777;

describe("the spare pool", () => {
  test("a launch before any spare makes its own; after a pause it gets one, renamed where it asked, made as it would make it", async () => {
    const root = join(work, "p1");
    const dest = join(work, "p1-dest");
    mkdirSync(dest);
    const { p } = pool(root);
    expect(p.take("sandbox", join(dest, "first"))).toBeUndefined();
    expect(existsSync(join(dest, "first"))).toBe(false);
    await ready(p, "sandbox", 8);
    const id = p.take("sandbox", join(dest, "a"));
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(mode(join(dest, "a"))).toBe(0o750 & ~umask);
    expect(readdirSync(join(dest, "a")).sort()).toEqual(["stderr", "stdout"]);
    for (const f of ["stdout", "stderr"]) {
      expect(statSync(join(dest, "a", f)).size).toBe(0);
      expect(mode(join(dest, "a", f))).toBe(0o640 & ~umask);
    }
    expect(p.count("sandbox")).toBe(7);
    p.stop();
  });

  test("a runtime dir spare: 0700, with the files the agent writes first made as it would make them (checkpoint a blank page)", async () => {
    const root = join(work, "p-runtime");
    const dest = join(work, "p-runtime-dest");
    mkdirSync(dest);
    const { p } = pool(root);
    p.take("runtime", join(dest, "x"));
    await ready(p, "runtime", 8);
    expect(p.take("runtime", join(dest, "c1"))).toBeDefined();
    expect(mode(join(dest, "c1"))).toBe(0o700 & ~umask);
    expect(readdirSync(join(dest, "c1")).sort()).toEqual(["container.json", "hostname", "hosts", "launch.json"]);
    writeFileSync(join(dest, "made-here"), "");
    for (const f of ["hostname", "hosts", "launch.json"]) {
      expect(statSync(join(dest, "c1", f)).size).toBe(0);
      expect(mode(join(dest, "c1", f))).toBe(mode(join(dest, "made-here")));
    }
    // As writeFileAtomic makes state files (0644 less the umask).
    expect(mode(join(dest, "c1", "launch.json"))).toBe(0o644 & ~umask);
    expect(mode(join(dest, "c1", "container.json"))).toBe(0o644 & ~umask);
    expect(isBlankPage(readFileSync(join(dest, "c1", "container.json"), "utf8"))).toBe(true);
    p.stop();
  });

  for (const backend of ["overlay", "copy", "bind"] as const) {
    test(`a rootfs skeleton for ${backend} has the provisioner's directories, named by the id take() returns`, async () => {
      const root = join(work, `p-${backend}`);
      const dest = join(work, `p-${backend}-dest`);
      mkdirSync(dest);
      const { p } = pool(root, backend);
      p.take("rootfs", join(dest, "x"));
      await ready(p, "rootfs", 8);
      const id = p.take("rootfs", join(dest, "c1"))!;
      expect(id).toBeDefined();
      const dirs = skeletonDirs(backend, id);
      expect(dirs[0]).toBe(join("backends", backend, "rootfses", id));
      if (backend === "overlay")
        expect(dirs.slice(1)).toEqual([`backends/overlay/scratch/${id}/upperdir`, `backends/overlay/scratch/${id}/workdir`]);
      for (const d of dirs) {
        expect(statSync(join(dest, "c1", d)).isDirectory()).toBe(true);
        expect(readdirSync(join(dest, "c1", d))).toEqual([]);
        expect(mode(join(dest, "c1", d))).toBe(0o755 & ~umask);
      }
      p.stop();
    });
  }

  test("a destination that exists, or whose parent does not, is left to the launch; the spare stays for the next", async () => {
    const root = join(work, "p2");
    const dest = join(work, "p2-dest");
    mkdirSync(join(dest, "taken"), { recursive: true });
    writeFileSync(join(dest, "taken", "mine"), "x");
    const { p } = pool(root);
    p.take("sandbox", join(dest, "warm"));
    await ready(p, "sandbox", 8);
    expect(p.take("sandbox", join(dest, "taken"))).toBeUndefined();
    expect(readdirSync(join(dest, "taken"))).toEqual(["mine"]);
    expect(p.take("sandbox", join(dest, "no-such-dir", "c"))).toBeUndefined();
    expect(p.count("sandbox")).toBe(8);
    expect(p.take("sandbox", join(dest, "ok"))).toBeDefined();
    expect(p.count("sandbox")).toBe(7);
    p.stop();
  });

  test("a spare removed by hand is skipped: the next one is taken", async () => {
    const root = join(work, "p3");
    const dest = join(work, "p3-dest");
    mkdirSync(dest);
    const { p } = pool(root);
    p.take("sandbox", join(dest, "warm"));
    await ready(p, "sandbox", 8);
    // The oldest spares are taken first: remove every spare but the newest chunk's.
    const run = join(root, readdirSync(root)[0]!);
    const chunks = readdirSync(run).sort((a, b) => Number(a) - Number(b));
    for (const c of chunks.slice(0, -1)) rmSync(join(run, c), { recursive: true });
    const id = p.take("sandbox", join(dest, "c"));
    expect(id).toBeDefined();
    expect(readdirSync(join(run, chunks.at(-1)!))).not.toContain(`${id}.sandbox`);
    expect(p.count("sandbox")).toBe(3);
    p.stop();
  });

  test("how many are kept follows the largest burst that found none (plus 4), 64 at most; none are made while takes go on", async () => {
    const root = join(work, "p4");
    const dest = join(work, "p4-dest");
    mkdirSync(dest);
    const { p, calls } = pool(root);
    // A burst of 20 takes, each right after the last: nothing is made during it.
    for (let i = 0; i < 20; i++) p.take("sandbox", join(dest, `a${i}`));
    expect(calls.make).toBe(0);
    await ready(p, "sandbox", 24);
    await Bun.sleep(100);
    expect(p.count("sandbox")).toBe(24);
    // A burst of 100 with no pause: 24 from the pool, then none; the pool grows to 64, no more.
    let got = 0;
    for (let i = 0; i < 100; i++) if (p.take("sandbox", join(dest, `b${i}`)) !== undefined) got++;
    expect(got).toBe(24);
    await ready(p, "sandbox", 64);
    await Bun.sleep(100);
    expect(p.count("sandbox")).toBe(64);
    p.stop();
  });

  test("the runs an earlier agent left are removed at the first take; stop() ends the refills", async () => {
    const root = join(work, "p5");
    const old = join(root, "123-456", "1", "x.sandbox");
    mkdirSync(old, { recursive: true });
    writeFileSync(join(old, "stdout"), "old");
    const { p, calls } = pool(root);
    p.take("sandbox", join(work, "p5-none", "c"));
    await ready(p, "sandbox", 8);
    expect(calls.remove).toEqual([join(root, "123-456")]);
    expect(existsSync(join(root, "123-456"))).toBe(false);
    p.stop();
    const made = calls.make;
    mkdirSync(join(work, "p5-dest"));
    for (let i = 0; i < 8; i++) p.take("sandbox", join(work, "p5-dest", `c${i}`));
    await Bun.sleep(100);
    expect(calls.make).toBe(made);
    expect(p.take("sandbox", join(work, "p5-dest", "late"))).toBeUndefined();
  });

  test.skipIf(!shmElsewhere)(
    "spares on another filesystem than where they go (EXDEV): that kind is made no more, the others are (needs /dev/shm on another filesystem than the temp dir)",
    async () => {
      const shm = join("/dev/shm", `ucr-spares-${process.pid}`);
      try {
        const root = join(work, "p7");
        const dest = join(work, "p7-dest");
        mkdirSync(dest);
        const calls = { make: 0 };
        const p = new SparePool({ sandbox: shm, rootfs: root, runtime: root }, "overlay", {
          make: async (args) => {
            calls.make++;
            return makeSpares(args);
          },
          remove: async (path, within) => {
            removeTree(path, within);
          },
        });
        p.take("sandbox", join(dest, "s0"));
        p.take("rootfs", join(dest, "r0"));
        await ready(p, "sandbox", 8);
        await ready(p, "rootfs", 8);
        expect(p.take("sandbox", join(dest, "s1"))).toBeUndefined();
        expect(existsSync(join(dest, "s1"))).toBe(false);
        expect(p.take("rootfs", join(dest, "r1"))).toBeDefined();
        const made = calls.make;
        await ready(p, "rootfs", 8);
        await Bun.sleep(100);
        // Only the rootfs spare taken is made again; no sandbox spare any more.
        expect(calls.make).toBe(made + 1);
        expect(p.count("sandbox")).toBe(0);
        expect(p.take("sandbox", join(dest, "s2"))).toBeUndefined();
        p.stop();
      } finally {
        rmSync(shm, { recursive: true, force: true });
      }
    },
  );

  test.skipIf(!isRoot)(
    "a full disk: spares are not made, launches make their own, and after space is freed spares come back (needs root: a tmpfs)",
    async () => {
      const root = join(work, "p8-full");
      mkdirSync(root);
      Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs", root]);
      try {
        const spares = join(root, "spares");
        const dest = join(root, "dest");
        mkdirSync(dest);
        // Fill the inodes: nothing more can be made there.
        for (let i = 0; ; i++) {
          try {
            writeFileSync(join(root, `fill${i}`), "");
          } catch {
            break;
          }
        }
        const { p, calls } = pool(spares);
        expect(p.take("sandbox", join(dest, "a"))).toBeUndefined();
        const deadline = Date.now() + 5000;
        while (calls.make === 0 && Date.now() < deadline) await Bun.sleep(10);
        await Bun.sleep(100);
        expect(calls.make).toBeGreaterThan(0);
        expect(p.count("sandbox")).toBe(0);
        expect(p.take("sandbox", join(dest, "b"))).toBeUndefined();
        // Space again: the pause after the next launch makes spares.
        for (const name of readdirSync(root)) if (name.startsWith("fill")) rmSync(join(root, name));
        p.take("sandbox", join(dest, "b2"));
        await ready(p, "sandbox", 1);
        expect(p.take("sandbox", join(dest, "c"))).toBeDefined();
        expect(readdirSync(join(dest, "c")).sort()).toEqual(["stderr", "stdout"]);
        p.stop();
      } finally {
        Bun.spawnSync(["umount", "-l", root]);
      }
    },
  );

  test("the worker side refuses more than 64 at once", () => {
    expect(() => makeSpares({ dir: join(work, "p6"), kind: "sandbox", backend: "overlay", count: 65 })).toThrow(/at most 64/);
  });
});

describe.skipIf(!isRoot)("launches take spares (needs root: containers)", () => {
  const images = join(work, "images");

  async function launchWait(agent: Awaited<ReturnType<typeof startAgent>>, id: string, command: string, user?: string) {
    const l = await agent.call({
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: { value: id },
        command: { value: command, ...(user ? { user } : {}) },
        container: { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } },
      },
    });
    expect(l.status).toBe(200);
    const w = await agent.call({ type: "WAIT_CONTAINER", wait_container: { container_id: { value: id } } });
    expect(w.status).toBe(200);
    return ((await w.json()) as { wait_container: { exit_status: number } }).wait_container.exit_status;
  }

  /** The spares ready in the agent's run dir now: ids by kind, and each sandbox spare's inode. */
  function listSpares(workDir: string): { rootfs: string[]; sandboxInodes: number[]; runtimeInodes: number[]; runs: string[] } {
    const roots = [join(workDir, "spares"), join(workDir, "run", "spares")];
    const out = {
      rootfs: [] as string[],
      sandboxInodes: [] as number[],
      runtimeInodes: [] as number[],
      runs: roots.flatMap((root) => (existsSync(root) ? readdirSync(root).map((run) => join(root, run)) : [])),
    };
    // A restarted agent may be removing a run meanwhile: what is gone is not listed.
    const inode = (path: string) => {
      try {
        return statSync(path).ino;
      } catch {
        return undefined;
      }
    };
    const list = (dir: string) => {
      try {
        return readdirSync(dir);
      } catch {
        return [];
      }
    };
    for (const run of out.runs)
      for (const chunk of list(run))
        for (const name of list(join(run, chunk))) {
          if (name.endsWith(".rootfs")) out.rootfs.push(name.slice(0, -".rootfs".length));
          const ino = inode(join(run, chunk, name));
          if (ino === undefined) continue;
          if (name.endsWith(".sandbox")) out.sandboxInodes.push(ino);
          if (name.endsWith(".runtime")) out.runtimeInodes.push(ino);
        }
    return out;
  }

  for (const backend of ["overlay", "copy", "bind"] as const) {
    test(`${backend}: a launch after a pause runs in a spare sandbox and rootfs skeleton; REMOVE removes them; a restarted agent removes the last one's spares`, async () => {
      if (!existsSync(join(images, "alpine.tar"))) {
        mkdirSync(images, { recursive: true });
        buildBusyboxImage(join(work, "bb"), { tag: "1" });
        await saveArchive(join(work, "bb"), join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" });
      }
      const workDir = join(work, `agent-${backend}`);
      const args = [
        `--work_dir=${workDir}`,
        `--runtime_dir=${join(workDir, "run")}`,
        `--docker_registry=${images}`,
        "--image_providers=docker",
        "--isolation=filesystem/linux,docker/runtime",
        `--image_provisioner_backend=${backend}`,
      ];
      let agent = await startAgent({ args, keepWorkDir: true });
      try {
        expect(await launchWait(agent, "first", "true")).toBe(0);
        const deadline = Date.now() + 15_000;
        let spares = listSpares(workDir);
        while (spares.rootfs.length < 8 || spares.sandboxInodes.length < 8 || spares.runtimeInodes.length < 8) {
          if (Date.now() > deadline) throw new Error(`spares not made: ${JSON.stringify(spares)}`);
          await Bun.sleep(20);
          spares = listSpares(workDir);
        }
        // On ext4 the parents of each container's directories, and the spares' chunk dirs, spread
        // what is made in them over block groups (spreadSubdirs; its own test in test/ffi).
        if (onExt4) {
          const parents = [join(workDir, "containers"), join(workDir, "provisioner", "containers"), join(workDir, "run", "containers")];
          const chunks = spares.runs.flatMap((run) => readdirSync(run).map((chunk) => join(run, chunk)));
          expect(chunks.length).toBeGreaterThanOrEqual(2);
          for (const dir of [...parents, ...chunks]) expect({ dir, topdir: hasTopdirFlag(dir) }).toEqual({ dir, topdir: true });
        }
        // The bind backend mounts the image read-only: no write there, and no /etc files the image lacks.
        const write = backend === "bind" ? "true" : "echo made > /made && test -f /etc/hostname";
        expect(await launchWait(agent, "c1", `echo out-$HOSTNAME; echo err >&2; ${write}`)).toBe(0);
        const sandbox = join(workDir, "containers", "c1");
        expect(spares.sandboxInodes).toContain(statSync(sandbox).ino);
        const runtime = join(workDir, "run", "containers", "c1");
        expect(spares.runtimeInodes).toContain(statSync(runtime).ino);
        expect(readFileSync(join(runtime, "hostname"), "utf8")).toBe("c1\n");
        expect(readFileSync(join(runtime, "hosts"), "utf8")).toContain("c1");
        // The checkpoint and the spec were written into the spare's files.
        expect(JSON.parse(readFileSync(join(runtime, "container.json"), "utf8")).id).toEqual({ value: "c1" });
        expect(JSON.parse(readFileSync(join(runtime, "launch.json"), "utf8")).id).toBe("c1");
        expect(readdirSync(runtime).filter((n) => n.includes(".tmp-"))).toEqual([]);
        expect(readFileSync(join(sandbox, "stdout"), "utf8")).toContain("out-c1");
        expect(readFileSync(join(sandbox, "stderr"), "utf8")).toContain("err");
        const rootfses = readdirSync(join(workDir, "provisioner", "containers", "c1", "backends", backend, "rootfses"));
        expect(rootfses).toHaveLength(1);
        expect(spares.rootfs).toContain(rootfses[0]!);
        if (backend !== "bind") {
          const upperOrCopy =
            backend === "overlay"
              ? join(workDir, "provisioner", "containers", "c1", "backends", "overlay", "scratch", rootfses[0]!, "upperdir", "made")
              : join(workDir, "provisioner", "containers", "c1", "backends", "copy", "rootfses", rootfses[0]!, "made");
          expect(readFileSync(upperOrCopy, "utf8")).toBe("made\n");
        }
        // A workload of another user writes its sandbox (chowned to it, as before).
        expect(await launchWait(agent, "c2", "echo mine > $MESOS_SANDBOX/file", "nobody")).toBe(0);
        expect(statSync(join(workDir, "containers", "c2", "file")).uid).not.toBe(0);
        for (const id of ["first", "c1", "c2"]) {
          const r = await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: id } } });
          expect(r.status).toBe(200);
        }
        expect(existsSync(sandbox)).toBe(false);
        expect(existsSync(join(workDir, "provisioner", "containers", "c1"))).toBe(false);
        expect(listSpares(workDir).rootfs).not.toContain(rootfses[0]!);
        const before = listSpares(workDir).runs;
        expect(before).toHaveLength(2); // <work_dir>/spares/<run> and <runtime_dir>/spares/<run>
        await agent.stop();
        agent = await startAgent({ args, keepWorkDir: true });
        expect(await launchWait(agent, "after", "true")).toBe(0);
        const deadline2 = Date.now() + 15_000;
        while (listSpares(workDir).runs.some((run) => before.includes(run))) {
          if (Date.now() > deadline2) throw new Error("the last agent's spares were not removed");
          await Bun.sleep(20);
        }
        const r = await agent.call({ type: "REMOVE_CONTAINER", remove_container: { container_id: { value: "after" } } });
        expect(r.status).toBe(200);
      } finally {
        await agent.stop();
      }
    }, 60_000);
  }
});
