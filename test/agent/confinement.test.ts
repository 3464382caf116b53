// The agent's confinement decisions without containers: Mesos' linux/capabilities rules over
// ucr's defaults for each combination of flags and request, the compiled-filter cache, and the
// check of a launched process against what was decided.
import { describe, expect, test } from "bun:test";
import { Confinement, ConfinementRefused } from "../../src/agent/confinement.ts";
import { loadFlags } from "../../src/config/flags.ts";
import { capabilitySet, DEFAULT_CAPABILITIES, type CapabilityName } from "../../src/mesos/capabilities.ts";

const caps = (...names: CapabilityName[]) => ({ capabilities: names });
const set = (...names: CapabilityName[]) => capabilitySet(names);
const DEFAULTS = capabilitySet(DEFAULT_CAPABILITIES);

function confinement(...args: string[]): Confinement {
  return new Confinement(loadFlags(["--isolation=linux/capabilities", ...args], {}).values);
}
const flag = (name: string, ...names: CapabilityName[]) => `--${name}=${JSON.stringify(caps(...names))}`;

describe("capabilities: Mesos' rules over ucr's defaults", () => {
  test("nothing asked, no flags: the defaults, nothing ambient, no_new_privs and a filter", () => {
    const c = confinement().forLaunch(undefined, "a");
    expect(c).toMatchObject({ bounding: DEFAULTS, effective: DEFAULTS, ambient: [], noNewPrivs: true });
    expect(c.seccomp?.program.length).toBeGreaterThan(100);
  });

  test("--effective_capabilities: what a container that asks for nothing gets, ambient too (as Mesos)", () => {
    const c = confinement(flag("effective_capabilities", "NET_BIND_SERVICE", "KILL")).forLaunch(undefined, "a");
    expect(c).toMatchObject({
      bounding: set("KILL", "NET_BIND_SERVICE"),
      effective: set("KILL", "NET_BIND_SERVICE"),
      ambient: set("KILL", "NET_BIND_SERVICE"),
    });
  });

  test("--bounding_capabilities limits requests; a container that asks for nothing stays within the defaults", () => {
    const conf = confinement(flag("bounding_capabilities", "CHOWN", "SYS_ADMIN", "KILL"));
    expect(conf.forLaunch(undefined, "a")).toMatchObject({ bounding: set("CHOWN", "KILL"), effective: set("CHOWN", "KILL"), ambient: [] });
    // Only effective asked: the bounding set is the flag's (Mesos: request ?: flag ?: effective).
    expect(conf.forLaunch({ effective_capabilities: caps("SYS_ADMIN") }, "b")).toMatchObject({
      bounding: set("CHOWN", "KILL", "SYS_ADMIN"),
      effective: set("SYS_ADMIN"),
      ambient: set("SYS_ADMIN"),
    });
    expect(conf.forLaunch({ bounding_capabilities: caps("SYS_ADMIN") }, "c")).toMatchObject({
      bounding: set("SYS_ADMIN"),
      effective: [],
      ambient: [],
    });
    expect(() => conf.forLaunch({ bounding_capabilities: caps("NET_ADMIN") }, "d")).toThrow(
      "Bounding capabilities '{ NET_ADMIN }', but only '{ CHOWN, KILL, SYS_ADMIN }' are allowed",
    );
    expect(() => conf.forLaunch({ effective_capabilities: caps("NET_ADMIN") }, "e")).toThrow(
      "Requested capabilities '{ NET_ADMIN }', but only '{ CHOWN, KILL, SYS_ADMIN }' are allowed",
    );
    expect(() => conf.forLaunch({ effective_capabilities: caps("SYS_ADMIN"), bounding_capabilities: caps("KILL") }, "f")).toThrow(
      "Requested capabilities '{ SYS_ADMIN }', but only '{ KILL }' are allowed",
    );
  });

  test("no flags: nothing beyond the defaults can be asked for (unlike Mesos, where absent means all)", () => {
    const conf = confinement();
    expect(() => conf.forLaunch({ effective_capabilities: caps("SYS_ADMIN") }, "a")).toThrow(ConfinementRefused);
    expect(conf.forLaunch({ effective_capabilities: caps("CHOWN") }, "b")).toMatchObject({
      bounding: set("CHOWN"),
      effective: set("CHOWN"),
      ambient: set("CHOWN"),
    });
  });

  test("capability_info is the deprecated spelling of effective_capabilities; not both", () => {
    const conf = confinement();
    expect(conf.forLaunch({ capability_info: caps("KILL") }, "a")).toMatchObject({ effective: set("KILL") });
    expect(() => conf.forLaunch({ capability_info: caps("KILL"), effective_capabilities: caps("KILL") }, "b")).toThrow(
      "Only one of 'capability_info' or 'effective_capabilities' is allowed",
    );
  });

  test("without linux/capabilities the fields are refused", () => {
    const conf = new Confinement(loadFlags([], {}).values);
    expect(() => conf.forLaunch({ bounding_capabilities: caps("KILL") }, "a")).toThrow(
      /linux_info\.bounding_capabilities needs the linux\/capabilities isolator/,
    );
  });
});

describe("seccomp filters are compiled once per profile and bounding set", () => {
  test("the same bounding set reuses the program; another one gets its own", () => {
    const conf = confinement(flag("bounding_capabilities", ...DEFAULT_CAPABILITIES, "SYS_ADMIN"));
    const a = conf.forLaunch(undefined, "a").seccomp!;
    const b = conf.forLaunch(undefined, "b").seccomp!;
    expect(b.program).toBe(a.program);
    const admin = conf.forLaunch({ effective_capabilities: caps("SYS_ADMIN") }, "c").seccomp!;
    expect(admin.program).not.toBe(a.program);
    expect(conf.forLaunch({ effective_capabilities: caps("SYS_ADMIN") }, "d").seccomp!.program).toBe(admin.program);
  });
});

describe("a launched process is checked against what was decided", () => {
  test("an unconfined process fails the check; a gone pid, or one that is still this binary (no exec), passes", async () => {
    const conf = confinement();
    const spec = conf.forLaunch(undefined, "a");
    const sleeper = Bun.spawn(["sleep", "30"], { stdio: ["ignore", "ignore", "ignore"] });
    try {
      const problem = conf.verify(sleeper.pid, spec);
      expect(problem).toContain("NoNewPrivs is 0");
      expect(problem).toContain("Seccomp is 0");
      expect(problem).toMatch(/its bounding set has \{ .*SYS_ADMIN/);
    } finally {
      sleeper.kill("SIGKILL");
      await sleeper.exited;
    }
    expect(conf.verify(2 ** 22 + 17, spec)).toBeUndefined();
    expect(conf.verify(process.pid, spec)).toBeUndefined();
  });
});
