// The init stage starts for every launch: it must load neither valibot nor image code, nor the
// seccomp profile parser and compiler (the agent compiles; stage 2 only loads the bytes).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const SRC = join(import.meta.dir, "..", "..", "src");

/** Every module `entry` imports, transitively (relative imports resolved; packages by name). */
function importGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const transpiler = new Bun.Transpiler({ loader: "ts" });
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    if (!file.startsWith("/") || file.endsWith(".json")) return; // a package, a builtin, or data
    for (const imp of transpiler.scanImports(readFileSync(file, "utf8"))) {
      if (imp.kind === "import-statement" && /^import\s+type\b/.test(imp.path)) continue;
      visit(imp.path.startsWith(".") ? resolve(dirname(file), imp.path) : imp.path);
    }
  };
  visit(entry);
  return seen;
}

test("ucr __init loads neither valibot, image code nor the seccomp compiler", () => {
  const graph = [...importGraph(join(SRC, "runtime", "init.ts"))];
  expect(graph).toContain(join(SRC, "runtime", "confine.ts"));
  expect(graph).toContain(join(SRC, "ffi", "security.ts"));
  const forbidden = graph.filter(
    (m) =>
      m === "valibot" ||
      m.startsWith(join(SRC, "images")) ||
      m.startsWith(join(SRC, "runtime", "seccomp")) ||
      m.startsWith(join(SRC, "agent")),
  );
  expect(forbidden).toEqual([]);
});
