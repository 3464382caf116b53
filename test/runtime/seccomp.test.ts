// The seccomp profile parser and our BPF compiler: profiles in both Docker formats, Docker's
// expansion rules, compiled programs checked against the profile's meaning over every call
// number (a BPF interpreter, for both architectures), and then loaded into the real kernel in
// child processes (test/fixtures/seccomp-run.c) whose system calls must come back as predicted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CAPABILITY_NAMES, DEFAULT_CAPABILITIES, capabilitySet } from "../../src/mesos/capabilities.ts";
import { AUDIT_ARCH, CompileError, compileFilter } from "../../src/runtime/seccomp/bpf.ts";
import defaultProfile from "../../src/runtime/seccomp/default.json";
import { RET, expandProfile, nativeArch, parseProfile, syscallTable, type Arch } from "../../src/runtime/seccomp/profile.ts";
import { X86_64 } from "../../src/runtime/seccomp/syscalls.ts";
import { tempDir } from "../helpers/agent.ts";
import { modelAction, runFilter } from "../helpers/bpf.ts";
import { buildFixture, noCompiler } from "../helpers/cc.ts";
import { runCommand } from "../helpers/command.ts";

const ONLY_32 = { socket: [0, 1, 2], personality: [0] } as const;
const ALL_CAPS = CAPABILITY_NAMES.map((_, i) => i);
const DEFAULTS = capabilitySet(DEFAULT_CAPABILITIES);
const KERNEL: [number, number] = [6, 1];

const builtin = () => parseProfile(JSON.stringify(defaultProfile));

describe("profiles: today's Docker format and the older one Mesos' parser requires", () => {
  const modern = {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: 38,
    architectures: ["SCMP_ARCH_X86_64"],
    syscalls: [
      { names: ["read", "write"], action: "SCMP_ACT_ALLOW" },
      { names: ["socket"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 1, op: "SCMP_CMP_EQ" }] },
      { names: ["mount"], action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_ADMIN"] } },
      { names: ["kill"], action: "SCMP_ACT_ERRNO", errnoRet: 13 },
    ],
  };
  // The shape of Mesos' docs/examples/seccomp_default.json: every key spelled out.
  const mesos = {
    defaultAction: "SCMP_ACT_ERRNO",
    archMap: [{ architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] }],
    syscalls: [
      { names: ["read", "write"], action: "SCMP_ACT_ALLOW", args: [], comment: "", includes: {}, excludes: {} },
      {
        names: ["socket"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: 1, valueTwo: 0, op: "SCMP_CMP_EQ" }],
        comment: "",
        includes: {},
        excludes: {},
      },
      { names: ["mount"], action: "SCMP_ACT_ALLOW", args: null, comment: "", includes: { caps: ["CAP_SYS_ADMIN"] }, excludes: {} },
      { names: ["kill"], action: "SCMP_ACT_ERRNO", args: null, comment: "", includes: {}, excludes: {} },
    ],
  };

  test("both parse; errnoRet and defaultErrnoRet are honoured where given, EPERM otherwise", () => {
    const m = parseProfile(JSON.stringify(modern));
    const o = parseProfile(JSON.stringify(mesos));
    expect(m.defaultAction).toBe(RET.ERRNO | 38);
    expect(o.defaultAction).toBe(RET.ERRNO | 1);
    expect(m.entries.map((e) => e.action)).toEqual([RET.ALLOW, RET.ALLOW, RET.ALLOW, RET.ERRNO | 13]);
    expect(o.entries.map((e) => e.action)).toEqual([RET.ALLOW, RET.ALLOW, RET.ALLOW, RET.ERRNO | 1]);
    // Same rules otherwise: conditions and capability includes survive both spellings.
    const rules = (p: typeof m) => expandProfile(p, "x86_64", [], KERNEL).rules.map((r) => [r.name, r.conditions.length]);
    expect(rules(m)).toEqual(rules(o));
    expect(rules(o)).toEqual([
      ["read", 0],
      ["write", 0],
      ["socket", 1],
      ["kill", 0],
    ]);
    expect(expandProfile(o, "x86_64", capabilitySet(["SYS_ADMIN"]), KERNEL).rules.map((r) => r.name)).toContain("mount");
  });

  test("the legacy single 'name' key and SCMP_ACT_KILL (= KILL_THREAD) are understood", () => {
    const p = parseProfile(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ name: "ptrace", action: "SCMP_ACT_KILL" }] }));
    expect(p.entries[0]).toMatchObject({ names: ["ptrace"], action: RET.KILL_THREAD });
  });

  test.each([
    [{}, /defaultAction: is required but missing/],
    [{ defaultAction: "SCMP_ACT_NOPE" }, /defaultAction: unknown action "SCMP_ACT_NOPE"/],
    [{ defaultAction: "SCMP_ACT_NOTIFY" }, /SCMP_ACT_NOTIFY needs a seccomp agent/],
    [{ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: [], action: "SCMP_ACT_ALLOW" }] }, /syscalls\[0\]: needs 'names'/],
    [
      {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["x"], action: "SCMP_ACT_ERRNO", args: [{ index: 6, value: 1, op: "SCMP_CMP_EQ" }] }],
      },
      /syscalls\[0\]\.args\[0\]\.index: must be an argument index/,
    ],
    [
      {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["x"], action: "SCMP_ACT_ERRNO", args: [{ index: 0, value: 1, op: "SCMP_CMP_SORTA" }] }],
      },
      /unknown operator "SCMP_CMP_SORTA"/,
    ],
    [
      {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["x"], action: "SCMP_ACT_ERRNO", args: [{ index: 0, value: -1, op: "SCMP_CMP_EQ" }] }],
      },
      /args\[0\]\.value: must not be negative/,
    ],
    [
      { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["x"], action: "SCMP_ACT_ERRNO", includes: { caps: ["CAP_FLY"] } }] },
      /unknown capability "CAP_FLY"/,
    ],
    [{ defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 5000 }, /defaultErrnoRet: must be an errno/],
    [
      { defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64"], archMap: [{ architecture: "SCMP_ARCH_X86_64" }] },
      /'architectures' and 'archMap' are exclusive/,
    ],
    [{ defaultAction: "SCMP_ACT_ALLOW", flags: ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] }, /is not supported/],
    [{ defaultAction: "SCMP_ACT_ALLOW", listenerPath: "/run/agent.sock" }, /'listenerPath' needs a seccomp agent/],
  ])("refused: %j", (json, message) => {
    expect(() => parseProfile(JSON.stringify(json))).toThrow(message);
  });

  test("argument values keep all 64 bits, even past 2^53 where JSON numbers round", () => {
    const text = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":18446744073709551615,"valueTwo":9007199254740993,"op":"SCMP_CMP_MASKED_EQ"}]}]}`;
    expect(parseProfile(text).entries[0]!.args[0]).toMatchObject({ value: (1n << 64n) - 1n, valueTwo: 9007199254740993n });
    expect(() => parseProfile(text.replace("18446744073709551615", "18446744073709551616"))).toThrow(/must fit in 64 bits/);
  });

  test("not JSON, and names no architecture has, are reported", () => {
    expect(() => parseProfile("{")).toThrow(/not valid JSON/);
    const p = parseProfile(
      JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ names: ["read", "chown32", "madeup"], action: "SCMP_ACT_ALLOW" }] }),
    );
    expect(p.unknownNames).toEqual(["chown32", "madeup"]);
  });
});

describe("expansion for one container (Docker's rules)", () => {
  const p = parseProfile(
    JSON.stringify({
      defaultAction: "SCMP_ACT_ERRNO",
      syscalls: [
        { names: ["mount"], action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"] } },
        { names: ["clone"], action: "SCMP_ACT_ALLOW", excludes: { caps: ["CAP_SYS_ADMIN"] } },
        { names: ["arch_prctl"], action: "SCMP_ACT_ALLOW", includes: { arches: ["amd64"] } },
        { names: ["getpid"], action: "SCMP_ACT_ALLOW", excludes: { arches: ["arm64"] } },
        { names: ["ptrace"], action: "SCMP_ACT_ALLOW", includes: { minKernel: "4.8" } },
        { names: ["kcmp"], action: "SCMP_ACT_ALLOW", excludes: { minKernel: "5.0" } },
        {
          names: ["personality"],
          action: "SCMP_ACT_ALLOW",
          args: [
            { index: 0, value: 0, op: "SCMP_CMP_EQ" },
            { index: 0, value: 8, op: "SCMP_CMP_EQ" },
          ],
        },
        {
          names: ["socket"],
          action: "SCMP_ACT_ALLOW",
          args: [
            { index: 0, value: 2, op: "SCMP_CMP_EQ" },
            { index: 1, value: 1, op: "SCMP_CMP_EQ" },
          ],
        },
      ],
    }),
  );
  const names = (arch: Arch, caps: number[], kernel: [number, number]) => expandProfile(p, arch, caps, kernel).rules.map((r) => r.name);

  test("includes.caps needs every cap in the bounding set; excludes.caps drops on any", () => {
    expect(names("x86_64", capabilitySet(["SYS_ADMIN"]), KERNEL)).not.toContain("mount");
    expect(names("x86_64", capabilitySet(["SYS_ADMIN", "NET_ADMIN"]), KERNEL)).toContain("mount");
    expect(names("x86_64", capabilitySet(["SYS_ADMIN"]), KERNEL)).not.toContain("clone");
    expect(names("x86_64", [], KERNEL)).toContain("clone");
  });

  test("arches (Go names) and minKernel", () => {
    expect(names("x86_64", [], KERNEL)).toEqual(expect.arrayContaining(["arch_prctl", "getpid", "ptrace"]));
    expect(names("aarch64", [], KERNEL)).not.toContain("arch_prctl");
    expect(names("aarch64", [], KERNEL)).not.toContain("getpid");
    expect(names("x86_64", [], [4, 4])).not.toContain("ptrace");
    expect(names("x86_64", [], [4, 19])).toContain("kcmp");
    expect(names("x86_64", [], [5, 0])).not.toContain("kcmp");
  });

  test("conditions on one argument become separate (ORed) rules, on distinct arguments one (ANDed) rule", () => {
    const rules = expandProfile(p, "x86_64", [], KERNEL).rules;
    expect(rules.filter((r) => r.name === "personality").map((r) => r.conditions.length)).toEqual([1, 1]);
    expect(rules.filter((r) => r.name === "socket").map((r) => r.conditions.length)).toEqual([2]);
  });

  test("the built-in profile names only calls x86_64 or aarch64 has, and its calls exist on this kernel's table", () => {
    expect(builtin().unknownNames).toEqual([]);
    expect(expandProfile(builtin(), "x86_64", DEFAULTS, KERNEL).maxNamed).toBe(X86_64.removexattrat!);
  });
});

/** Every call number (and a spread of arguments) through the interpreter, against the model. */
function checkAgainstModel(x: ReturnType<typeof expandProfile>, program: Uint8Array, samples: bigint[], upTo = 600): number {
  let checked = 0;
  for (let nr = 0; nr < upTo; nr++) {
    for (const a of samples) {
      const args = [a, a ^ 1n, a, 0n, a, a];
      const got = runFilter(program, { nr, arch: AUDIT_ARCH[x.arch], args });
      const want = modelAction(x, nr, args, ONLY_32);
      if (got !== want)
        throw new Error(`${x.arch} nr ${nr} args ${a.toString(16)}: compiled 0x${got.toString(16)}, profile says 0x${want.toString(16)}`);
      checked++;
    }
  }
  return checked;
}

const SAMPLES = [
  0n,
  1n,
  2n,
  7n,
  8n,
  38n,
  39n,
  40n,
  41n,
  0x20000n,
  0x20008n,
  0x7e020000n,
  0x10000000n,
  0xffffffffn,
  0x100000026n,
  0x100000002n,
  (1n << 64n) - 1n,
];

describe("compiled programs do what the profile says (BPF interpreter, every call number)", () => {
  for (const arch of ["x86_64", "aarch64"] as const) {
    for (const [label, caps] of [
      ["no capabilities", []],
      ["ucr's defaults", DEFAULTS],
      ["every capability", ALL_CAPS],
    ] as const) {
      test(`built-in profile, ${arch}, ${label}`, () => {
        const x = expandProfile(builtin(), arch, caps, KERNEL);
        const program = compileFilter(x);
        expect(program.byteLength / 8).toBeLessThan(200);
        expect(checkAgainstModel(x, program, SAMPLES)).toBe(600 * SAMPLES.length);
      });
    }
  }

  test("the architecture check: foreign ABIs, x32 and nr -1", () => {
    const x = expandProfile(builtin(), "x86_64", DEFAULTS, KERNEL);
    const program = compileFilter(x);
    const t = syscallTable("x86_64");
    expect(runFilter(program, { nr: t.getpid!, arch: AUDIT_ARCH.x86_64 })).toBe(RET.ALLOW);
    expect(runFilter(program, { nr: 20, arch: 0x40000003 /* i386 */ })).toBe(RET.KILL_PROCESS);
    expect(runFilter(program, { nr: t.getpid!, arch: AUDIT_ARCH.aarch64 })).toBe(RET.KILL_PROCESS);
    expect(runFilter(program, { nr: 0x40000000 | t.getpid!, arch: AUDIT_ARCH.x86_64 })).toBe(RET.KILL_PROCESS);
    expect(runFilter(program, { nr: -1, arch: AUDIT_ARCH.x86_64 })).toBe(RET.ERRNO | 38);
    const arm = compileFilter(expandProfile(builtin(), "aarch64", DEFAULTS, KERNEL));
    expect(runFilter(arm, { nr: 172 /* getpid */, arch: AUDIT_ARCH.aarch64 })).toBe(RET.ALLOW);
    expect(runFilter(arm, { nr: 20, arch: 0x40000028 /* arm */ })).toBe(RET.KILL_PROCESS);
    expect(runFilter(arm, { nr: -1, arch: AUDIT_ARCH.aarch64 })).toBe(RET.ERRNO | 38);
  });

  test("every comparison on 64-bit values, ANDed and ORed rules, and first match in profile order", () => {
    const p = parseProfile(JSON.stringify(opsProfile("getppid")));
    for (const arch of ["x86_64", "aarch64"] as const) {
      const x = expandProfile(p, arch, [], KERNEL);
      const program = compileFilter(x);
      const nr = syscallTable(arch).getppid!;
      const pool = [
        0n,
        1n,
        3n,
        5n,
        7n,
        8n,
        0xffffffffn,
        0x100000000n,
        0x100000005n,
        0x200000000n,
        0x120000000034n,
        0xff12000000ff34n,
        (1n << 64n) - 1n,
      ];
      let n = 0;
      for (let i = 0; i < 3000; i++) {
        const args = Array.from({ length: 6 }, (_, j) => pool[(i * 7 + j * 13 + ((i * j) % 5)) % pool.length]!);
        expect(runFilter(program, { nr, arch: AUDIT_ARCH[arch], args })).toBe(modelAction(x, nr, args, ONLY_32));
        n++;
      }
      expect(n).toBe(3000);
    }
  });

  test("jumps farther than 255 instructions are relayed through JA (hundreds of argument rules)", () => {
    const syscalls = Array.from({ length: 120 }, (_, i) => ({
      names: ["getppid"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: 100 + i,
      args: [
        { index: 0, value: 1000 + i, op: "SCMP_CMP_EQ" },
        { index: 1, value: i, op: "SCMP_CMP_GE" },
      ],
    }));
    const p = parseProfile(
      JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ names: ["getpid", "read"], action: "SCMP_ACT_ALLOW" }, ...syscalls] }),
    );
    const x = expandProfile(p, "x86_64", [], KERNEL);
    const program = compileFilter(x);
    expect(program.byteLength / 8).toBeGreaterThan(600);
    const nr = X86_64.getppid!;
    for (let i = 0; i < 120; i++) {
      const args = [BigInt(1000 + i), BigInt(i), 0n, 0n, 0n, 0n];
      expect(runFilter(program, { nr, arch: AUDIT_ARCH.x86_64, args })).toBe(RET.ERRNO | (100 + i));
      expect(runFilter(program, { nr, arch: AUDIT_ARCH.x86_64, args: [BigInt(1000 + i), 0n, 0n, 0n, 0n, 0n] })).toBe(
        i === 0 ? RET.ERRNO | 100 : RET.ERRNO | 1,
      );
    }
    expect(checkAgainstModel(x, program, [0n, 1000n, 1119n], 400)).toBe(1200);
  });

  test("refused: two unconditional rules with different actions for one call; more than 4096 instructions", () => {
    const p = parseProfile(
      JSON.stringify({
        defaultAction: "SCMP_ACT_ERRNO",
        syscalls: [
          { names: ["read"], action: "SCMP_ACT_ALLOW" },
          { names: ["read"], action: "SCMP_ACT_KILL" },
        ],
      }),
    );
    expect(() => compileFilter(expandProfile(p, "x86_64", [], KERNEL))).toThrow(CompileError);
    const huge = Array.from({ length: 700 }, (_, i) => ({
      names: ["getppid"],
      action: "SCMP_ACT_ALLOW",
      args: [
        { index: 0, value: 2 ** 40 + i, op: "SCMP_CMP_LT" },
        { index: 2, value: i, op: "SCMP_CMP_GT" },
      ],
    }));
    const q = parseProfile(JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: huge }));
    expect(() => compileFilter(expandProfile(q, "x86_64", [], KERNEL))).toThrow(/at most 4096/);
  });
});

/** A profile exercising every operator on `call`, plus what the loader itself needs (write, exit). */
function opsProfile(call: string) {
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: 200,
    syscalls: [
      { names: ["write", "exit", "exit_group"], action: "SCMP_ACT_ALLOW" },
      { names: [call], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 0x100000005, op: "SCMP_CMP_EQ" }] },
      {
        names: [call],
        action: "SCMP_ACT_ERRNO",
        errnoRet: 201,
        args: [
          { index: 1, value: 0xffffffff, op: "SCMP_CMP_GT" },
          { index: 2, value: 7, op: "SCMP_CMP_LE" },
        ],
      },
      {
        names: [call],
        action: "SCMP_ACT_ERRNO",
        errnoRet: 202,
        args: [{ index: 3, value: 0xff00000000ff, valueTwo: 0x120000000034, op: "SCMP_CMP_MASKED_EQ" }],
      },
      {
        names: [call],
        action: "SCMP_ACT_KILL_PROCESS",
        args: [
          { index: 4, value: 0, op: "SCMP_CMP_NE" },
          { index: 5, value: 0x200000000, op: "SCMP_CMP_GE" },
        ],
      },
      { names: [call], action: "SCMP_ACT_ERRNO", errnoRet: 203, args: [{ index: 0, value: 3, op: "SCMP_CMP_LT" }] },
      {
        names: [call],
        action: "SCMP_ACT_ALLOW",
        args: [
          { index: 5, value: 8, op: "SCMP_CMP_EQ" },
          { index: 5, value: 0xffffffff, op: "SCMP_CMP_EQ" },
        ],
      },
      { names: ["getpid"], action: "SCMP_ACT_ALLOW" },
      { names: ["getuid"], action: "SCMP_ACT_TRAP" },
      { names: ["getgid"], action: "SCMP_ACT_TRACE" },
      { names: ["getegid"], action: "SCMP_ACT_ERRNO", errnoRet: 204 },
    ],
  };
}

// --- the real kernel ------------------------------------------------------------------------

const arch = nativeArch();
const skipKernel = noCompiler() ?? (arch ? null : `no filter for ${process.arch}`);
let loader = "";
let work = "";

beforeAll(async () => {
  if (skipKernel) return;
  work = tempDir("ucr-seccomp-");
  loader = await buildFixture("seccomp-run", join(work, "seccomp-run"));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** What the kernel did with each case under `program` (undefined: no filter). */
async function kernelRun(program: Uint8Array | undefined, cases: string[]): Promise<Map<string, string>> {
  let file = "-";
  if (program) {
    file = join(work, `prog-${Math.random().toString(36).slice(2)}.bin`);
    writeFileSync(file, program);
  }
  const r = await runCommand([loader, file, ...cases], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`seccomp-run: exit ${r.code}: ${r.stderr}`);
  const out = new Map<string, string>();
  for (const line of r.stdout.trim().split("\n")) {
    const i = line.indexOf(" ");
    out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/**
 * Whether `int 0x80` reaches the kernel's system call entry here, without a filter. Where it
 * does not (a kernel without IA32 emulation, booted with ia32_emulation=0, or a VM whose IDT
 * has no 0x80 gate: seen on a PVM guest, where it is a general protection fault and SIGSEGV),
 * no seccomp filter is ever asked about i386 calls, so the kernel check of the filter's i386
 * branch cannot run; the BPF interpreter tests above still check that branch.
 */
let int80: boolean | undefined;
async function int80Reaches(): Promise<boolean> {
  if (int80 === undefined) {
    const got = (await kernelRun(undefined, ["i386:20"])).get("i386:20") ?? "";
    if (/^ret=\d+ errno=0$/.test(got)) int80 = true;
    else if (got === "signal=11") {
      int80 = false;
      console.warn("seccomp: int 0x80 faults on this kernel (SIGSEGV without a filter): the i386 case is not run");
    } else throw new Error(`int 0x80 without a filter: ${got}`);
  }
  return int80;
}

/** What a seccomp return value looks like from the calling process. */
function observed(action: number): RegExp {
  const kind = action & 0xffff0000;
  if (action === RET.KILL_PROCESS || action === RET.KILL_THREAD || kind === RET.TRAP) return /^signal=31$/;
  if (kind === RET.ERRNO) return new RegExp(`^ret=-1 errno=${action & 0xffff}$`);
  if (kind === RET.TRACE) return /^ret=-1 errno=38$/; // no tracer: ENOSYS
  return /^ret=\d+ errno=0$/;
}

describe.skipIf(skipKernel !== null)(`the kernel runs compiled filters as predicted (${skipKernel ?? "gcc, seccomp"})`, () => {
  test("every operator, on 64-bit arguments of getppid, in child processes", async () => {
    const x = expandProfile(parseProfile(JSON.stringify(opsProfile("getppid"))), arch!, [], KERNEL);
    const program = compileFilter(x);
    const t = syscallTable(arch!);
    const pool = [0n, 1n, 3n, 5n, 7n, 8n, 0xffffffffn, 0x100000000n, 0x100000005n, 0x200000000n, 0x120000000034n, 0xff12000000ff34n];
    const cases = new Map<string, number>();
    for (let i = 0; i < 160; i++) {
      const args = Array.from({ length: 6 }, (_, j) => pool[(i * 5 + j * 11 + ((i * (j + 1)) % 7)) % pool.length]!);
      const key = [t.getppid!, ...args].map((a) => `0x${a.toString(16)}`).join(",");
      cases.set(key, runFilter(program, { nr: t.getppid!, arch: AUDIT_ARCH[arch!], args }));
      expect(cases.get(key)).toBe(modelAction(x, t.getppid!, args, ONLY_32));
    }
    for (const name of ["getpid", "getuid", "getgid", "getegid", "getppid"]) {
      cases.set(String(t[name]!), runFilter(program, { nr: t[name]!, arch: AUDIT_ARCH[arch!], args: [] }));
    }
    cases.set("1000", RET.ERRNO | 38); // past the largest named call: runc's ENOSYS stub
    const seen = new Set([...cases.values()].map((a) => (a & 0xffff0000) >>> 0));
    expect(seen).toEqual(new Set([RET.ALLOW, RET.ERRNO, RET.KILL_PROCESS, RET.TRAP, RET.TRACE]));
    const got = await kernelRun(program, [...cases.keys()]);
    const mismatches = [...cases]
      .filter(([c, action]) => !observed(action).test(got.get(c) ?? ""))
      .map(([c, a]) => `${c}: got ${got.get(c)}, want ${observed(a)}`);
    expect(mismatches).toEqual([]);
  });

  /** The built-in profile with errno 200 for refusals, so a refusal is told from the kernel's own EPERM. */
  const marked = () => parseProfile(JSON.stringify({ ...defaultProfile, defaultErrnoRet: 200 }));

  test("the built-in profile with ucr's default capabilities: what is refused, allowed, ENOSYS or killed", async () => {
    const x = expandProfile(marked(), arch!, DEFAULTS, KERNEL);
    const program = compileFilter(x);
    const t = syscallTable(arch!);
    const nr = (name: string) => t[name]!;
    // [case, expected]: calls made with arguments the kernel rejects if they get through.
    const expectations: Array<[string, RegExp]> = [
      [`${nr("getpid")}`, /^ret=\d+ errno=0$/],
      [`${nr("keyctl")},0,0xffffffffffffffff`, /errno=200$/],
      [`${nr("add_key")},0,0,0,0,0`, /errno=200$/],
      [`${nr("unshare")},0x10000000`, /errno=200$/], // CLONE_NEWUSER
      [`${nr("mount")},0,0,0,0,0`, /errno=200$/],
      [`${nr("reboot")},0,0,0,0`, /errno=200$/],
      [`${nr("init_module")},0,0,0`, /errno=200$/],
      [`${nr("settimeofday")},0,0`, /errno=200$/],
      [`${nr("bpf")},0,0,0`, /errno=200$/],
      [`${nr("io_uring_setup")},0,0`, /errno=200$/],
      [`${nr("userfaultfd")},0`, /errno=200$/],
      [`${nr("pivot_root")},0,0`, /errno=200$/],
      [`${nr("clone")},0x10000200,0,0,0,0`, /errno=200$/], // CLONE_NEWUSER|CLONE_FS
      [`${nr("clone")},0x800,0,0,0,0`, /errno=22$/], // CLONE_SIGHAND alone: allowed, and the kernel says EINVAL
      [`${nr("clone3")},0,0`, /errno=38$/],
      [`${nr("socket")},38,5,0`, /errno=200$/], // AF_ALG
      [`${nr("socket")},40,1,0`, /errno=200$/], // AF_VSOCK
      [`${nr("socket")},0x100000026,5,0`, /errno=200$/], // AF_ALG with the high half set: still AF_ALG
      [`${nr("socket")},0x100000002,2,0`, /^ret=\d+ errno=0$/], // AF_INET with the high half set
      [`${nr("personality")},0xffffffff`, /^ret=\d+ errno=0$/],
      [`${nr("personality")},0x400000`, /errno=200$/], // READ_IMPLIES_EXEC
      [`${nr("ptrace")},0,0,0,0`, /^ret=0 errno=0$/], // PTRACE_TRACEME
      [`${nr("chroot")},0`, /errno=14$/], // SYS_CHROOT is a default: EFAULT from the kernel
      ["1000", /errno=38$/],
      [`${nr("open_tree_attr")},0,0,0,0,0`, /errno=38$/], // newer than the profile: ENOSYS
      ...(arch === "x86_64"
        ? ([
            // (Not uprobe, though unnamed: the kernel lets it through without asking seccomp
            // filters, as it does uretprobe; measured here, ENXIO under a filter refusing it.)
            [`${nr("vserver")}`, /errno=200$/], // unnamed (never implemented), below the largest named: refused
            [`x32:${nr("getpid")}`, /^signal=31$/],
            // getpid through int 0x80, where this kernel takes it (see int80Reaches)
            ...((await int80Reaches()) ? [["i386:20", /^signal=31$/]] : []),
          ] as Array<[string, RegExp]>)
        : []),
    ];
    const got = await kernelRun(
      program,
      expectations.map(([c]) => c),
    );
    const mismatches = expectations
      .filter(([c, want]) => !want.test(got.get(c) ?? ""))
      .map(([c, want]) => `${c}: got ${got.get(c)}, want ${want}`);
    expect(mismatches).toEqual([]);
  });

  test("with CAP_SYS_ADMIN in the bounding set the administrative calls reach the kernel", async () => {
    const x = expandProfile(
      marked(),
      arch!,
      [...DEFAULTS, ...capabilitySet(["SYS_ADMIN", "SYS_BOOT", "SYS_TIME"])].sort((a, b) => a - b),
      KERNEL,
    );
    const program = compileFilter(x);
    const t = syscallTable(arch!);
    const cases = [
      `${t.mount},0,0,0,0,0`,
      `${t.reboot},0,0,0,0`,
      `${t.clone3},0,0`,
      `${t.unshare},0x10000000`,
      `${t.keyctl},0,0xffffffffffffffff`,
    ];
    const got = await kernelRun(program, cases);
    expect(got.get(cases[0]!)).toMatch(/errno=(14|2)$/); // EFAULT/ENOENT: the kernel looked at it
    expect(got.get(cases[1]!)).toMatch(/errno=22$/); // bad magic
    expect(got.get(cases[2]!)).toMatch(/errno=(22|14)$/);
    expect(got.get(cases[3]!)).toBe("ret=0 errno=0"); // a user namespace, in a child that exits
    expect(got.get(cases[4]!)).toMatch(/errno=200$/); // keyrings stay refused whatever the capabilities
  });

  test("without a filter the same calls behave differently (the baseline the checks above rely on)", async () => {
    const t = syscallTable(arch!);
    const got = await kernelRun(undefined, [`${t.reboot},0,0,0,0`, `${t.clone3},0,0`, "1000"]);
    expect(got.get(`${t.reboot},0,0,0,0`)).toMatch(/errno=22$/);
    expect(got.get(`${t.clone3},0,0`)).toMatch(/errno=(22|14)$/);
    expect(got.get("1000")).toMatch(/errno=38$/);
  });
});
