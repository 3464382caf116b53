// Directories only ucr may look into: the image store (unpacked layers hold setuid-root
// binaries), rootfs trees and runtime state. Created 0700 (0711 where a container's user must
// pass through to its sandbox), and checked at every start: a looser mode is tightened, an
// owner other than us refused. A shared sticky directory (/tmp) is never changed, only reported.
import { chmodSync, mkdirSync, statSync } from "node:fs";
import { errorOfKind } from "../errors.ts";

class PrivateDirError extends errorOfKind("precondition") {}

export interface PrivateDirResult {
  created: boolean;
  /** The mode it had when it was tightened. */
  tightenedFrom?: number;
  /** Why it was left as it is although looser than asked (a shared sticky directory). */
  leftShared?: boolean;
}

const mode8 = (m: number) => `0${(m & 0o7777).toString(8)}`;

/**
 * Makes `path` a directory of mode `mode` owned by this process's user: created (parents too,
 * with the same mode) if missing, tightened if looser. Throws PrivateDirError if it is not a
 * directory or belongs to someone else.
 */
export function ensurePrivateDir(path: string, mode: 0o700 | 0o711): PrivateDirResult {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const first = mkdirSync(path, { recursive: true, mode });
    // mkdir's mode passes through the umask: set it exactly, on every directory made here.
    if (first) {
      let p = path;
      for (;;) {
        chmodSync(p, mode);
        if (p === first) break;
        p = p.slice(0, p.lastIndexOf("/")) || "/";
      }
    }
    return { created: true };
  }
  if (!st.isDirectory()) throw new PrivateDirError(`${path} is not a directory`);
  const uid = process.geteuid?.() ?? 0;
  if (st.uid !== uid) {
    throw new PrivateDirError(
      `${path} belongs to uid ${st.uid}, not to this process (uid ${uid}); ucr keeps its state only in directories it owns`,
    );
  }
  const current = st.mode & 0o7777;
  // 0711: others need the search bit to reach their sandbox; 0700 stays as strict as it is.
  const missing = mode === 0o711 && (current & 0o011) !== 0o011;
  if ((current & ~mode & 0o777) === 0 && !missing) return { created: false };
  if (current & 0o1000 && current & 0o002) return { created: false, leftShared: true };
  chmodSync(path, (current & ~0o777) | mode);
  return { created: false, tightenedFrom: current };
}

/** A line for the start-up log, or undefined when there is nothing to say. */
export function describePrivateDir(flag: string, path: string, r: PrivateDirResult, mode: number): string | undefined {
  if (r.tightenedFrom !== undefined) return `--${flag} ${path}: mode ${mode8(r.tightenedFrom)} changed to ${mode8(mode)}`;
  if (r.leftShared)
    return `--${flag} ${path} is a shared sticky directory; left as it is, ucr's own directories inside it are ${mode8(mode)}`;
  return undefined;
}
