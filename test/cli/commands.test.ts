// The one binary's subcommands: version, help, the hidden init stage, and exit code 2 with
// a one-line error for anything it does not know.
import { expect, test } from "bun:test";
import pkg from "../../package.json" with { type: "json" };
import { runUcr } from "../helpers/agent.ts";

test("ucr version prints the version and the build", async () => {
  const r = await runUcr(["version"]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(new RegExp(`^ucr ${pkg.version.replace(/\./g, "\\.")} \\(git [0-9a-f]{12}|unknown`));
  expect(r.stdout).toMatch(/built \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
});

test("ucr help lists the commands; ucr help agent lists every flag", async () => {
  const r = await runUcr(["help"]);
  expect(r.code).toBe(0);
  for (const cmd of ["agent", "version", "help"]) expect(r.stdout).toContain(`  ${cmd} `);
  expect(r.stdout).not.toContain("__init"); // hidden
  const a = await runUcr(["help", "agent"]);
  expect(a.code).toBe(0);
  for (const flag of [
    "--work_dir",
    "--docker_registry",
    "--image_provisioner_backend",
    "--provisioner_image_backend",
    "--http_credentials",
  ]) {
    expect(a.stdout).toContain(flag);
  }
  const b = await runUcr(["agent", "--help"]);
  expect(b.code).toBe(0);
  expect(b.stdout).toBe(a.stdout);
});

test("an unknown command: exit 2, one line naming it and the usage", async () => {
  const r = await runUcr(["launch"]);
  expect(r.code).toBe(2);
  expect(r.stdout).toBe("");
  expect(r.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(/^ucr: unknown command 'launch' \(usage: ucr </)]);
});

test("no command, or a flag where the command goes: exit 2 with the usage", async () => {
  const none = await runUcr([]);
  expect(none.code).toBe(2);
  expect(none.stderr).toMatch(/^ucr: no command given \(usage: ucr /);
  const flag = await runUcr(["--port=1"]);
  expect(flag.code).toBe(2);
  expect(flag.stderr).toMatch(/^ucr: unknown flag '--port=1' before a command/);
});

test("ucr __init is reserved for the agent and refuses to run by hand", async () => {
  const r = await runUcr(["__init"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/container init stage is started by the agent/);
});
