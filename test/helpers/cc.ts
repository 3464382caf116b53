// Builds the small C programs some tests run (test/fixtures/*.c) with the machine's gcc.
import { join } from "node:path";
import { runCommand } from "./command.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures");

/** Why C programs cannot be built here, or null if they can (static ones need libc.a). */
export function noCompiler(opts: { static?: boolean } = {}): string | null {
  if (!Bun.which("gcc")) return "gcc is not installed (scripts/setup.sh installs gcc and libc6-dev)";
  if (opts.static) {
    const r = Bun.spawnSync(["gcc", "-print-file-name=libc.a"]);
    const path = r.stdout.toString().trim();
    if (r.exitCode !== 0 || !path.startsWith("/")) return "libc6-dev's static libc (libc.a) is not installed";
  }
  return null;
}

/** Compiles test/fixtures/NAME.c to `out`; throws with gcc's messages if it fails. */
export async function buildFixture(name: string, out: string, opts: { static?: boolean } = {}): Promise<string> {
  const r = await runCommand(["gcc", "-O1", "-Wall", ...(opts.static ? ["-static"] : []), "-o", out, join(FIXTURES, `${name}.c`)]);
  if (r.code !== 0) throw new Error(`gcc ${name}.c failed:\n${r.stderr}`);
  return out;
}
