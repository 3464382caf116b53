// --authenticate_http_readwrite with --http_credentials: every /api/v1 call needs HTTP
// Basic with a known principal and its secret; /health stays open, as on a Mesos agent.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, startAgent, tempDir } from "../helpers/agent.ts";
import { caller, ENCODINGS } from "../helpers/protobuf.ts";

let agent: RunningAgent;
const credsDir = tempDir("ucr-auth-");
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;

beforeAll(async () => {
  const file = join(credsDir, "creds.json");
  writeFileSync(
    file,
    JSON.stringify({
      credentials: [
        { principal: "ops", secret: "s3cret" },
        { principal: "ci", secret: "other" },
      ],
    }),
  );
  agent = await startAgent({ args: ["--authenticate_http_readwrite", `--http_credentials=file://${file}`] });
});
afterAll(async () => {
  expect(await agent.stop()).toBe(0);
  rmSync(credsDir, { recursive: true, force: true });
});

for (const encoding of ENCODINGS) {
  const call = (body: unknown, headers?: Record<string, string>) => caller(agent, encoding)(body, headers);

  test(`${encoding}: no credentials: 401 with the Mesos realm`, async () => {
    const res = await call({ type: "GET_HEALTH" });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Basic realm="mesos-agent-readwrite"');
  });

  test(`${encoding}: wrong secret, unknown principal, another's secret, malformed header: 401`, async () => {
    for (const auth of [
      basic("ops", "wrong"),
      basic("eve", "s3cret"),
      basic("ci", "s3cret"),
      "Basic !!!",
      "Bearer abc",
      basic("ops", ""),
    ]) {
      const res = await call({ type: "GET_HEALTH" }, { Authorization: auth });
      expect({ auth, status: res.status }).toEqual({ auth, status: 401 });
    }
  });

  test(`${encoding}: the right principal and secret: the call goes through`, async () => {
    for (const [user, pass] of [
      ["ops", "s3cret"],
      ["ci", "other"],
    ] as const) {
      const res = await call({ type: "GET_HEALTH" }, { Authorization: basic(user, pass) });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ type: "GET_HEALTH", get_health: { healthy: true } });
    }
  });

  test(`${encoding}: secrets are masked in GET_FLAGS`, async () => {
    const res = await call({ type: "GET_FLAGS" }, { Authorization: basic("ops", "s3cret") });
    const text = await res.text();
    expect(text).not.toContain("s3cret");
    expect(text).toContain("authenticate_http_readwrite");
  });
}

test("authentication comes before every other check, as in libprocess", async () => {
  const res = await fetch(`${agent.url}/api/v1`, { method: "GET" });
  expect(res.status).toBe(401);
});

test("/health needs no credentials", async () => {
  expect((await fetch(`${agent.url}/health`)).status).toBe(200);
});

test("non-loopback --ip without authentication prints a loud warning", async () => {
  const open = await startAgent({ args: ["--ip=0.0.0.0"] });
  try {
    expect(open.log()).toMatch(/WARNING: listening on 0\.0\.0\.0 WITHOUT authentication/);
  } finally {
    await open.stop();
  }
  expect(agent.log()).not.toContain("WITHOUT authentication");
});
