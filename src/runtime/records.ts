// The launcher's and its reaper's writes of a container's pid and status files, which must
// not be lost to a passing failure (ENOSPC, a read-only remount, EIO): a write that fails is
// reported and tried again, with backoff, for as long as the container's runtime directory
// exists (once the agent has removed it, nobody will read the file). Nothing here throws.
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { writeStateFile } from "./state.ts";

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

interface Pending {
  key: string;
  file: string;
  data: string;
  delay: number;
  timer: ReturnType<typeof setTimeout>;
  done?: () => void;
}

export class Records {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly report: (message: string) => void) {}

  /**
   * Writes `data` to `file` (atomically) now or, if that fails, later. `done` runs once it
   * is written, or given up (the directory is gone). Returns whether it was written now.
   */
  write(key: string, file: string, data: string, done?: () => void): boolean {
    this.cancel(file);
    if (this.attempt(key, file, data, true)) {
      done?.();
      return true;
    }
    if (!existsSync(dirname(file))) {
      done?.();
      return false;
    }
    const p: Pending = { key, file, data, delay: FIRST_RETRY_MS, timer: undefined as never, ...(done ? { done } : {}) };
    this.schedule(p);
    this.pending.set(file, p);
    return false;
  }

  /** Files not written yet: [key, file, data]. */
  unwritten(): Array<{ key: string; file: string; data: string }> {
    return [...this.pending.values()].map(({ key, file, data }) => ({ key, file, data }));
  }

  get size(): number {
    return this.pending.size;
  }

  private cancel(file: string): void {
    const old = this.pending.get(file);
    if (old) clearTimeout(old.timer);
    this.pending.delete(file);
  }

  private schedule(p: Pending): void {
    p.timer = setTimeout(() => {
      if (this.attempt(p.key, p.file, p.data, false)) {
        this.report(`container ${p.key}: ${p.file} written after all`);
      } else if (existsSync(dirname(p.file))) {
        p.delay = Math.min(p.delay * 2, MAX_RETRY_MS);
        return this.schedule(p);
      } else {
        this.report(`container ${p.key}: gave up writing ${p.file}: its directory is gone`);
      }
      this.pending.delete(p.file);
      p.done?.();
    }, p.delay);
  }

  private attempt(key: string, file: string, data: string, first: boolean): boolean {
    try {
      writeStateFile(file, data);
      return true;
    } catch (err) {
      if (first) {
        const gone = !existsSync(dirname(file));
        this.report(
          `container ${key}: cannot write ${file}: ${(err as Error).message}${gone ? " (its directory is gone)" : "; will try again"}`,
        );
      }
      return false;
    }
  }
}
