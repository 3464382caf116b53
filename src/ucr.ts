// The executable's entry point: it only picks the module for the command. The init stage
// (started once per container launch) and the launcher are bundled apart from everything
// else, because Bun's start-up cost grows with the size of the entry's bundle even where
// that code never runs: `ucr __init` from the whole bundle took ~18 ms of CPU here, from
// its own ~6 ms (scripts/build.ts embeds each as an entry point of its own).
const OWN_BUNDLES: Record<string, string> = { __init: "runtime/init-entry", __launcher: "runtime/launcher-entry" };
const bundle = OWN_BUNDLES[process.argv[2] ?? ""] ?? "main";
// A computed path, so the bundler leaves each bundle out of this one. Compiled, the bundles
// are embedded under /$bunfs/root (import.meta.dir still names the source tree there).
const root = Bun.main.startsWith("/$bunfs/") ? "/$bunfs/root" : import.meta.dir;
import(`${root}/${bundle}.ts`).catch((err: unknown) => {
  process.stderr.write(`ucr: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
