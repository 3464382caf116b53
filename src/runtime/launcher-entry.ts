// Entry point of `ucr __launcher` (its own bundle, see src/ucr.ts).
import { launcherMain } from "./launcher.ts";

launcherMain(process.argv.slice(3)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ucr: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
