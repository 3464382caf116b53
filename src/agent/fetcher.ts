// The Mesos fetcher's job for operator-launched containers: CommandInfo.uris are put into
// the sandbox before the command runs (http(s), file:// or an absolute path), archives
// extracted unless `extract: false`, `executable` ones made executable. Any failure fails
// the launch with the URI named.
//
// Downloads have the image downloads' deadlines (stall and total). A nested container's
// sandbox lies in its parent's, which the parent's workload writes while we fetch: the
// sandbox is opened through no link below the top-level sandbox, files are created by
// descriptor (a link, hard link or fifo planted at the name is unlinked, never followed),
// and archives are unpacked by tar in a staging directory only the agent reaches, then
// moved in by descriptor, directory by directory.
import { constants, createReadStream, fchmodSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, relative } from "node:path";
import { request } from "undici";
import type { CommandInfo } from "../mesos/messages.ts";
import { UcrError } from "../errors.ts";
import {
  DT_DIR,
  EEXIST,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  O_WRONLY,
  close,
  openat,
  openatOrErrno,
  readdirFd,
  sysError,
  unlinkat,
} from "../ffi/libc.ts";
import { discard, stallMessage, Transfer, type FetchLimits } from "../images/transfer.ts";
import { openDir, openInRoot } from "../runtime/inroot.ts";

class FetchError extends UcrError {
  constructor(uri: string, why: string) {
    super("invalid", `Failed to fetch '${uri}': ${why}`);
  }
}

/** Where URIs go: the container's sandbox, the top-level sandbox it lies in, and a private staging dir. */
export interface FetchPlace {
  sandbox: string;
  /** The top-level container's sandbox (the same as `sandbox` for a top-level container): made by the agent. */
  top: string;
  /** Only the agent reaches it, on the sandbox's filesystem (archives are renamed from it into the sandbox). */
  staging: string;
}

const ARCHIVES: Array<[RegExp, string[]]> = [
  [/\.(tar\.gz|tgz)$/, ["-xz"]],
  [/\.(tar\.bz2|tbz2)$/, ["-xj"]],
  [/\.(tar\.xz|txz)$/, ["-xJ"]],
  [/\.tar$/, ["-x"]],
];

const MAX_REDIRECTS = 10;
/** Deeper than this, an archive's tree is not merged into the sandbox (each level holds a descriptor). */
const MAX_MERGE_DEPTH = 128;
const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;
const fdPath = (fd: number, name?: string) => `/proc/self/fd/${fd}${name === undefined ? "" : `/${name}`}`;

/** Writes an http(s) body into `fd`: redirects only to http(s), aborted on a stall, the total deadline or `signal`. */
async function download(url: string, fd: number, limits: FetchLimits, signal?: AbortSignal): Promise<void> {
  const transfer = new Transfer(limits);
  const abort = signal ? AbortSignal.any([transfer.signal, signal]) : transfer.signal;
  const failed = (err: unknown): Error => {
    if (transfer.why) return new Error(transfer.why);
    if (signal?.aborted) return new Error("the launch was stopped");
    // undici's own idle timers are the stall deadline too
    const code = (err as { code?: string }).code;
    if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") return new Error(stallMessage(limits));
    return new Error((err as Error).message);
  };
  try {
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      if (current.protocol !== "http:" && current.protocol !== "https:") {
        throw new Error(`refusing a redirect to scheme '${current.protocol.replace(/:$/, "")}'; only http and https are followed`);
      }
      let res;
      try {
        res = await request(current, {
          method: "GET",
          headers: { "user-agent": "ucr" },
          signal: abort,
          headersTimeout: limits.stallMs,
          bodyTimeout: limits.stallMs,
        });
      } catch (err) {
        throw failed(err);
      }
      const location = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && typeof location === "string" && hop < MAX_REDIRECTS) {
        await discard(res.body);
        current = new URL(location, current);
        continue;
      }
      if (res.statusCode < 200 || res.statusCode > 299) {
        await discard(res.body);
        throw new Error(`HTTP ${res.statusCode}`);
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          transfer.progress(chunk.byteLength);
          writeSync(fd, chunk);
        }
      } catch (err) {
        throw failed(err);
      }
      return;
    }
  } finally {
    transfer.done();
  }
}

/** Copies the host file `path` (the operator named it) into `fd`. */
async function copyFile(path: string, fd: number, signal?: AbortSignal): Promise<void> {
  let src: number;
  try {
    // O_NONBLOCK: a fifo at that path must not hang the launch (it is refused below).
    src = openSync(path, constants.O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  } catch (err) {
    throw new Error(`cannot open ${path}: ${code(err) ?? (err as Error).message}`);
  }
  if (!fstatSync(src).isFile()) {
    close(src);
    throw new Error(`${path} is not a file`);
  }
  for await (const chunk of createReadStream("", { fd: src, autoClose: true }) as AsyncIterable<Buffer>) {
    signal?.throwIfAborted();
    writeSync(fd, chunk);
  }
}

/**
 * A new empty file `name` in the directory `dirFd`: whatever is there (a file, a link, a
 * hard link to something else, a fifo) is unlinked first, never opened or followed.
 */
function createFresh(dirFd: number, name: string, shown: string): number {
  for (let tries = 0; tries < 8; tries++) {
    try {
      unlinkat(dirFd, name);
    } catch (err) {
      if (code(err) === "EISDIR") throw new Error(`${shown} is a directory`);
      if (code(err) !== "ENOENT") throw err;
    }
    const fd = openatOrErrno(dirFd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644);
    if (fd >= 0) return fd;
    if (fd !== -EEXIST) throw sysError("openat", fd, shown);
  }
  throw new Error(`${shown} keeps reappearing while it is created`);
}

/**
 * Moves the tree in `srcFd` into `dstFd`: names not there are renamed in; a directory there
 * (opened without following a link) is merged into; a file or link there is replaced.
 */
function merge(srcFd: number, dstFd: number, where: string, depth = 0): void {
  if (depth > MAX_MERGE_DEPTH) throw new Error(`${where}: more than ${MAX_MERGE_DEPTH} levels of directories`);
  for (const { name, type } of readdirFd(srcFd)) {
    if (type === DT_DIR) {
      const dst = openatOrErrno(dstFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (dst >= 0) {
        const src = openat(srcFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        try {
          merge(src, dst, `${where}${name}/`, depth + 1);
        } finally {
          close(src);
          close(dst);
        }
        continue;
      }
      // a file or a link where the archive has a directory: the archive's wins
      try {
        unlinkat(dstFd, name);
      } catch (err) {
        if (code(err) !== "ENOENT") throw err;
      }
    }
    try {
      // rename(2) never follows the last component; the directories are our descriptors
      renameSync(fdPath(srcFd, name), fdPath(dstFd, name));
    } catch (err) {
      const why = code(err) === "EISDIR" ? "a directory is in the way" : (code(err) ?? (err as Error).message);
      throw new Error(`cannot move ${where}${name} into the sandbox: ${why}`);
    }
  }
}

/** Unpacks the archive `archiveFd` with GNU tar into `staging`, then moves its tree into `dirFd`. */
async function extract(archiveFd: number, flags: string[], staging: string, dirFd: number): Promise<void> {
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    const input = openSync(fdPath(archiveFd), constants.O_RDONLY | O_CLOEXEC);
    try {
      const tar = Bun.spawn(["tar", "--no-same-owner", "--no-overwrite-dir", ...flags, "-f", "-", "-C", staging], {
        stdin: input,
        stdout: "ignore",
        stderr: "pipe",
      });
      const err = await new Response(tar.stderr).text();
      if ((await tar.exited) !== 0) throw new Error(err.trim() || `tar exited with ${tar.exitCode}`);
    } finally {
      close(input);
    }
    const from = openat(-100 /* AT_FDCWD */, staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    try {
      merge(from, dirFd, "");
    } finally {
      close(from);
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The sandbox, opened through no link below the top-level sandbox. */
function openSandbox(place: FetchPlace): number {
  const top = openDir(place.top);
  try {
    return openInRoot(top, relative(place.top, place.sandbox) || ".", { noLinks: true, flags: O_RDONLY | O_DIRECTORY }).fd;
  } catch (err) {
    throw new Error(`cannot open the sandbox ${place.sandbox}: ${(err as Error).message}`);
  } finally {
    close(top);
  }
}

/** `signal`: KILL_CONTAINER stopped the launch; a download in progress is abandoned. */
export async function fetchUris(
  uris: CommandInfo["uris"] | undefined,
  place: FetchPlace,
  limits: FetchLimits,
  signal?: AbortSignal,
): Promise<void> {
  if (!uris || uris.length === 0) return;
  let sandboxFd: number | undefined;
  try {
    for (const uri of uris) {
      signal?.throwIfAborted();
      const value = uri.value;
      const name = uri.output_file ?? basename(new URL(value, "file:///").pathname);
      if (!name || name.startsWith("/") || name.split("/").includes(".."))
        throw new FetchError(value, `output file '${name}' must be a relative name inside the sandbox`);
      try {
        sandboxFd ??= openSandbox(place);
      } catch (err) {
        throw new FetchError(value, (err as Error).message);
      }
      await fetchOne(uri, name, sandboxFd, place, limits, signal);
    }
  } finally {
    if (sandboxFd !== undefined) close(sandboxFd);
  }
}

async function fetchOne(
  uri: NonNullable<CommandInfo["uris"]>[number],
  name: string,
  sandboxFd: number,
  place: FetchPlace,
  limits: FetchLimits,
  signal?: AbortSignal,
): Promise<void> {
  const value = uri.value;
  const slash = name.lastIndexOf("/");
  const base = name.slice(slash + 1);
  let dirFd: number | undefined;
  let fd: number | undefined;
  try {
    dirFd = openInRoot(sandboxFd, slash < 0 ? "." : name.slice(0, slash), {
      create: "dir",
      noLinks: true,
      flags: O_RDONLY | O_DIRECTORY,
    }).fd;
    fd = createFresh(dirFd, base, name);
    try {
      if (/^https?:\/\//.test(value)) await download(value, fd, limits, signal);
      else if (value.startsWith("file://") || value.startsWith("/")) {
        await copyFile(value.startsWith("file://") ? decodeURIComponent(new URL(value).pathname) : value, fd, signal);
      } else {
        throw new Error("only http://, https://, file:// and absolute paths are fetched");
      }
    } catch (err) {
      // only the name in the directory we hold: what it may have been swapped for stays
      try {
        unlinkat(dirFd, base);
      } catch {}
      throw err;
    }
    if (uri.executable) {
      fchmodSync(fd, 0o755);
      return;
    }
    const archive = ARCHIVES.find(([re]) => re.test(name));
    if (archive && uri.extract !== false) {
      try {
        await extract(fd, archive[1], place.staging, sandboxFd);
      } catch (err) {
        throw new Error(`extracting ${name}: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    if (err instanceof FetchError) throw err;
    throw new FetchError(value, (err as Error).message);
  } finally {
    if (fd !== undefined) close(fd);
    if (dirFd !== undefined) close(dirFd);
  }
}
