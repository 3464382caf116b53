// src/ffi/spawn.ts for real, in a child bun process each (its SIGCHLD reaper collects every
// child of the process it runs in, which must not be the test runner's): children in a new
// or a joined PID namespace, raw wait statuses, descriptors, signals, and the calling
// thread back in its own PID namespace for children right after.
import { afterAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, tempDir } from "../helpers/agent.ts";

const isRoot = process.getuid?.() === 0;
const dir = tempDir("ucr-spawn-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function child(code: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = join(dir, `child-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(script, code.replaceAll("@spawn", join(ROOT, "src/ffi/spawn.ts")));
  const p = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, exit] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code: exit, stdout, stderr };
}

test("a plain child: raw wait statuses, only the descriptors it is given, default signals", async () => {
  const r = await child(`
    import { onChildExit, pipe, spawnProcess } from "@spawn";
    import { closeSync, openSync } from "node:fs";
    const wait = (pid) => new Promise((resolve) => onChildExit(pid, resolve));
    const extra = openSync("/dev/null", "r"); // not close-on-exec, not in the map: must not reach the child
    process.on("SIGPIPE", () => {}); // a handler here must be the default there
    const [r, w] = pipe();
    const pid = spawnProcess({
      argv: ["/bin/sh", "-c", "ls /proc/self/fd >&3; grep -E '^Sig(Blk|Cgt)' /proc/self/status >&3; exit 5"],
      env: { PATH: "/usr/bin:/bin" },
      fds: [0, 1, 2, w],
    });
    closeSync(w);
    const status = await wait(pid);
    const text = await Bun.file(r).text();
    closeSync(r);
    const killed = spawnProcess({ argv: ["/bin/sleep", "10"], env: {}, fds: [0, 1, 2] });
    process.kill(killed, "SIGKILL");
    console.log(JSON.stringify({ status, text, killed: await wait(killed), extra }));
  `);
  expect(r.stderr).toBe("");
  const out = JSON.parse(r.stdout) as { status: number; text: string; killed: number; extra: number };
  expect(out.status).toBe(5 << 8);
  expect(out.killed).toBe(9);
  const lines = out.text.trim().split("\n");
  const fds = lines.filter((l) => /^\d+$/.test(l)).map(Number);
  // 0-3 and the directory ls reads (4): nothing else of the parent's, such as `extra`.
  expect(out.extra).toBeGreaterThan(4);
  expect(fds.every((fd) => fd <= 4)).toBe(true);
  expect(lines).toContain("SigBlk:\t0000000000000000");
  // sh catches a few signals itself; SIGPIPE (bit 13) is not among them, nor inherited.
  const caught = BigInt(`0x${lines.find((l) => l.startsWith("SigCgt:"))!.split("\t")[1]}`);
  expect(caught & (1n << 12n)).toBe(0n);
});

test.skipIf(!isRoot)(
  "a new PID namespace: the child is PID 1, and the caller's namespace for children is its own again (needs root)",
  async () => {
    const r = await child(`
    import { onChildExit, pipe, spawnProcess } from "@spawn";
    import { closeSync, readlinkSync } from "node:fs";
    const wait = (pid) => new Promise((resolve) => onChildExit(pid, resolve));
    const own = readlinkSync("/proc/self/ns/pid");
    const [r, w] = pipe();
    const first = spawnProcess({ argv: ["/bin/sh", "-c", "echo $$ >&3; readlink /proc/self/ns/pid >&3; sleep 0.3"], env: {}, fds: [0, 1, 2, w], pidns: "new" });
    const firstExit = wait(first);
    // The calling thread is back: a plain spawn lands in our namespace, a thread can be started.
    const after = readlinkSync("/proc/thread-self/ns/pid_for_children");
    const worker = new Worker("data:text/javascript,postMessage(1)");
    await new Promise((resolve) => (worker.onmessage = resolve));
    worker.terminate();
    // A child joining the first one's namespace.
    const [r2, w2] = pipe();
    const joined = spawnProcess({ argv: ["/bin/sh", "-c", "echo $$ >&3; readlink /proc/self/ns/pid >&3"], env: {}, fds: [0, 1, 2, w2], pidns: first });
    closeSync(w2);
    const joinedOut = await Bun.file(r2).text();
    closeSync(w);
    const firstOut = await Bun.file(r).text();
    // An exit collected before anyone asked is kept for the late asker.
    await Bun.sleep(100);
    console.log(JSON.stringify({ own, after, firstOut, joinedOut, statuses: [await wait(joined), await firstExit] }));
  `);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout) as { own: string; after: string; firstOut: string; joinedOut: string; statuses: number[] };
    expect(out.after).toBe(out.own);
    const [pid1, ns1] = out.firstOut.trim().split("\n");
    const [pid2, ns2] = out.joinedOut.trim().split("\n");
    expect(pid1).toBe("1");
    expect(ns1).not.toBe(out.own);
    expect(Number(pid2)).toBeGreaterThan(1);
    expect(ns2).toBe(ns1!);
    expect(out.statuses).toEqual([0, 0]);
  },
);

test.skipIf(!isRoot)("a namespace that cannot be opened is an error naming it; nothing is started (needs root)", async () => {
  const r = await child(`
    import { spawnProcess } from "@spawn";
    try {
      spawnProcess({ argv: ["/bin/true"], env: {}, fds: [0, 1, 2], pidns: 999999999 });
      console.log("started");
    } catch (e) {
      console.log(e.message);
    }
  `);
  expect(r.stdout.trim()).toMatch(/^open\(\/proc\/999999999\/ns\/pid\) failed: ENOENT/);
});
