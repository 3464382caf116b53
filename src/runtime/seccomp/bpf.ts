// Compiles an expanded seccomp profile into a classic BPF program the kernel runs on every
// system call: architecture check (x32 and foreign ABIs killed), runc's ENOSYS stub above the
// largest named call, a binary search on the call number, then argument checks.
import { RET, type Arch, type Condition, type Expanded, type Rule } from "./profile.ts";
import { errorOfKind } from "../../errors.ts";

// struct seccomp_data offsets (linux/seccomp.h): nr, arch, then six 64-bit args.
const OFF_NR = 0;
const OFF_ARCH = 4;
const argOffset = (index: number, half: "lo" | "hi") => 16 + 8 * index + (half === "hi" ? 4 : 0); // little-endian

export const AUDIT_ARCH: Record<Arch, number> = { x86_64: 0xc000003e, aarch64: 0xc00000b7 };
const X32_SYSCALL_BIT = 0x40000000;
const ENOSYS = 38;
const MAX_INSNS = 4096; // BPF_MAXINSNS

// Opcodes (linux/bpf_common.h).
const LD_W_ABS = 0x20;
const JEQ = 0x15;
const JGT = 0x25;
const JGE = 0x35;
const JA = 0x05;
const AND_K = 0x54;
const RET_K = 0x06;

/**
 * Arguments the kernel declares as 32-bit (int): it reads only their low half, so a filter
 * that compared all 64 bits could be passed by setting the high half (socket(0x1_00000026)
 * is AF_ALG to the kernel but "above 40" to a 64-bit compare). Only the low half is compared.
 */
const ARGS_32BIT: Record<string, readonly number[]> = { socket: [0, 1, 2], personality: [0] };

type Label = number;
type Item =
  | { kind: "label"; label: Label }
  | { kind: "stmt"; code: number; k: number }
  | { kind: "jump"; code: number; k: number; jt: Label; jf: Label }
  | { kind: "ja"; to: Label };

export class CompileError extends errorOfKind("invalid") {}

class Assembler {
  readonly items: Item[] = [];
  private next = 0;

  label(): Label {
    return this.next++;
  }
  place(label: Label): void {
    this.items.push({ kind: "label", label });
  }
  load(offset: number): void {
    this.items.push({ kind: "stmt", code: LD_W_ABS, k: offset });
  }
  and(k: number): void {
    this.items.push({ kind: "stmt", code: AND_K, k: k >>> 0 });
  }
  ret(k: number): void {
    this.items.push({ kind: "stmt", code: RET_K, k: k >>> 0 });
  }
  jump(code: number, k: number, jt: Label, jf: Label): void {
    this.items.push({ kind: "jump", code, k: k >>> 0, jt, jf });
  }
  ja(to: Label): void {
    this.items.push({ kind: "ja", to });
  }

  /**
   * Lays the program out. A conditional jump reaches at most 255 instructions ahead; one
   * that would reach further becomes `jcond 0,1; ja T; ja F` (JA takes 32 bits). Growing one
   * jump can push others out of reach, so this repeats until nothing changes.
   */
  assemble(): Uint8Array {
    const far = new Set<Item>();
    for (;;) {
      const at = new Map<Label, number>();
      const pos = new Map<Item, number>();
      let pc = 0;
      for (const it of this.items) {
        if (it.kind === "label") at.set(it.label, pc);
        else {
          pos.set(it, pc);
          pc += far.has(it) ? 3 : 1;
        }
      }
      let grew = false;
      for (const it of this.items) {
        if (it.kind !== "jump" || far.has(it)) continue;
        const from = pos.get(it)! + 1;
        if (at.get(it.jt)! - from > 255 || at.get(it.jf)! - from > 255) {
          far.add(it);
          grew = true;
        }
      }
      if (grew) continue;
      if (pc > MAX_INSNS) throw new CompileError(`the filter needs ${pc} instructions; the kernel takes at most ${MAX_INSNS}`);
      const out = new Uint8Array(pc * 8);
      const view = new DataView(out.buffer);
      const put = (i: number, code: number, jt: number, jf: number, k: number) => {
        if (jt < 0 || jf < 0 || jt > 255 || jf > 255 || k < 0) throw new CompileError(`internal: bad jump at instruction ${i}`);
        view.setUint16(i * 8, code, true);
        view.setUint8(i * 8 + 2, jt);
        view.setUint8(i * 8 + 3, jf);
        view.setUint32(i * 8 + 4, k >>> 0, true);
      };
      for (const it of this.items) {
        if (it.kind === "label") continue;
        const p = pos.get(it)!;
        if (it.kind === "stmt") put(p, it.code, 0, 0, it.k);
        else if (it.kind === "ja") put(p, JA, 0, 0, at.get(it.to)! - (p + 1));
        else if (far.has(it)) {
          put(p, it.code, 0, 1, it.k);
          put(p + 1, JA, 0, 0, at.get(it.jt)! - (p + 2));
          put(p + 2, JA, 0, 0, at.get(it.jf)! - (p + 3));
        } else put(p, it.code, at.get(it.jt)! - (p + 1), at.get(it.jf)! - (p + 1), it.k);
      }
      return out;
    }
  }
}

/** What one system call number leads to: a return value, or argument checks then a fallback. */
interface Plan {
  fallback: number;
  checks: Rule[];
}

function plan(rules: Rule[], defaultAction: number): Plan {
  const unconditional = [...new Set(rules.filter((r) => r.conditions.length === 0).map((r) => r.action))];
  if (unconditional.length > 1) {
    const name = rules[0]!.name;
    throw new CompileError(`system call '${name}' has rules with different actions and no arguments to tell them apart`);
  }
  const fallback = unconditional[0] ?? defaultAction;
  // Rules with conditions are checked first, in profile order; the first that holds decides.
  const checks = rules.filter((r) => r.conditions.length > 0);
  // Trailing ones that lead where the fallback does change nothing.
  while (checks.length > 0 && checks[checks.length - 1]!.action === fallback) checks.pop();
  return { fallback, checks };
}

/** Jumps to `match` if the condition holds for the call's argument, else to `fail`. */
function condition(asm: Assembler, c: Condition, only32: boolean, match: Label, fail: Label): void {
  const lo = Number(c.value & 0xffffffffn);
  const hi = Number((c.value >> 32n) & 0xffffffffn);
  const [yes, no] = c.op === "SCMP_CMP_NE" || c.op === "SCMP_CMP_LT" || c.op === "SCMP_CMP_LE" ? [fail, match] : [match, fail];
  switch (c.op) {
    case "SCMP_CMP_EQ":
    case "SCMP_CMP_NE": {
      if (!only32) {
        const next = asm.label();
        asm.load(argOffset(c.index, "hi"));
        asm.jump(JEQ, hi, next, no);
        asm.place(next);
      }
      asm.load(argOffset(c.index, "lo"));
      asm.jump(JEQ, lo, yes, no);
      return;
    }
    case "SCMP_CMP_MASKED_EQ": {
      const want = c.valueTwo;
      if (!only32) {
        const next = asm.label();
        asm.load(argOffset(c.index, "hi"));
        asm.and(hi);
        asm.jump(JEQ, Number((want >> 32n) & 0xffffffffn), next, fail);
        asm.place(next);
      }
      asm.load(argOffset(c.index, "lo"));
      asm.and(lo);
      asm.jump(JEQ, Number(want & 0xffffffffn), match, fail);
      return;
    }
    case "SCMP_CMP_GT":
    case "SCMP_CMP_LE":
    case "SCMP_CMP_GE":
    case "SCMP_CMP_LT": {
      // GT and GE are computed; LE and LT are their negations (yes/no swapped).
      const strict = c.op === "SCMP_CMP_GT" || c.op === "SCMP_CMP_LE";
      if (!only32) {
        const equalHigh = asm.label();
        const notAbove = asm.label();
        asm.load(argOffset(c.index, "hi"));
        asm.jump(JGT, hi, yes, notAbove);
        asm.place(notAbove);
        asm.jump(JEQ, hi, equalHigh, no);
        asm.place(equalHigh);
      }
      asm.load(argOffset(c.index, "lo"));
      asm.jump(strict ? JGT : JGE, lo, yes, no);
      return;
    }
  }
}

/** The filter for `x` as the bytes of a `struct sock_filter` array. */
export function compileFilter(x: Expanded): Uint8Array {
  const asm = new Assembler();
  const rets = new Map<number, Label>();
  const retLabel = (action: number) => {
    let l = rets.get(action >>> 0);
    if (l === undefined) rets.set(action >>> 0, (l = asm.label()));
    return l;
  };
  const kill = retLabel(RET.KILL_PROCESS);
  const enosys = retLabel(RET.ERRNO | ENOSYS);

  // Which rules each number has.
  const byNr = new Map<number, Rule[]>();
  for (const r of x.rules) byNr.set(r.nr, [...(byNr.get(r.nr) ?? []), r]);
  const blocks: Array<{ label: Label; plan: Plan }> = [];
  const targetOf = new Map<number, Label>();
  for (const [nr, rules] of byNr) {
    const p = plan(rules, x.defaultAction);
    if (p.checks.length === 0) targetOf.set(nr, retLabel(p.fallback));
    else {
      const label = asm.label();
      blocks.push({ label, plan: p });
      targetOf.set(nr, label);
    }
  }

  // Ranges of numbers with the same target, covering every number the tree sees. runc's stub:
  // numbers past the largest named one get ENOSYS (a call newer than the profile fails the way
  // an old kernel's would, so libc falls back), unless the default lets calls through anyway.
  const permissive = [RET.ALLOW, RET.LOG].includes(x.defaultAction as never) || (x.defaultAction & 0xffff0000) === RET.TRACE;
  const top = x.arch === "x86_64" ? X32_SYSCALL_BIT - 1 : 0xffffffff;
  const ranges: Array<{ lo: number; target: Label }> = [];
  const push = (lo: number, target: Label) => {
    if (ranges.length === 0 || ranges[ranges.length - 1]!.target !== target) ranges.push({ lo, target });
  };
  const defaultLabel = retLabel(x.defaultAction);
  for (let nr = 0; nr <= x.maxNamed; nr++) push(nr, targetOf.get(nr) ?? defaultLabel);
  if (x.maxNamed < top) push(x.maxNamed + 1, permissive || x.maxNamed < 0 ? defaultLabel : enosys);

  // Header: the architecture, then the number.
  const body = asm.label();
  asm.load(OFF_ARCH);
  asm.jump(JEQ, AUDIT_ARCH[x.arch], body, kill);
  asm.place(body);
  asm.load(OFF_NR);
  let x32: Label | undefined;
  if (x.arch === "x86_64") {
    // x32 calls carry AUDIT_ARCH_X86_64 too, with bit 30 set in the number.
    x32 = asm.label();
    const native = asm.label();
    asm.jump(JGE, X32_SYSCALL_BIT, x32, native);
    asm.place(native);
  }

  // Binary search over the ranges; each node is one `jge`, children placed after it.
  const tree = (i: number, j: number, at: Label | undefined): void => {
    if (i === j) {
      if (at !== undefined) throw new CompileError("internal: a leaf has no code of its own");
      return;
    }
    const m = (i + j + 1) >> 1;
    const left = m - 1 === i ? ranges[i]!.target : asm.label();
    const right = j === m ? ranges[m]!.target : asm.label();
    if (at !== undefined) asm.place(at);
    asm.jump(JGE, ranges[m]!.lo, right, left);
    if (m - 1 !== i) tree(i, m - 1, left);
    if (j !== m) tree(m, j, right);
  };
  if (ranges.length === 1) asm.ja(ranges[0]!.target);
  else tree(0, ranges.length - 1, undefined);

  if (x32 !== undefined) {
    // nr -1 is what a tracer sets to skip a call: the kernel answers ENOSYS; anything else is x32.
    asm.place(x32);
    asm.jump(JEQ, 0xffffffff, enosys, kill);
  }

  for (const { label, plan: p } of blocks) {
    asm.place(label);
    for (const rule of p.checks) {
      const nextRule = asm.label();
      const only32 = new Set(ARGS_32BIT[rule.name] ?? []);
      rule.conditions.forEach((c, i) => {
        const last = i === rule.conditions.length - 1;
        const match = last ? retLabel(rule.action) : asm.label();
        condition(asm, c, only32.has(c.index), match, nextRule);
        if (!last) asm.place(match);
      });
      asm.place(nextRule);
    }
    asm.ja(retLabel(p.fallback));
  }

  for (const [action, label] of rets) {
    asm.place(label);
    asm.ret(action);
  }
  return asm.assemble();
}
