// The house's import rule (docs/ARCHITECTURE.md) as a gate: arrows point down, the runtime
// leans on no image, rootfs, network or GC code, no module imports itself in a circle, and a
// module over 400 lines says why at its top.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { checkLayers } from "../scripts/check-layers.ts";
import { tempDir } from "./helpers/agent.ts";

const scratch = tempDir("ucr-layers-");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test("src/ has no upward import, no import between neighbours kept apart, no cycle; long modules say why", () => {
  const report = checkLayers();
  expect(report.long).toEqual([]);
  expect(report.upward).toEqual([]);
  expect(report.apart).toEqual([]);
  expect(report.cycles).toEqual([]);
});

test("the check finds an upward import, a runtime module importing image code, a cycle and a long module", () => {
  const files: Record<string, string> = {
    "mesos/messages.ts": 'import type { Agent } from "../agent/agent.ts";\n',
    "agent/agent.ts": 'import { x } from "../api/server.ts";\nexport class Agent {}\n',
    "api/server.ts": 'import { Agent } from "../agent/agent.ts";\nexport const x = 1;\n',
    "runtime/init.ts": 'import { s } from "../images/store.ts";\n',
    "images/store.ts": "export const s = 1;\n",
    "util/a.ts": 'export * from "./b.ts";\n',
    "util/b.ts": 'import { a } from "./a.ts";\n',
    "util/long.ts": `// A module that does not say why it is long.\n${"export const x = 1;\n".repeat(400)}`,
    "util/long-why.ts": `// A module that does. (Over 400 lines: a table.)\n${"export const y = 1;\n".repeat(400)}`,
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(scratch, path)), { recursive: true });
    writeFileSync(join(scratch, path), text);
  }
  const report = checkLayers(scratch);
  expect(report.upward.sort()).toEqual([
    "agent/agent.ts (agent) -> api/server.ts (api)",
    "mesos/messages.ts (ground) -> agent/agent.ts (agent)",
  ]);
  expect(report.apart).toEqual([
    "runtime/init.ts -> images/store.ts (the init stage and the launcher load no image, rootfs, network or GC code)",
  ]);
  expect(report.cycles.map((c) => c.join(" ")).sort()).toEqual(["agent/agent.ts api/server.ts", "util/a.ts util/b.ts"]);
  expect(report.long).toEqual(["util/long.ts (401 lines)"]);
});
