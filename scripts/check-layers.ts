// The import rule of ARCHITECTURE.md, checked: arrows only point down (a module imports only its own
// layer or lower ones) and there is no import cycle. `bun scripts/check-layers.ts` prints what breaks it.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = join(import.meta.dir, "..", "src");

/**
 * Rank of each top-level part of src/: a module may import from a rank <= its own. Entry points
 * (main.ts, the worker entry files) sit on top and may import anything.
 */
const RANKS: Array<[RegExp, number, string]> = [
  [/^main\.ts$/, 9, "entry"],
  [/^workers\/(pull|extract|gc|disk|write)\.ts$/, 9, "worker entry"],
  [/^cli\//, 8, "cli"],
  [/^api\//, 7, "api"],
  [/^compose\.ts$|^agent\/main\.ts$/, 8, "composition"],
  [/^agent\//, 6, "agent"],
  [/^(provisioner|images|runtime|gc|network)\//, 5, "domain"],
  [/^config\//, 3, "config"],
  [/^(threads|workers|ffi|mesos|util)\/|^(log|version)\.ts$/, 1, "ground"],
];

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
  upward: string[];
  cycles: string[][];
}

export function checkLayers(root = SRC): LayerReport {
  const files = sources(root).map((f) => relative(root, f));
  const graph = new Map<string, string[]>();
  const upward: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), "utf8");
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
    }
    graph.set(file, deps);
  }
  return { upward, cycles: cycles(graph) };
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
  const { upward, cycles: found } = checkLayers();
  for (const u of upward) console.log(`upward import: ${u}`);
  for (const c of found) console.log(`import cycle: ${c.join(" <-> ")}`);
  console.log(`${upward.length} upward import(s), ${found.length} cycle(s)`);
  process.exit(upward.length + found.length > 0 ? 1 : 0);
}
