// Which devices a container may open (cgroups/devices) and which nodes it finds in /dev
// (linux/devices): runc's default allowlist plus Mesos' --allowed_devices, enforced for all
// containers at once through one cgroup under --cgroups_root: on cgroup v1 its
// devices.deny/devices.allow, on cgroup v2 a BPF_PROG_TYPE_CGROUP_DEVICE program assembled
// here (no libbpf, no compiler) and attached to that cgroup, which its children inherit.
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { attachDeviceProgram, loadDeviceProgram } from "../ffi/bpf.ts";

export interface DeviceRule {
  type: "a" | "b" | "c";
  /** undefined: any (`*`). */
  major?: number;
  minor?: number;
  access: { read: boolean; write: boolean; mknod: boolean };
}

/** --allowed_devices as its flag reads it (Mesos' DeviceWhitelist). */
export interface DeviceWhitelist {
  allowed_devices: Array<{ device: { path?: string }; access: { read?: boolean; write?: boolean; mknod?: boolean } }>;
}

/** A node linux/devices makes in a container's /dev (path relative to /dev). */
export interface DeviceNode {
  path: string;
  type: "b" | "c";
  major: number;
  minor: number;
  /** Permission bits: 0600, plus group and other read/write as the access allows (Mesos). */
  mode: number;
}

export class DeviceSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeviceSetupError";
  }
}

const RWM = { read: true, write: true, mknod: true };

/**
 * runc's default (libcontainer/specconv): any device node may be made (opening it is another
 * matter), and the ones every container has may be used: null, zero, full, random, urandom,
 * tty, the pts ptys and ptmx. Mesos' list also has /dev/console, /dev/tty0, /dev/tty1 (the
 * host's consoles, which a container on the host's filesystem would reach) and /dev/net/tun
 * (which runc dropped in 1.2): --allowed_devices adds them back.
 */
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = [
  { type: "c", access: { read: false, write: false, mknod: true } },
  { type: "b", access: { read: false, write: false, mknod: true } },
  { type: "c", major: 1, minor: 3, access: RWM },
  { type: "c", major: 1, minor: 5, access: RWM },
  { type: "c", major: 1, minor: 7, access: RWM },
  { type: "c", major: 1, minor: 8, access: RWM },
  { type: "c", major: 1, minor: 9, access: RWM },
  { type: "c", major: 5, minor: 0, access: RWM },
  { type: "c", major: 5, minor: 2, access: RWM },
  { type: "c", major: 136, access: RWM },
];

/** The kernel's device number split as glibc's major()/minor() do. */
function majorMinor(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  return {
    major: Number(((dev >> 32n) & 0xfffff000n) | ((dev >> 8n) & 0xfffn)),
    minor: Number(((dev >> 12n) & 0xffffff00n) | (dev & 0xffn)),
  };
}

/**
 * --allowed_devices as Mesos reads it (cgroups/devices and linux/devices): each entry needs a
 * path, some access, and a device node there; its type and number come from stat(2).
 */
export function allowedDevices(flag: DeviceWhitelist | undefined): { rules: DeviceRule[]; nodes: DeviceNode[] } {
  const rules: DeviceRule[] = [];
  const nodes: DeviceNode[] = [];
  for (const entry of flag?.allowed_devices ?? []) {
    const path = entry.device.path;
    if (path === undefined) throw new DeviceSetupError("Whitelisted device has no device path provided");
    const access = { read: entry.access.read ?? false, write: entry.access.write ?? false, mknod: entry.access.mknod ?? false };
    if (!access.read && !access.write && !access.mknod) {
      throw new DeviceSetupError(`Could not whitelist device '${path}' without any access privileges`);
    }
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      throw new DeviceSetupError(
        `Failed to obtain device ID for '${path}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    const type = st.isBlockDevice() ? "b" : st.isCharacterDevice() ? "c" : undefined;
    if (!type) throw new DeviceSetupError(`Failed to determine device type for '${path}': it is not a block or character device`);
    const { major, minor } = majorMinor(st.rdev);
    rules.push({ type, major, minor, access });
    if (!path.startsWith("/dev/") || path.split("/").includes("..")) {
      throw new DeviceSetupError(
        `'${path}' is not under /dev: linux/devices makes the allowed devices in a container's /dev at the same path`,
      );
    }
    nodes.push({
      path: path.slice("/dev/".length),
      type,
      major,
      minor,
      mode: 0o600 | (access.read ? 0o044 : 0) | (access.write ? 0o022 : 0),
    });
  }
  return { rules, nodes };
}

/** "c 1:3 rwm" (the devices.allow form). */
export function ruleText(r: DeviceRule): string {
  const access = `${r.access.read ? "r" : ""}${r.access.write ? "w" : ""}${r.access.mknod ? "m" : ""}`;
  return `${r.type} ${r.major ?? "*"}:${r.minor ?? "*"} ${access}`;
}

/**
 * cgroup v1: `dir` (made if missing) allows exactly `rules`. A new cgroup starts with its
 * parent's list (normally `a *:* rwm`) and denying one entry does not punch a hole in a
 * wildcard, so everything is denied first, then each rule allowed; devices.list is read back.
 */
export function applyDeviceRulesV1(dir: string, rules: readonly DeviceRule[]): void {
  mkdirSync(dir, { recursive: true });
  const write = (file: string, text: string) => {
    try {
      writeFileSync(join(dir, file), text);
    } catch (err) {
      throw new DeviceSetupError(
        `cannot write '${text}' to ${join(dir, file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  };
  write("devices.deny", "a");
  for (const r of rules) write("devices.allow", ruleText(r));
  const list = readFileSync(join(dir, "devices.list"), "utf8");
  if (/^a /m.test(list))
    throw new DeviceSetupError(`${join(dir, "devices.list")} still allows every device after 'a' was denied: ${list.trim()}`);
}

// --- cgroup v2: an eBPF program -------------------------------------------------------------

// Opcodes (linux/bpf_common.h, linux/bpf.h): class | op | source.
const LDX_MEM_W = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const ALU64_MOV_X = 0xbf; // dst = src
const ALU64_MOV_K = 0xb7; // dst = imm
const ALU64_AND_K = 0x57; // dst &= imm
const ALU64_RSH_K = 0x77; // dst >>= imm
const JMP_JNE_K = 0x55; // if dst != imm goto pc + 1 + off
const JMP_EXIT = 0x95;
// bpf_cgroup_dev_ctx.access_type = (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*.
const DEV_BLOCK = 1;
const DEV_CHAR = 2;
const ACC_MKNOD = 1;
const ACC_READ = 2;
const ACC_WRITE = 4;

function insn(code: number, dst: number, src: number, off: number, imm: number): number[] {
  return [code, dst, src, off, imm];
}

/**
 * The device filter for `rules`: 1 (allow) if some rule matches the device's type, major and
 * minor and allows every access asked for, else 0. Registers: r2 access, r3 type, r4 major,
 * r5 minor (from the context in r1), r6 scratch. One block per rule, each jumping past itself
 * when it does not match, as runc's devicefilter does.
 */
export function deviceProgram(rules: readonly DeviceRule[]): Uint8Array {
  const code: number[][] = [
    insn(LDX_MEM_W, 2, 1, 0, 0),
    insn(ALU64_MOV_X, 3, 2, 0, 0),
    insn(ALU64_AND_K, 3, 0, 0, 0xffff),
    insn(ALU64_RSH_K, 2, 0, 0, 16),
    insn(LDX_MEM_W, 4, 1, 4, 0),
    insn(LDX_MEM_W, 5, 1, 8, 0),
  ];
  for (const r of rules) {
    const block: number[][] = [];
    // Conditional jumps to the end of this block (the next rule), their offsets set below.
    const skips: number[] = [];
    const unless = (...check: number[][]) => {
      block.push(...check);
      skips.push(block.length - 1);
    };
    if (r.type !== "a") unless(insn(JMP_JNE_K, 3, 0, 0, r.type === "b" ? DEV_BLOCK : DEV_CHAR));
    const allowed = (r.access.mknod ? ACC_MKNOD : 0) | (r.access.read ? ACC_READ : 0) | (r.access.write ? ACC_WRITE : 0);
    // Every access asked for must be allowed: nothing left once the allowed bits are cleared.
    if (allowed !== 7) unless(insn(ALU64_MOV_X, 6, 2, 0, 0), insn(ALU64_AND_K, 6, 0, 0, ~allowed & 7), insn(JMP_JNE_K, 6, 0, 0, 0));
    if (r.major !== undefined) unless(insn(JMP_JNE_K, 4, 0, 0, r.major));
    if (r.minor !== undefined) unless(insn(JMP_JNE_K, 5, 0, 0, r.minor));
    block.push(insn(ALU64_MOV_K, 0, 0, 0, 1), insn(JMP_EXIT, 0, 0, 0, 0));
    for (const at of skips) block[at]![3] = block.length - at - 1;
    code.push(...block);
  }
  code.push(insn(ALU64_MOV_K, 0, 0, 0, 0), insn(JMP_EXIT, 0, 0, 0, 0));
  const out = new Uint8Array(code.length * 8);
  const view = new DataView(out.buffer);
  code.forEach(([op, dst, src, off, imm], i) => {
    view.setUint8(i * 8, op!);
    view.setUint8(i * 8 + 1, ((src! & 0xf) << 4) | (dst! & 0xf));
    view.setInt16(i * 8 + 2, off!, true);
    view.setInt32(i * 8 + 4, imm!, true);
  });
  return out;
}

/**
 * cgroup v2: `dir` (made if missing) and every cgroup below it allow exactly `rules`. Attached
 * without flags, so a later agent's program replaces this one instead of adding to it, and
 * nothing below can attach a program of its own that would widen it.
 */
export function applyDeviceRulesV2(dir: string, rules: readonly DeviceRule[]): void {
  mkdirSync(dir, { recursive: true });
  let prog: number | undefined;
  let cgroup: number | undefined;
  try {
    prog = loadDeviceProgram(deviceProgram(rules), "ucr_devices");
    cgroup = openSync(dir, "r");
    attachDeviceProgram(cgroup, prog, 0, dir);
  } catch (err) {
    throw new DeviceSetupError(`cannot confine devices under ${dir} with a BPF device program: ${(err as Error).message}`);
  } finally {
    // The attachment holds the program; our descriptors are not needed any more.
    if (prog !== undefined) closeSync(prog);
    if (cgroup !== undefined) closeSync(cgroup);
  }
}
