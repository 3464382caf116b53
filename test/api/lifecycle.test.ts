// SIGTERM/SIGINT: the agent stops accepting, finishes the requests in flight, exits 0.
import { expect, test } from "bun:test";
import { startAgent } from "../helpers/agent.ts";

/** Opens a request, sends its headers and half its body, and returns a way to finish it. */
async function halfSentRequest(port: number) {
  const body = JSON.stringify({ type: "GET_HEALTH" });
  let answer = "";
  let closed!: () => void;
  const done = new Promise<void>((r) => (closed = r));
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => void (answer += d.toString()),
      close: () => closed(),
      error: () => closed(),
    },
  });
  sock.write(
    `POST /api/v1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 5)}`,
  );
  return {
    async finish(): Promise<string> {
      sock.write(body.slice(5));
      await Promise.race([done, Bun.sleep(5000)]);
      return answer;
    },
  };
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} lets the request in flight finish, then exits 0`, async () => {
    const agent = await startAgent();
    const pending = await halfSentRequest(agent.port);
    await Bun.sleep(100);
    agent.proc.kill(signal);
    await Bun.sleep(300);
    expect(agent.proc.exitCode).toBeNull(); // still serving the open request

    // New connections are no longer accepted.
    const refused = await fetch(`${agent.url}/health`).then(
      (r) => r.status,
      () => "refused",
    );
    expect(refused).toBe("refused");

    const answer = await pending.finish();
    expect(answer).toStartWith("HTTP/1.1 200");
    expect(answer).toContain('{"type":"GET_HEALTH","get_health":{"healthy":true}}');
    expect(await agent.stop()).toBe(0);
    expect(agent.log()).toContain(`received ${signal}`);
    expect(agent.log()).toContain("agent stopped");
  });
}

test("an idle agent stops on SIGTERM with exit 0", async () => {
  const agent = await startAgent();
  expect(await agent.stop("SIGTERM")).toBe(0);
  expect(agent.log()).toContain("agent stopped");
});

test("a SIGTERM right as the agent says it listens still stops it cleanly (exit 0), every time", async () => {
  // The handlers are in place before start-up, so there is no moment where the default
  // action (death by signal, 143) applies.
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const agent = await startAgent();
    codes.push(await agent.stop("SIGTERM"));
  }
  expect(codes).toEqual([0, 0, 0, 0, 0]);
});
