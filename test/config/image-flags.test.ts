// The image pipeline's own flags: download deadlines (Mesos' --fetcher_stall_timeout, and a
// total one) and --docker_allow_foreign_platform, with their defaults, in GET_FLAGS and help.
import { expect, test } from "bun:test";
import { FlagError, flagsHelp, loadFlags } from "../../src/config/flags.ts";
import { startAgent } from "../helpers/agent.ts";

test("defaults: a 1 minute stall window, a 1 hour total, foreign platforms refused", () => {
  const f = loadFlags([], {}).values;
  expect(f.fetcher_stall_timeout).toBe(60e9);
  expect(f.image_fetch_timeout).toBe(3600e9);
  expect(f.docker_allow_foreign_platform).toBe(false);
  const g = loadFlags(["--fetcher_stall_timeout=5secs", "--image_fetch_timeout=2hrs", "--docker_allow_foreign_platform"], {}).values;
  expect([g.fetcher_stall_timeout, g.image_fetch_timeout, g.docker_allow_foreign_platform]).toEqual([5e9, 7200e9, true]);
  expect(() => loadFlags(["--image_fetch_timeout=0secs"], {})).toThrow(FlagError);
  expect(() => loadFlags(["--fetcher_stall_timeout=soon"], {})).toThrow(/flag '--fetcher_stall_timeout': 'soon' is not a duration/);
  expect(flagsHelp()).toContain("--docker_allow_foreign_platform (default: false)\n");
  expect(flagsHelp()).toContain("--fetcher_stall_timeout=VALUE (default: 1mins)");
});

test("GET_FLAGS shows them", async () => {
  const agent = await startAgent({ args: ["--fetcher_stall_timeout=90secs"] });
  try {
    const body = (await (await agent.call({ type: "GET_FLAGS" })).json()) as {
      get_flags: { flags: Array<{ name: string; value: string }> };
    };
    const flags = Object.fromEntries(body.get_flags.flags.map((f) => [f.name, f.value]));
    expect(flags.fetcher_stall_timeout).toBe("1.5mins");
    expect(flags.image_fetch_timeout).toBe("1hrs");
    expect(flags.docker_allow_foreign_platform).toBe("false");
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});
