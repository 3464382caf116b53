// A classic BPF interpreter for seccomp programs (the subset the kernel's seccomp accepts), and
// a direct model of what a profile means for one call, so tests can check compiled filters for
// architectures this machine cannot load them on, over every system call number.
import { RET, type Expanded } from "../../src/runtime/seccomp/profile.ts";

export interface SeccompData {
  nr: number;
  arch: number;
  args?: bigint[];
}

/** Runs `program` (struct sock_filter bytes) on `data` and returns the seccomp return value. */
export function runFilter(program: Uint8Array, data: SeccompData): number {
  const view = new DataView(program.buffer, program.byteOffset, program.byteLength);
  const n = program.byteLength / 8;
  const mem = new DataView(new ArrayBuffer(64));
  mem.setInt32(0, data.nr, true);
  mem.setUint32(4, data.arch, true);
  for (const [i, a] of (data.args ?? []).entries()) mem.setBigUint64(16 + 8 * i, BigInt.asUintN(64, a), true);
  let A = 0;
  let pc = 0;
  for (let steps = 0; steps < 100_000; steps++) {
    if (pc >= n) throw new Error(`fell off the end at ${pc}`);
    const code = view.getUint16(pc * 8, true);
    const jt = view.getUint8(pc * 8 + 2);
    const jf = view.getUint8(pc * 8 + 3);
    const k = view.getUint32(pc * 8 + 4, true);
    pc++;
    switch (code) {
      case 0x20: // ld [k]
        if (k % 4 !== 0 || k > 60) throw new Error(`bad load offset ${k}`);
        A = mem.getUint32(k, true);
        break;
      case 0x54: // and #k
        A = (A & k) >>> 0;
        break;
      case 0x05: // ja
        pc += k;
        break;
      case 0x15:
        pc += A === k ? jt : jf;
        break;
      case 0x25:
        pc += A > k ? jt : jf;
        break;
      case 0x35:
        pc += A >= k ? jt : jf;
        break;
      case 0x45:
        pc += (A & k) !== 0 ? jt : jf;
        break;
      case 0x06:
        return k >>> 0;
      default:
        throw new Error(`opcode 0x${code.toString(16)} at ${pc - 1}`);
    }
  }
  throw new Error("did not return");
}

function holds(op: string, arg: bigint, value: bigint, valueTwo: bigint): boolean {
  switch (op) {
    case "SCMP_CMP_EQ":
      return arg === value;
    case "SCMP_CMP_NE":
      return arg !== value;
    case "SCMP_CMP_LT":
      return arg < value;
    case "SCMP_CMP_LE":
      return arg <= value;
    case "SCMP_CMP_GT":
      return arg > value;
    case "SCMP_CMP_GE":
      return arg >= value;
    case "SCMP_CMP_MASKED_EQ":
      return (arg & value) === valueTwo;
  }
  throw new Error(op);
}

/**
 * What an expanded profile says for one call, straight from its rules: the first rule with
 * conditions that all hold, else the call's unconditional rule, else (ENOSYS past the largest
 * named number unless the default lets calls through) the default. `only32` lists the
 * arguments compared on their low half.
 */
export function modelAction(x: Expanded, nr: number, args: bigint[], only32: Record<string, readonly number[]> = {}): number {
  const rules = x.rules.filter((r) => r.nr === nr);
  const word = (name: string, i: number) => {
    const a = BigInt.asUintN(64, args[i] ?? 0n);
    return (only32[name] ?? []).includes(i) ? a & 0xffffffffn : a;
  };
  const value = (name: string, i: number, v: bigint) => ((only32[name] ?? []).includes(i) ? v & 0xffffffffn : v);
  for (const r of rules) {
    if (r.conditions.length === 0) continue;
    if (
      r.conditions.every((c) => holds(c.op, word(r.name, c.index), value(r.name, c.index, c.value), value(r.name, c.index, c.valueTwo)))
    ) {
      return r.action >>> 0;
    }
  }
  const plain = rules.find((r) => r.conditions.length === 0);
  if (plain) return plain.action >>> 0;
  const permissive = x.defaultAction === RET.ALLOW || x.defaultAction === RET.LOG || (x.defaultAction & 0xffff0000) === RET.TRACE;
  if (nr > x.maxNamed && !permissive && x.maxNamed >= 0) return (RET.ERRNO | 38) >>> 0;
  return x.defaultAction >>> 0;
}
