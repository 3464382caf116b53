// `ucr exec` and `ucr attach` as a user runs them. With -it under a real pseudo-terminal (the
// kernel's, from Bun's openpty; resized by TIOCSWINSZ, which sends SIGWINCH as a terminal
// emulator does): the shell's prompt, a command's output, `stty size` after a resize, Ctrl-D
// and `exit N` ending it with that status. Without a terminal: stdin piped through (-i) or
// empty (no -i), the exit status. `ucr attach`: detach keys, then the container's status.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { UCR, runUcr, startAgent, tempDir, type RunningAgent } from "../helpers/agent.ts";
import { containerIdOf, parseExecArgs } from "../../src/cli/exec.ts";
import { alpineArchive, call, dockerArgs, isRoot, killBody, removeBody, waitBody } from "../agent/support.ts";

const work = tempDir("ucr-exec-");
let agent: RunningAgent;
const image = { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } };

beforeAll(async () => {
  if (!isRoot) return;
  const images = await alpineArchive(join(work, "images"));
  agent = await startAgent({ args: dockerArgs(images) });
  for (const [value, script, tty] of [
    ["box", "exec sleep 600", undefined],
    ["ttybox", "exec sh", { window_size: { rows: 24, columns: 80 } }],
  ] as const) {
    const r = await call(agent, {
      type: "LAUNCH_CONTAINER",
      launch_container: { container_id: { value }, command: { value: script }, container: { ...image, ...(tty ? { tty_info: tty } : {}) } },
    });
    expect(r.status).toBe(200);
  }
});
afterAll(async () => {
  if (agent) {
    for (const id of ["box", "ttybox"]) {
      await call(agent, killBody(id));
      await call(agent, waitBody(id));
      await call(agent, removeBody(id));
    }
    expect(await agent.stop()).toBe(0);
  }
  rmSync(work, { recursive: true, force: true });
});

/** The exit code of `proc`, or a failure (and the process killed) if it runs on past `ms`. */
async function exitCode(proc: Bun.Subprocess, ms = 20_000, what = ""): Promise<number> {
  const code = await Promise.race([proc.exited, Bun.sleep(ms).then(() => undefined)]);
  if (code === undefined) {
    proc.kill("SIGKILL");
    throw new Error(`ucr did not exit within ${ms} ms${what ? `; on its terminal: ${JSON.stringify(what)}` : ""}`);
  }
  return code;
}

/** `ucr ARGS` on a pseudo-terminal of `cols` x `rows`; what it shows, gathered. */
function onTerminal(args: string[], cols = 90, rows = 20) {
  let screen = "";
  const proc = Bun.spawn([UCR, ...args], {
    terminal: { cols, rows, data: (_t, d) => void (screen += new TextDecoder().decode(d)) },
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TERM: "xterm" },
  });
  const t = proc.terminal!;
  return {
    proc,
    type: (s: string) => t.write(s),
    resize: (c: number, r: number) => t.resize(c, r),
    get screen() {
      return screen;
    },
    /** Waits for `re` on the screen (after `from` characters), or fails saying what is there. */
    async until(re: RegExp, from = 0, ms = 15_000): Promise<number> {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = re.exec(screen.slice(from));
        if (m) return from + m.index + m[0].length;
        if (Date.now() > deadline || proc.exitCode !== null)
          throw new Error(`no ${re} on the screen: ${JSON.stringify(screen.slice(from))}`);
        await Bun.sleep(20);
      }
    },
  };
}

test("exec's arguments: options until the container ID, then the command; -it together; nested IDs", () => {
  expect(parseExecArgs(["-it", "box", "--", "sh", "-c", "x"])).toMatchObject({
    interactive: true,
    tty: true,
    parent: { value: "box" },
    command: ["sh", "-c", "x"],
  });
  expect(parseExecArgs(["-e", "A=1", "-u", "nobody", "a.b", "ls", "-l"])).toMatchObject({
    interactive: false,
    tty: false,
    user: "nobody",
    env: [{ name: "A", value: "1" }],
    parent: { value: "b", parent: { value: "a" } },
    command: ["ls", "-l"],
  });
  expect(() => parseExecArgs(["box"])).toThrow("no command given");
  expect(() => parseExecArgs(["-x", "box", "ls"])).toThrow("unknown option '-x'");
  expect(() => containerIdOf("a..b")).toThrow("is not a container ID");
});

describe.skipIf(!isRoot)("ucr exec and ucr attach (need root for containers)", () => {
  test("exec -it under a pseudo-terminal: a prompt, output, stty size after a resize, Ctrl-D ends it (0), exit N is N", async () => {
    const term = onTerminal(["exec", "-it", "--agent", agent.url, "box", "--", "sh"]);
    let at = await term.until(/sandbox # /);
    term.type("echo hello-$((6*7))\r");
    at = await term.until(/hello-42\r/, at);
    term.type("stty size\r");
    at = await term.until(/20 90\r/, at);
    term.resize(132, 50);
    // The resize reaches the container (SIGWINCH to ucr exec, TTY_INFO to the agent): seen by
    // stty. The signal and the keys typed after it are two events for ucr exec: asked again
    // until the new size shows (a few times at most).
    for (let tries = 1; ; tries++) {
      term.type("stty size\r");
      const seen = await term.until(/50 132\r/, at, 2_000).catch((err: Error) => (tries < 5 ? undefined : Promise.reject(err)));
      if (seen !== undefined) {
        at = seen;
        break;
      }
    }
    // Ctrl-D, the shell's EOF, once it reads a line again (its prompt is out): typed while it
    // runs a command, the terminal is in canonical mode and takes EOT as an empty line.
    await term.until(/sandbox # /, at);
    term.type("\x04");
    expect(await exitCode(term.proc, 20_000, term.screen)).toBe(0);

    const again = onTerminal(["exec", "-it", "--agent", agent.url, "box", "sh"]);
    await again.until(/sandbox # /);
    again.type("exit 5\r");
    expect(await exitCode(again.proc, 20_000, again.screen)).toBe(5);
    // Each session removed itself once it had its status.
    const listed = await call(agent, { type: "GET_CONTAINERS", get_containers: { show_nested: true } });
    expect(JSON.stringify(listed.json)).not.toContain("exec-");
  });

  test("exec without a terminal: -i pipes stdin through, no -i gives an empty stdin; the command's status is ucr's", async () => {
    const proc = Bun.spawn([UCR, "exec", "-i", "--agent", agent.url, "box", "--", "sh", "-c", "tr a-z A-Z; echo err >&2; exit 3"], {
      stdin: new TextEncoder().encode("piped through\n"),
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await exitCode(proc)).toBe(3);
    expect(await new Response(proc.stdout).text()).toBe("PIPED THROUGH\n");
    expect(await new Response(proc.stderr).text()).toBe("err\n");

    const noInput = await runUcr(["exec", "--agent", agent.url, "box", "cat"]);
    expect(noInput).toMatchObject({ code: 0, stdout: "" });

    const missing = await runUcr(["exec", "--agent", agent.url, "nope", "true"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("ucr exec: LAUNCH_NESTED_CONTAINER_SESSION: Parent container nope does not exist (HTTP 400)\n");
  });

  test("attach to a TTY container: raw input, Ctrl-P Ctrl-Q detaches, it runs on; attached again, its exit is ucr's", async () => {
    const term = onTerminal(["attach", "--agent", agent.url, "ttybox"], 100, 30);
    // The window size goes first on attach: the container's terminal takes this one's.
    term.type("echo attached-$((2*3)) $(stty size)\r");
    await term.until(/attached-6 30 100\r/);
    term.type("\x10\x11");
    expect(await exitCode(term.proc, 20_000, term.screen)).toBe(0);
    expect(term.screen).toContain("detached from ttybox");
    expect((await call(agent, { type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).text).toContain('"ttybox"');

    const back = onTerminal(["attach", "--agent", agent.url, "ttybox"]);
    back.type("exit 6\r");
    expect(await exitCode(back.proc, 20_000, back.screen)).toBe(6);
  });

  test("attach to a container without a terminal or session: Mesos' 500, said in one line", async () => {
    const r = await runUcr(["attach", "--no-stdin", "--agent", agent.url, "box"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith("ucr attach: ATTACH_CONTAINER_OUTPUT: I/O switchboard server was disabled for this container");
  });
});
