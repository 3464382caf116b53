// Writes src/runtime/seccomp/syscalls.ts: the system call numbers of x86_64 and aarch64, read
// from the kernel's uapi headers (linux-libc-dev) through the C preprocessor, plus the calls
// added to the kernel after those headers (listed below with the version that added them).
//
//   bun scripts/gen-syscalls.ts            (needs gcc and linux-libc-dev)
import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** Calls newer than linux-libc-dev 6.1, from the kernel's syscall tables (arch/x86/entry/syscalls/syscall_64.tbl, scripts/syscall.tbl). */
const NEWER: Array<{ name: string; nr: number; since: string; arches: Array<"x86_64" | "aarch64"> }> = [
  { name: "uretprobe", nr: 335, since: "6.11", arches: ["x86_64"] },
  { name: "uprobe", nr: 336, since: "6.17", arches: ["x86_64"] },
  { name: "cachestat", nr: 451, since: "6.5", arches: ["x86_64", "aarch64"] },
  { name: "fchmodat2", nr: 452, since: "6.6", arches: ["x86_64", "aarch64"] },
  { name: "map_shadow_stack", nr: 453, since: "6.6", arches: ["x86_64", "aarch64"] },
  { name: "futex_wake", nr: 454, since: "6.7", arches: ["x86_64", "aarch64"] },
  { name: "futex_wait", nr: 455, since: "6.7", arches: ["x86_64", "aarch64"] },
  { name: "futex_requeue", nr: 456, since: "6.7", arches: ["x86_64", "aarch64"] },
  { name: "statmount", nr: 457, since: "6.8", arches: ["x86_64", "aarch64"] },
  { name: "listmount", nr: 458, since: "6.8", arches: ["x86_64", "aarch64"] },
  { name: "lsm_get_self_attr", nr: 459, since: "6.8", arches: ["x86_64", "aarch64"] },
  { name: "lsm_set_self_attr", nr: 460, since: "6.8", arches: ["x86_64", "aarch64"] },
  { name: "lsm_list_modules", nr: 461, since: "6.8", arches: ["x86_64", "aarch64"] },
  { name: "mseal", nr: 462, since: "6.10", arches: ["x86_64", "aarch64"] },
  { name: "setxattrat", nr: 463, since: "6.13", arches: ["x86_64", "aarch64"] },
  { name: "getxattrat", nr: 464, since: "6.13", arches: ["x86_64", "aarch64"] },
  { name: "listxattrat", nr: 465, since: "6.13", arches: ["x86_64", "aarch64"] },
  { name: "removexattrat", nr: 466, since: "6.13", arches: ["x86_64", "aarch64"] },
  { name: "open_tree_attr", nr: 467, since: "6.15", arches: ["x86_64", "aarch64"] },
  { name: "file_getattr", nr: 468, since: "6.17", arches: ["x86_64", "aarch64"] },
  { name: "file_setattr", nr: 469, since: "6.17", arches: ["x86_64", "aarch64"] },
];

/** What arm64's uapi asm/unistd.h defines before including the generic table. */
const AARCH64_WANTS = [
  "__ARCH_WANT_RENAMEAT",
  "__ARCH_WANT_NEW_STAT",
  "__ARCH_WANT_SET_GET_RLIMIT",
  "__ARCH_WANT_TIME32_SYSCALLS",
  "__ARCH_WANT_SYS_CLONE3",
  "__ARCH_WANT_MEMFD_SECRET",
];

/** `#define` lines of `source` after preprocessing, as name -> expression text. */
function macros(source: string): Map<string, string> {
  const r = Bun.spawnSync(["gcc", "-E", "-dM", "-x", "c", "-"], { stdin: Buffer.from(source) });
  if (r.exitCode !== 0) throw new Error(`gcc -E failed: ${r.stderr.toString()}`);
  const out = new Map<string, string>();
  for (const line of r.stdout.toString().split("\n")) {
    const m = /^#define (\w+) (.+)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!.trim());
  }
  return out;
}

/** Evaluates `(A + 3)`-style expressions over other macros. */
function evaluate(expr: string, defs: Map<string, string>, depth = 0): number {
  if (depth > 10) throw new Error(`cannot evaluate ${expr}`);
  const terms = expr
    .replace(/[()]/g, "")
    .split("+")
    .map((t) => t.trim());
  let sum = 0;
  for (const t of terms) {
    if (/^\d+$/.test(t)) sum += Number(t);
    else if (defs.has(t)) sum += evaluate(defs.get(t)!, defs, depth + 1);
    else throw new Error(`unknown term ${t} in ${expr}`);
  }
  return sum;
}

function table(source: string): Record<string, number> {
  const defs = macros(source);
  const out: Record<string, number> = {};
  for (const [name, expr] of defs) {
    if (!name.startsWith("__NR_") || name === "__NR_syscalls" || name === "__NR_arch_specific_syscall") continue;
    out[name.slice("__NR_".length)] = evaluate(expr, defs);
  }
  return out;
}

const tables = {
  x86_64: table("#include <asm/unistd_64.h>\n"),
  aarch64: table(`${AARCH64_WANTS.map((w) => `#define ${w}`).join("\n")}\n#include <asm-generic/unistd.h>\n`),
};
for (const n of NEWER) {
  for (const arch of n.arches) {
    const have = tables[arch][n.name];
    if (have !== undefined && have !== n.nr) throw new Error(`${n.name} is ${have} in the headers, not ${n.nr}`);
    tables[arch][n.name] = n.nr;
  }
}

function render(name: string, t: Record<string, number>): string {
  const entries = Object.entries(t).sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]));
  const lines: string[] = [];
  let line = "";
  for (const [k, nr] of entries) {
    const item = `${k}: ${nr},`;
    if (line.length + item.length + 1 > 116) {
      lines.push(`  ${line.trimEnd()}`);
      line = "";
    }
    line += `${item} `;
  }
  if (line) lines.push(`  ${line.trimEnd()}`);
  return `export const ${name}: Readonly<Record<string, number>> = {\n${lines.join("\n")}\n};\n`;
}

const header = `// System call numbers of the two architectures ucr runs on (names as seccomp profiles use them).
// Generated by scripts/gen-syscalls.ts from linux-libc-dev's uapi headers plus later calls; do not edit.
`;
const out = join(import.meta.dir, "..", "src", "runtime", "seccomp", "syscalls.ts");
writeFileSync(out, `${header}\n${render("X86_64", tables.x86_64)}\n${render("AARCH64", tables.aarch64)}`);
console.log(`wrote ${out}: x86_64 ${Object.keys(tables.x86_64).length} calls, aarch64 ${Object.keys(tables.aarch64).length} calls`);
