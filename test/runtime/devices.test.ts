// The devices allowlist both ways the kernel takes it: cgroup v1's devices.deny/devices.allow
// (what this hybrid host uses), and on cgroup v2 the BPF_PROG_TYPE_CGROUP_DEVICE program ucr
// assembles itself: checked instruction by instruction against an interpreter of the eBPF
// subset it uses, then loaded through bpf(2), attached to a cgroup in this host's cgroup2
// hierarchy (/sys/fs/cgroup/unified takes device programs whatever its controllers), and
// tried by a real process moved into that cgroup.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import {
  DEFAULT_DEVICE_RULES,
  applyDeviceRulesV1,
  applyDeviceRulesV2,
  deviceProgram,
  ruleText,
  type DeviceRule,
} from "../../src/runtime/devices.ts";
import { attachedDevicePrograms } from "../../src/ffi/bpf.ts";
import { runCommand } from "../helpers/command.ts";

const isRoot = process.getuid?.() === 0;
const made: string[] = [];
afterAll(() => {
  for (const d of made.reverse()) {
    try {
      rmdirSync(d);
    } catch {
      // a process still in it (its own test fails on that), or gone
    }
  }
});

/** Runs `program` (struct bpf_insn bytes) on a bpf_cgroup_dev_ctx; the subset deviceProgram emits. */
function run(program: Uint8Array, ctx: { type: number; access: number; major: number; minor: number }): number {
  const view = new DataView(program.buffer, program.byteOffset, program.byteLength);
  const mem = new DataView(new ArrayBuffer(12));
  mem.setUint32(0, (ctx.access << 16) | ctx.type, true);
  mem.setUint32(4, ctx.major, true);
  mem.setUint32(8, ctx.minor, true);
  const r = new Array<bigint>(11).fill(0n);
  const CTX = 1n << 40n; // r1: the context's "address"
  r[1] = CTX;
  const u64 = (x: bigint) => BigInt.asUintN(64, x);
  for (let pc = 0, steps = 0; steps < 10_000; steps++) {
    if (pc * 8 >= program.byteLength) throw new Error(`fell off the end at ${pc}`);
    const op = view.getUint8(pc * 8);
    const regs = view.getUint8(pc * 8 + 1);
    const dst = regs & 0xf;
    const src = regs >> 4;
    const off = view.getInt16(pc * 8 + 2, true);
    const imm = BigInt(view.getInt32(pc * 8 + 4, true));
    pc++;
    switch (op) {
      case 0x61: {
        const at = Number(r[src]! - CTX) + off;
        if (r[src]! < CTX || at < 0 || at > 8 || at % 4 !== 0) throw new Error(`bad load at ${at}`);
        r[dst] = BigInt(mem.getUint32(at, true));
        break;
      }
      case 0xbf:
        r[dst] = r[src]!;
        break;
      case 0xb7:
        r[dst] = u64(imm);
        break;
      case 0x57:
        r[dst] = r[dst]! & u64(imm);
        break;
      case 0x77:
        r[dst] = r[dst]! >> imm;
        break;
      case 0x55:
        if (r[dst]! !== u64(imm)) pc += off;
        break;
      case 0x95:
        return Number(r[0]);
      default:
        throw new Error(`opcode 0x${op.toString(16)} at ${pc - 1} is not one deviceProgram emits`);
    }
  }
  throw new Error("no exit");
}

const BLOCK = 1;
const CHAR = 2;
const MKNOD = 1;
const READ = 2;
const WRITE = 4;

/** What the rules say, directly: some rule matches the device and allows every access asked for. */
function allowedByRules(rules: readonly DeviceRule[], ctx: { type: number; access: number; major: number; minor: number }): boolean {
  return rules.some((rule) => {
    if (rule.type !== "a" && (rule.type === "b" ? BLOCK : CHAR) !== ctx.type) return false;
    if (rule.major !== undefined && rule.major !== ctx.major) return false;
    if (rule.minor !== undefined && rule.minor !== ctx.minor) return false;
    const allowed = (rule.access.mknod ? MKNOD : 0) | (rule.access.read ? READ : 0) | (rule.access.write ? WRITE : 0);
    return (ctx.access & ~allowed) === 0;
  });
}

describe("the cgroup v2 device program", () => {
  const extra: DeviceRule[] = [
    { type: "c", major: 10, minor: 229, access: { read: true, write: true, mknod: false } },
    { type: "b", major: 8, access: { read: true, write: false, mknod: false } },
    { type: "a", major: 250, minor: 1, access: { read: true, write: true, mknod: true } },
  ];

  test("answers as the rules say for every type, access and a spread of numbers (runc's defaults, and more)", () => {
    for (const rules of [DEFAULT_DEVICE_RULES, [...DEFAULT_DEVICE_RULES, ...extra], []]) {
      const program = deviceProgram(rules);
      let checked = 0;
      for (const type of [BLOCK, CHAR])
        for (let access = 1; access <= 7; access++)
          for (const major of [0, 1, 4, 5, 8, 10, 136, 250, 4095])
            for (const minor of [0, 1, 2, 3, 5, 7, 8, 9, 11, 229, 1048575]) {
              const ctx = { type, access, major, minor };
              expect({ ctx, allowed: run(program, ctx) === 1 }).toEqual({ ctx, allowed: allowedByRules(rules, ctx) });
              checked++;
            }
      expect(checked).toBe(2 * 7 * 9 * 11);
    }
  });

  test("denies by default: /dev/kmsg, a block device; allows null and mknod of anything", () => {
    const program = deviceProgram(DEFAULT_DEVICE_RULES);
    expect(run(program, { type: CHAR, access: READ | WRITE, major: 1, minor: 3 })).toBe(1);
    expect(run(program, { type: CHAR, access: READ, major: 1, minor: 11 })).toBe(0);
    expect(run(program, { type: BLOCK, access: READ, major: 254, minor: 0 })).toBe(0);
    expect(run(program, { type: BLOCK, access: MKNOD, major: 254, minor: 0 })).toBe(1);
    expect(run(program, { type: CHAR, access: MKNOD | READ, major: 1, minor: 11 })).toBe(0);
    expect(ruleText(DEFAULT_DEVICE_RULES[9]!)).toBe("c 136:* rwm");
  });
});

/** A cgroup for this test under `root` (a cgroup hierarchy), made and later removed. */
function testCgroup(root: string, name: string): string {
  const dir = join(root, "ucr-test", `devices-${process.pid}-${name}`);
  mkdirSync(dir, { recursive: true });
  made.push(dir);
  return dir;
}

/** A shell moved into `procs` (a cgroup.procs file) that then tries each device; one line per try. */
async function tryDevices(procs: string): Promise<string[]> {
  const block = readdirSync("/sys/dev/block")[0] ?? "7:0";
  const script = [
    `echo $$ > ${procs}`,
    "head -c 1 /dev/zero >/dev/null && echo zero-ok || echo zero-refused",
    "head -c 0 /dev/kmsg 2>/dev/null && echo kmsg-ok || echo kmsg-refused",
    `mknod /tmp/ucr-devtest-$$ b ${block.replace(":", " ")} && echo mknod-ok || echo mknod-refused`,
    "head -c 1 /tmp/ucr-devtest-$$ >/dev/null 2>&1 && echo block-open-ok || echo block-open-refused",
    "rm -f /tmp/ucr-devtest-$$",
  ].join("; ");
  const r = await runCommand(["sh", "-c", script]);
  return r.stdout.trim().split("\n");
}

const unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].find(
  (d) => existsSync(join(d, "cgroup.procs")) && existsSync(join(d, "cgroup.controllers")),
);
const v1devices = existsSync("/sys/fs/cgroup/devices/devices.allow") ? "/sys/fs/cgroup/devices" : undefined;
const ONLY_DEFAULTS = ["zero-ok", "kmsg-refused", "mknod-ok", "block-open-refused"];

describe.skipIf(!isRoot || !unified)(
  `cgroup v2: loaded and attached for real (${isRoot ? (unified ?? "no cgroup2 mount") : "needs root"})`,
  () => {
    test("a process in the cgroup may open only what the program allows", async () => {
      const dir = testCgroup(unified!, "v2");
      applyDeviceRulesV2(dir, DEFAULT_DEVICE_RULES);
      expect(await tryDevices(join(dir, "cgroup.procs"))).toEqual(ONLY_DEFAULTS);
      // Attached again (a restarted agent): replaced, not stacked, and still in force.
      applyDeviceRulesV2(dir, DEFAULT_DEVICE_RULES);
      const fd = openSync(dir, "r");
      try {
        expect(attachedDevicePrograms(fd, dir)).toHaveLength(1);
      } finally {
        closeSync(fd);
      }
      expect(await tryDevices(join(dir, "cgroup.procs"))).toEqual(ONLY_DEFAULTS);
    });

    test("a cgroup below inherits it, as each container's cgroup under --cgroups_root does", async () => {
      const dir = testCgroup(unified!, "v2-parent");
      applyDeviceRulesV2(dir, DEFAULT_DEVICE_RULES);
      const child = join(dir, "container");
      mkdirSync(child);
      made.push(child);
      expect(await tryDevices(join(child, "cgroup.procs"))).toEqual(ONLY_DEFAULTS);
    });
  },
);

describe.skipIf(!isRoot || !v1devices)(
  `cgroup v1: devices.deny and devices.allow (${isRoot ? (v1devices ?? "no devices hierarchy") : "needs root"})`,
  () => {
    test("everything denied, then each rule allowed; read back from devices.list; enforced", async () => {
      const dir = testCgroup(v1devices!, "v1");
      applyDeviceRulesV1(dir, DEFAULT_DEVICE_RULES);
      expect(readFileSync(join(dir, "devices.list"), "utf8").trim().split("\n")).toEqual(DEFAULT_DEVICE_RULES.map(ruleText));
      expect(await tryDevices(join(dir, "cgroup.procs"))).toEqual(ONLY_DEFAULTS);
    });
  },
);
