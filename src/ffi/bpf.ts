// bpf(2) through bun:ffi, for the one program kind ucr loads: a cgroup v2 device filter
// (BPF_PROG_TYPE_CGROUP_DEVICE), loaded from instructions our own code assembled and attached
// to a cgroup directory. Errors are SysError naming the command, with the verifier's log.
import { dlopen, ptr, read } from "bun:ffi";
import { SysError } from "./errno.ts";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
  syscall: { args: ["i64", "i64", "ptr", "u64"], returns: "i64" },
});

const SYS_BPF = process.arch === "arm64" ? 280 : 321;
const BPF_PROG_LOAD = 5;
const BPF_PROG_ATTACH = 8;
const BPF_PROG_QUERY = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
const BPF_CGROUP_DEVICE = 6;
/** union bpf_attr is larger than every command's part of it; the kernel wants the rest zero. */
const ATTR_BYTES = 128;

function bpf(cmd: number, attr: Uint8Array, what: string): number {
  const rc = Number(libc.symbols.syscall(SYS_BPF, cmd, attr, attr.byteLength));
  if (rc === -1) {
    const e = read.i32(libc.symbols.__errno_location()!);
    throw new SysError("bpf", e, libc.symbols.strerror(e)?.toString() ?? "unknown error", what);
  }
  return rc;
}

/**
 * Loads `insns` (struct bpf_insn array) as a cgroup device program; returns its descriptor.
 * A program the verifier refuses fails with its log in the message.
 */
export function loadDeviceProgram(insns: Uint8Array, name: string): number {
  const attr = new Uint8Array(ATTR_BYTES);
  const view = new DataView(attr.buffer);
  const license = Buffer.from("Apache-2.0\0");
  const log = new Uint8Array(16384);
  view.setUint32(0, BPF_PROG_TYPE_CGROUP_DEVICE, true); // prog_type
  view.setUint32(4, insns.byteLength / 8, true); // insn_cnt
  view.setBigUint64(8, BigInt(ptr(insns)), true); // insns
  view.setBigUint64(16, BigInt(ptr(license)), true); // license
  view.setUint32(24, 1, true); // log_level
  view.setUint32(28, log.byteLength, true); // log_size
  view.setBigUint64(32, BigInt(ptr(log)), true); // log_buf
  attr.set(Buffer.from(name.slice(0, 15)), 48); // prog_name[16]
  view.setUint32(68, BPF_CGROUP_DEVICE, true); // expected_attach_type
  try {
    return bpf(BPF_PROG_LOAD, attr, `BPF_PROG_LOAD ${name}`);
  } catch (err) {
    const end = log.indexOf(0);
    const text = Buffer.from(log.subarray(0, end < 0 ? log.length : end))
      .toString("utf8")
      .trim();
    if (text !== "") (err as Error).message += `; verifier: ${text.split("\n").slice(-3).join(" | ")}`;
    throw err;
  } finally {
    void [insns, license, log];
  }
}

function attachAttr(cgroupFd: number, progFd: number, flags: number): Uint8Array {
  const attr = new Uint8Array(ATTR_BYTES);
  const view = new DataView(attr.buffer);
  view.setUint32(0, cgroupFd, true); // target_fd
  view.setUint32(4, progFd, true); // attach_bpf_fd
  view.setUint32(8, BPF_CGROUP_DEVICE, true); // attach_type
  view.setUint32(12, flags, true); // attach_flags
  return attr;
}

/** Attaches device program `progFd` to the cgroup directory `cgroupFd` (opened O_RDONLY|O_DIRECTORY). */
export function attachDeviceProgram(cgroupFd: number, progFd: number, flags: number, what: string): void {
  bpf(BPF_PROG_ATTACH, attachAttr(cgroupFd, progFd, flags), `BPF_PROG_ATTACH to ${what}`);
}

/** The ids of the device programs attached to the cgroup itself (not inherited). */
export function attachedDevicePrograms(cgroupFd: number, what: string): number[] {
  const ids = new Uint32Array(64);
  const attr = new Uint8Array(ATTR_BYTES);
  const view = new DataView(attr.buffer);
  view.setUint32(0, cgroupFd, true); // target_fd
  view.setUint32(4, BPF_CGROUP_DEVICE, true); // attach_type
  view.setBigUint64(16, BigInt(ptr(ids)), true); // prog_ids
  view.setUint32(24, ids.length, true); // prog_cnt
  bpf(BPF_PROG_QUERY, attr, `BPF_PROG_QUERY of ${what}`);
  const count = view.getUint32(24, true);
  void ids;
  return [...ids.subarray(0, Math.min(count, ids.length))];
}
