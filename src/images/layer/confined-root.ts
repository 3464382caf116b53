// Root-confined path resolution (the securejoin role): a directory inside a root is reached
// component by component through directory handles (openat with O_NOFOLLOW), never as a host
// path string, so no symlink can lead out and no path is ever longer than one name. Handles
// of recently used directories are kept (LRU), so unpacking a tree costs O(1) lookups per
// entry however deep it is. Names are bytes (latin1 strings).
import {
  AT_FDCWD,
  EEXIST,
  ELOOP,
  ENOENT,
  ENOTDIR,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  close,
  fail,
  mkdirat,
  openat,
  readlinkat,
  statxat,
} from "../../ffi/fs-at.ts";
import { shown } from "../tar/codec.ts";
import { UcrError } from "../../errors.ts";

/** Why a path could not be resolved inside the root; `reason` completes "entry 'x' ...". */
export class ConfinementError extends UcrError {
  constructor(readonly reason: string) {
    super("invalid", reason);
  }
}

/** An open directory inside the root. `key` is its resolved path from the root ("" = root). */
export interface DirHandle {
  readonly fd: number;
  readonly key: string;
  /** Writes in flight that use this descriptor; it is closed only when none are. */
  pins: number;
  evicted: boolean;
}

const MAX_SYMLINK_HOPS = 40;
/** How many parent keys are tried when looking for a cached ancestor before starting at the root. */
const ANCESTOR_TRIES = 64;
/** The cache's keys (paths) add up to at most this many bytes: names may be 1 MiB long each. */
const MAX_KEY_BYTES = 32 << 20;

export class ConfinedRoot {
  private readonly root: DirHandle;
  private readonly cache = new Map<string, DirHandle>();
  private keyBytes = 0;
  /** Called for each directory this resolver creates (by resolved key). */
  onCreate: (key: string) => void = () => {};

  constructor(
    readonly path: string,
    private readonly maxHandles = 1024,
  ) {
    const fd = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) throw fail("openat", fd, path);
    this.root = { fd, key: "", pins: 0, evicted: false };
  }

  get rootFd(): number {
    return this.root.fd;
  }

  /**
   * The directory `key` (clean components joined by "/", "" for the root), resolved inside
   * the root: a symlink on the way is followed only if its target stays inside (relative,
   * never above the root); missing directories are created (0755) when `create`, else the
   * result is undefined. Throws ConfinementError when the path would lead out.
   */
  dir(key: string, create: boolean): DirHandle | undefined {
    if (key === "") return this.root;
    const hit = this.cache.get(key);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    // Nearest cached ancestor, by the key as asked.
    let start = this.root;
    let done = 0;
    let prefix = key;
    for (let tries = 0; tries < ANCESTOR_TRIES; tries++) {
      const slash = prefix.lastIndexOf("/");
      if (slash < 0) break;
      prefix = prefix.slice(0, slash);
      const h = this.cache.get(prefix);
      if (h) {
        start = h;
        done = prefix.length + 1;
        break;
      }
    }
    const handle = this.walk(start, key.slice(done).split("/"), create, key);
    if (handle && handle.key !== key) this.remember(key, { fd: dupOpen(handle), key: handle.key, pins: 0, evicted: false });
    return handle;
  }

  /** Walks `parts` from `from`, following in-root symlinks; caches every directory by resolved key. */
  private walk(from: DirHandle, parts: string[], create: boolean, asked: string): DirHandle | undefined {
    let cur = from;
    const queue = parts;
    let i = 0;
    let hops = 0;
    while (i < queue.length) {
      const comp = queue[i]!;
      if (comp === "" || comp === ".") {
        i++;
        continue;
      }
      if (comp === "..") {
        // Keys come clean and symlink targets are resolved lexically below: never reached.
        throw new ConfinementError(`would leave the root through '..' (resolving '${shown(asked)}')`);
      }
      const childKey = cur.key === "" ? comp : `${cur.key}/${comp}`;
      const cached = this.cache.get(childKey);
      if (cached) {
        cur = cached;
        i++;
        continue;
      }
      let fd = openat(cur.fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (fd === -ENOENT) {
        if (!create) return undefined;
        const made = mkdirat(cur.fd, comp, 0o755);
        if (made < 0 && made !== -EEXIST) throw fail("mkdirat", made, shown(childKey));
        if (made === 0) this.onCreate(childKey);
        fd = openat(cur.fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      }
      if (fd === -ENOTDIR || fd === -ELOOP) {
        const st = statxat(cur.fd, comp);
        if (typeof st === "number") throw fail("statx", st, shown(childKey));
        if ((st.mode & S_IFMT) !== S_IFLNK) {
          throw new ConfinementError(`needs '${shown(childKey)}' to be a directory, but it is ${kindOf(st.mode)}`);
        }
        if (++hops > MAX_SYMLINK_HOPS) throw new ConfinementError("is written through too many symlinks");
        const target = readlinkat(cur.fd, comp);
        if (typeof target === "number") throw fail("readlinkat", target, shown(childKey));
        if (target.startsWith("/")) {
          throw new ConfinementError(
            `would be written through symlink '${shown(childKey)}' -> '${shown(target)}', which leads outside the layer`,
          );
        }
        // The target, resolved lexically against the link's directory, must stay inside.
        const base = cur.key === "" ? [] : cur.key.split("/");
        for (const t of target.split("/")) {
          if (t === "" || t === ".") continue;
          if (t === "..") {
            if (base.length === 0) {
              throw new ConfinementError(
                `would be written through symlink '${shown(childKey)}' -> '${shown(target)}', which leads outside the layer`,
              );
            }
            base.pop();
          } else base.push(t);
        }
        queue.splice(0, i + 1, ...base);
        i = 0;
        cur = this.root;
        continue;
      }
      if (fd < 0) throw fail("openat", fd, shown(childKey));
      const handle: DirHandle = { fd, key: childKey, pins: 0, evicted: false };
      this.remember(childKey, handle);
      cur = handle;
      i++;
    }
    return cur;
  }

  private remember(key: string, handle: DirHandle): void {
    const old = this.cache.get(key);
    if (old) this.release(old);
    else this.keyBytes += key.length;
    this.cache.set(key, handle);
    while (this.cache.size > this.maxHandles || (this.keyBytes > MAX_KEY_BYTES && this.cache.size > 1)) {
      const oldest = this.cache.keys().next().value as string;
      const h = this.cache.get(oldest)!;
      this.cache.delete(oldest);
      this.keyBytes -= oldest.length;
      this.release(h);
    }
  }

  private release(h: DirHandle): void {
    h.evicted = true;
    if (h.pins === 0 && h !== this.root) close(h.fd);
  }

  /** Marks a handle used by a write in flight, so eviction does not close it under the write. */
  pin(h: DirHandle): void {
    h.pins++;
  }

  unpin(h: DirHandle): void {
    if (--h.pins === 0 && h.evicted && h !== this.root) close(h.fd);
  }

  /** Forgets every cached directory: after a directory or a symlink was removed or replaced. */
  invalidate(): void {
    for (const h of this.cache.values()) this.release(h);
    this.cache.clear();
    this.keyBytes = 0;
  }

  close(): void {
    this.invalidate();
    close(this.root.fd);
  }
}

/** A second descriptor for the same directory (cache entries own their descriptors). */
function dupOpen(h: DirHandle): number {
  const fd = openat(h.fd, ".", O_RDONLY | O_DIRECTORY);
  if (fd < 0) throw fail("openat", fd, shown(h.key));
  return fd;
}

function kindOf(mode: number): string {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return "a directory";
    case S_IFLNK:
      return "a symlink";
    case 0o100000:
      return "a file";
    default:
      return "a special file";
  }
}

function isClean(name: string): boolean {
  if (name === "" || name === "." || name === ".." || name.startsWith("./") || name.startsWith("../") || name.startsWith("/"))
    return name === "";
  if (name.endsWith("/.") || name.endsWith("/..") || name.includes("//")) return false;
  return !name.includes("/./") && !name.includes("/../");
}

/** Splits a tar name into clean components; null if it is absolute or has "..", with why. */
export function cleanKey(name: string): { key: string } | { problem: "absolute" | "dotdot" } {
  if (name.startsWith("/")) return { problem: "absolute" };
  // Fast path: most names are already clean ("a/b/c" or "a/b/c/"). indexOf, not a regex:
  // names may be 20 KB long (a tree 10,000 deep), and a regex scan per entry dominated.
  let start = 0;
  while (name.startsWith("./", start)) start += 2; // GNU tar's "./" in front of every name
  const rest = start > 0 ? name.slice(start) : name;
  if (isClean(rest)) return { key: rest.endsWith("/") ? rest.slice(0, -1) : rest };
  const parts: string[] = [];
  for (const p of name.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") return { problem: "dotdot" };
    parts.push(p);
  }
  return { key: parts.join("/") };
}
