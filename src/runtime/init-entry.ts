// Entry point of `ucr __init` (its own bundle, see src/ucr.ts).
import { initMain } from "./init.ts";

initMain(process.argv.slice(3)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ucr: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
