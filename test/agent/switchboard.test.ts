// The I/O switchboard lives in the launcher, which outlives the agent: a container launched
// with tty_info keeps its terminal while the agent is killed and restarted, and the next agent
// attaches to it again (output and input). A session does not survive: its client went with
// the agent, so the restarted agent ends it, as Mesos destroys DEBUG containers on recovery.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempDir } from "../helpers/agent.ts";
import { InputStream, Records, streamCall } from "../helpers/streams.ts";
import { alpineArchive, call, dockerArgs, isRoot, processesWith, removeBody, waitBody } from "./support.ts";

const work = tempDir("ucr-switchboard-");
let images: string;
beforeAll(async () => {
  if (isRoot) images = await alpineArchive(join(work, "images"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const image = { type: "MESOS", mesos: { image: { type: "DOCKER", docker: { name: "alpine" } } } };

describe.skipIf(!isRoot)("switchboard across agent restarts (needs root)", () => {
  test("a TTY container survives the agent's SIGKILL and is attached again by the next agent; a session is ended by it", async () => {
    const wd = join(work, "wd");
    const on = { args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(images)], keepWorkDir: true };
    const first = await startAgent(on);
    const tty = { value: "tty" };
    const launched = await call(first, {
      type: "LAUNCH_CONTAINER",
      launch_container: {
        container_id: tty,
        command: { value: "exec sh" },
        container: { ...image, tty_info: { window_size: { rows: 24, columns: 80 } } },
      },
    });
    expect(launched.status).toBe(200);
    let out = new Records(
      await streamCall(first, "json", { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: tty } }),
      "json",
    );
    let input = new InputStream(first, "json", tty);
    input.stdin("echo one-$((0+1))\n");
    await out.until(() => out.stdout.includes("one-1\r\n"));

    // A session under it, whose client will go with this agent.
    const sessionId = { value: "s", parent: tty };
    const session = new Records(
      await streamCall(first, "json", {
        type: "LAUNCH_NESTED_CONTAINER_SESSION",
        launch_nested_container_session: { container_id: sessionId, command: { value: "echo up; exec sleep 600" } },
      }),
      "json",
    );
    await session.until(() => session.stdout === "up\n");

    expect(await first.stop("SIGKILL")).toBe(137);
    await Promise.all([out.finished(), session.finished()]);
    input.close();

    const second = await startAgent(on);
    try {
      // The session: ended by the restarted agent, its exit reported as a kill.
      expect((await call(second, waitBody(sessionId))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
      expect(second.log()).toContain("session tty.s: the agent restarted");

      // The TTY container: the same shell, attached again.
      out = new Records(
        await streamCall(second, "json", { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: tty } }),
        "json",
      );
      input = new InputStream(second, "json", tty);
      input.stdin("echo two-$((1+1)) $(stty size)\n");
      await out.until(() => out.stdout.includes("two-2 24 80\r\n"));
      input.stdin("exit 4\n");
      await out.finished();
      expect((await input.answer).status).toBe(200);
      expect((await call(second, waitBody(tty))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 4 << 8 } });
      expect((await call(second, removeBody(tty))).status).toBe(200);
    } finally {
      expect(await second.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  });

  test("an agent told to stop ends its streams (a session with them) and answers open inputs 503, not waiting out its grace", async () => {
    const wd = join(work, "wd-stop");
    const on = { args: [`--work_dir=${wd}`, `--runtime_dir=${join(wd, "run")}`, ...dockerArgs(images)], keepWorkDir: true };
    const agent = await startAgent(on);
    const tty = { value: "t" };
    expect(
      (
        await call(agent, {
          type: "LAUNCH_CONTAINER",
          launch_container: { container_id: tty, command: { value: "exec sh" }, container: { ...image, tty_info: {} } },
        })
      ).status,
    ).toBe(200);
    const out = new Records(
      await streamCall(agent, "json", { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: tty } }),
      "json",
    );
    const input = new InputStream(agent, "json", tty);
    input.stdin("echo ready-$((1+1))\n");
    await out.until(() => out.stdout.includes("ready-2\r\n"));
    const sessionId = { value: "s", parent: tty };
    const session = new Records(
      await streamCall(agent, "json", {
        type: "LAUNCH_NESTED_CONTAINER_SESSION",
        launch_nested_container_session: { container_id: sessionId, command: { value: "echo up; exec sleep 600" } },
      }),
      "json",
    );
    await session.until(() => session.stdout === "up\n");

    expect(await agent.stop()).toBe(0);
    await Promise.all([out.finished(), session.finished()]);
    const answered = await input.answer;
    expect({ status: answered.status, text: await answered.text() }).toEqual({ status: 503, text: "Agent is shutting down" });
    expect(agent.log()).toContain("session t.s: the agent is stopping, and its client goes with it; ending it");
    expect(agent.log()).not.toContain("still in flight after");

    // The TTY container runs on for the next agent; the session ended with this one.
    const next = await startAgent(on);
    try {
      expect((await call(next, waitBody(sessionId))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 9 } });
      const again = new InputStream(next, "json", tty);
      again.stdin("exit 0\n");
      expect((await call(next, waitBody(tty))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 0 } });
      again.close();
      expect((await call(next, removeBody(tty))).status).toBe(200);
    } finally {
      expect(await next.stop()).toBe(0);
      rmSync(wd, { recursive: true, force: true });
    }
  });

  test("the launcher killed: the terminals it held are hung up (the workload's writes fail); attach says the switchboard is gone", async () => {
    const agent = await startAgent({ args: dockerArgs(images) });
    try {
      const tty = { value: "hup" };
      // Writes a tick every 50 ms while its terminal takes them; exits 5 once a write fails.
      const script = "while echo tick; do sleep 0.05; done; exit 5";
      const launched = await call(agent, {
        type: "LAUNCH_CONTAINER",
        launch_container: { container_id: tty, command: { value: script }, container: { ...image, tty_info: {} } },
      });
      expect(launched.status).toBe(200);
      const out = new Records(
        await streamCall(agent, "json", { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: tty } }),
        "json",
      );
      await out.until(() => out.stdout.includes("tick\r\ntick\r\n"));
      const socket = join(agent.workDir, "run", "launcher.sock");
      const launcher = processesWith(`__launcher\0--serve\0${socket}`)[0];
      expect(launcher).toBeGreaterThan(1);
      process.kill(launcher!, "SIGKILL");
      // The master went with the launcher: the kernel hangs the terminal up, the next write
      // fails (EIO), the loop ends; the launcher's reaper writes its status down. (SIGHUP from
      // the hangup does not end it: the kernel kills no PID 1 by a signal it does not handle.)
      expect((await call(agent, waitBody(tty))).json).toEqual({ type: "WAIT_CONTAINER", wait_container: { exit_status: 5 << 8 } });
      await out.finished();
      const late = await streamCall(agent, "json", { type: "ATTACH_CONTAINER_OUTPUT", attach_container_output: { container_id: tty } });
      expect(late.status).toBe(500);
      expect(await late.text()).toStartWith("I/O switchboard has shutdown");
      expect((await call(agent, removeBody(tty))).status).toBe(200);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });
});
