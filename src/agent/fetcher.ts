// The Mesos fetcher's job for operator-launched containers: CommandInfo.uris are put into
// the sandbox before the command runs (http(s), file:// or an absolute path), archives
// extracted unless `extract: false`, `executable` ones made executable. Any failure fails
// the launch with the URI named.
import { chmodSync, copyFileSync, createWriteStream, existsSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { CommandInfo } from "../mesos/messages.ts";
import { UcrError } from "../errors.ts";

class FetchError extends UcrError {
  constructor(uri: string, why: string) {
    super("invalid", `Failed to fetch '${uri}': ${why}`);
  }
}

const ARCHIVES: Array<[RegExp, string[]]> = [
  [/\.(tar\.gz|tgz)$/, ["-xzf"]],
  [/\.(tar\.bz2|tbz2)$/, ["-xjf"]],
  [/\.(tar\.xz|txz)$/, ["-xJf"]],
  [/\.tar$/, ["-xf"]],
];

async function download(url: string, dest: string, signal?: AbortSignal): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow", ...(signal ? { signal } : {}) });
  } catch (err) {
    throw new Error((err as Error).message);
  }
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  const out = createWriteStream(dest, { mode: 0o644 });
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
    }
  } finally {
    await new Promise<void>((r) => out.end(() => r()));
  }
}

/** `signal`: KILL_CONTAINER stopped the launch; a download in progress is abandoned. */
export async function fetchUris(uris: CommandInfo["uris"] | undefined, sandbox: string, signal?: AbortSignal): Promise<void> {
  for (const uri of uris ?? []) {
    signal?.throwIfAborted();
    const value = uri.value;
    const name = uri.output_file ?? basename(new URL(value, "file:///").pathname);
    if (!name || name.startsWith("/") || name.split("/").includes(".."))
      throw new FetchError(value, `output file '${name}' must be a relative name inside the sandbox`);
    const dest = join(sandbox, name);
    try {
      if (/^https?:\/\//.test(value)) await download(value, dest, signal);
      else if (value.startsWith("file://") || value.startsWith("/")) {
        const path = value.startsWith("file://") ? decodeURIComponent(new URL(value).pathname) : value;
        if (!existsSync(path) || !statSync(path).isFile()) throw new Error(`${path} is not a file`);
        copyFileSync(path, dest);
      } else {
        throw new Error("only http://, https://, file:// and absolute paths are fetched");
      }
    } catch (err) {
      rmSync(dest, { force: true });
      if (err instanceof FetchError) throw err;
      throw new FetchError(value, (err as Error).message);
    }
    if (uri.executable) {
      chmodSync(dest, 0o755);
      continue;
    }
    const archive = ARCHIVES.find(([re]) => re.test(name));
    if (archive && uri.extract !== false) {
      const tar = Bun.spawn(["tar", "--no-same-owner", "--no-overwrite-dir", ...archive[1], dest, "-C", sandbox], {
        stderr: "pipe",
        stdout: "ignore",
      });
      const err = await new Response(tar.stderr).text();
      if ((await tar.exited) !== 0) throw new FetchError(value, `extracting ${name}: ${err.trim()}`);
    }
  }
}
