// Mesos' docker/runtime table (reference section 5), row by row.
import { expect, test } from "bun:test";
import type { CommandInfo } from "../../src/mesos/messages.ts";
import type { ImageConfig } from "../../src/images/manifest.ts";
import { CommandError, DEFAULT_PATH, resolveCommand } from "../../src/agent/command.ts";

const ctx = { sandbox: "/mnt/mesos/sandbox", useImage: true };
const image = (Entrypoint?: string[], Cmd?: string[], extra: Record<string, unknown> = {}): ImageConfig =>
  ({ config: { Entrypoint, Cmd, ...extra } }) as ImageConfig;
const cmd = (c: Partial<CommandInfo>): CommandInfo => ({ shell: true, arguments: [], uris: [], ...c }) as CommandInfo;
const E = ["/entry", "e1"];
const C = ["/cmd", "c1"];

test("shell=true with a value: /bin/sh -c value; Entrypoint and Cmd ignored", () => {
  const r = resolveCommand(cmd({ shell: true, value: "echo hi", arguments: ["x"] }), image(E, C), ctx);
  expect([r.executable, r.argv]).toEqual(["/bin/sh", ["sh", "-c", "echo hi"]]);
});

test("shell=true without a value: Mesos' error", () => {
  expect(() => resolveCommand(cmd({ shell: true }), image(E, C), ctx)).toThrow(
    new CommandError("Shell specified but no command value provided"),
  );
  expect(() => resolveCommand(undefined, image(E, C), ctx)).toThrow(/Shell specified but no command value provided/);
});

test("shell=false with a value: that executable, arguments verbatim (argv[0] included)", () => {
  const r = resolveCommand(cmd({ shell: false, value: "/bin/echo", arguments: ["echo", "hi"] }), image(E, C), ctx);
  expect([r.executable, r.argv]).toEqual(["/bin/echo", ["echo", "hi"]]);
});

test("shell=false, no value, no arguments: Entrypoint + Cmd, else Cmd, else an error", () => {
  expect(resolveCommand(cmd({ shell: false }), image(E, C), ctx)).toMatchObject({
    executable: "/entry",
    argv: ["/entry", "e1", "/cmd", "c1"],
  });
  expect(resolveCommand(cmd({ shell: false }), image(undefined, C), ctx)).toMatchObject({ executable: "/cmd", argv: ["/cmd", "c1"] });
  expect(() => resolveCommand(cmd({ shell: false }), image(), ctx)).toThrow(/No executable is found/);
});

test("shell=false, no value, arguments: Entrypoint + arguments (Cmd dropped), else Cmd[0] + arguments", () => {
  expect(resolveCommand(cmd({ shell: false, arguments: ["a1", "a2"] }), image(E, C), ctx)).toMatchObject({
    executable: "/entry",
    argv: ["/entry", "e1", "a1", "a2"],
  });
  expect(resolveCommand(cmd({ shell: false, arguments: ["a1"] }), image(undefined, C), ctx)).toMatchObject({
    executable: "/cmd",
    argv: ["/cmd", "a1"],
  });
  expect(() => resolveCommand(cmd({ shell: false, arguments: ["a1"] }), image(), ctx)).toThrow(/No executable is found/);
});

test("environment: MESOS_SANDBOX, then the image's Env, then the command's; PATH by default", () => {
  const r = resolveCommand(
    cmd({ value: "true", environment: { variables: [{ name: "FOO", type: "VALUE", value: "cmd" }] } }),
    image(undefined, undefined, { Env: ["FOO=image", "BAR=b=c", "NOEQUALS"] }),
    ctx,
  );
  expect(r.env).toEqual({ MESOS_SANDBOX: "/mnt/mesos/sandbox", FOO: "cmd", BAR: "b=c", PATH: DEFAULT_PATH });
  const withPath = resolveCommand(cmd({ value: "true" }), image(undefined, undefined, { Env: ["PATH=/opt/bin"] }), ctx);
  expect(withPath.env.PATH).toBe("/opt/bin");
});

test("working dir: the image's WorkingDir, else the sandbox; --docker_ignore_runtime ignores the image", () => {
  expect(resolveCommand(cmd({ value: "true" }), image(undefined, undefined, { WorkingDir: "/work" }), ctx).workingDir).toBe("/work");
  expect(resolveCommand(cmd({ value: "true" }), image(undefined, undefined, { WorkingDir: "" }), ctx).workingDir).toBe(
    "/mnt/mesos/sandbox",
  );
  const ignored = resolveCommand(cmd({ shell: false, value: "/bin/true" }), image(E, C, { WorkingDir: "/work", Env: ["X=1"] }), {
    ...ctx,
    useImage: false,
  });
  expect(ignored.workingDir).toBe("/mnt/mesos/sandbox");
  expect(ignored.env.X).toBeUndefined();
  expect(() => resolveCommand(cmd({ shell: false }), image(E, C), { ...ctx, useImage: false })).toThrow(/No executable is found/);
});
