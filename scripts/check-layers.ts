// The import rule of docs/ARCHITECTURE.md, checked: arrows only point down (a module imports only its
// own layer or lower ones), a few neighbours stay apart, there is no import cycle, and a module
// over 400 lines says why at its top.
// test/layers.test.ts runs it; `bun scripts/check-layers.ts` prints what breaks it.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = join(import.meta.dir, "..", "src");

/**
 * Rank of each top-level part of src/: a module may import from a rank <= its own. Entry points
 * (main.ts, the worker entry files) sit on top and may import anything; the composition
 * (compose.ts) and the client commands sit above the API edge.
 */
const RANKS: Array<[RegExp, number, string]> = [
  [/^main\.ts$/, 9, "entry"],
  [/^workers\/(pull|extract|gc|disk|write|setup)\.ts$/, 9, "worker entry"],
  [/^cli\//, 8, "cli"],
  [/^api\//, 7, "api"],
  [/^compose\.ts$|^agent\/main\.ts$/, 8, "composition"],
  [/^agent\//, 6, "agent"],
  [/^(provisioner|images|runtime|gc|network)\//, 5, "domain"],
  [/^config\//, 3, "config"],
  [/^(threads|workers|ffi|mesos|util)\/|^(log|version)\.ts$/, 1, "ground"],
];

/** Parts of one floor that must not lean on each other, and why. */
const APART: Array<[RegExp, RegExp, string]> = [
  [/^runtime\//, /^(images|provisioner|network|gc)\//, "the init stage and the launcher load no image, rootfs, network or GC code"],
];

/** A module longer than this says why in its top comment. */
const MAX_LINES = 400;

/** The comment a module starts with, as one line of text. */
function topComment(text: string): string {
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("//")) break;
    lines.push(line.replace(/^\/\/\s?/, ""));
  }
  return lines.join(" ");
}

function rankOf(file: string): { rank: number; layer: string } {
  for (const [re, rank, layer] of RANKS) if (re.test(file)) return { rank, layer };
  return { rank: 1, layer: "ground" };
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith(".ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\sfrom\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

export interface LayerReport {
  /** Files over 400 lines whose top comment does not say why (issue #11's rule). */
  long: string[];
  upward: string[];
  /** Imports between parts of one floor that must stay apart (APART). */
  apart: string[];
  cycles: string[][];
}

export function checkLayers(root = SRC): LayerReport {
  const files = sources(root).map((f) => relative(root, f));
  const graph = new Map<string, string[]>();
  const upward: string[] = [];
  const apart: string[] = [];
  const long: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), "utf8");
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    if (!file.startsWith("mesos/gen/") && lines > MAX_LINES && !/over 400 lines/i.test(topComment(text)))
      long.push(`${file} (${lines} lines)`);
    const deps: string[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith(".")) continue;
      const target = relative(root, resolve(root, dirname(file), spec));
      if (target.startsWith("..")) continue;
      // Type-only imports still count: they tie the layers' vocabularies together.
      deps.push(target);
      const from = rankOf(file);
      const to = rankOf(target);
      if (to.rank > from.rank) upward.push(`${file} (${from.layer}) -> ${target} (${to.layer})`);
      for (const [a, b, why] of APART) if (a.test(file) && b.test(target)) apart.push(`${file} -> ${target} (${why})`);
    }
    graph.set(file, deps);
  }
  return { long, upward, apart, cycles: cycles(graph) };
}

/** Strongly connected components with more than one module (or a self-import): Tarjan's algorithm. */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

if (import.meta.main) {
  const { long, upward, apart, cycles: found } = checkLayers();
  for (const l of long) console.log(`over ${MAX_LINES} lines without saying why: ${l}`);
  for (const u of upward) console.log(`upward import: ${u}`);
  for (const a of apart) console.log(`import between neighbours kept apart: ${a}`);
  for (const c of found) console.log(`import cycle: ${c.join(" <-> ")}`);
  console.log(`${upward.length} upward import(s), ${apart.length} between neighbours kept apart, ${found.length} cycle(s)`);
  process.exit(long.length + upward.length + apart.length + found.length > 0 ? 1 : 0);
}
