// `ucr pull`, `ucr images` and `ucr load`: the image store from the command line, with the
// agent's flags (--docker_registry, --docker_store_dir, --docker_config, ...); `ucr images`
// asks the agent. Progress is a live line per layer on a terminal and plain lines otherwise.
import { FlagError, loadFlags, type LoadedFlags } from "../config/flags.ts";
import { humanBytes } from "../config/units.ts";
import { archiveTags } from "../images/archive.ts";
import type { LayerEvent } from "../images/puller.ts";
import { startImageService, type ImageService } from "../images/service.ts";
import { DockerStore, type ImageRecord } from "../images/store.ts";
import { type ImageEntry, imageEntries } from "../api/images.ts";
import { AgentError, UsageError, clientCommand, expectJson, request, splitClientOptions, table } from "./agent-client.ts";

function flagsFor(command: string, args: readonly string[], positionals: string[]): LoadedFlags {
  try {
    return loadFlags(args, process.env, { positionals });
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`ucr ${command}: ${err.message} (see 'ucr help')\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** The store and workers, or undefined after saying why they cannot be had (a store not ours, say). */
function openService(command: string, flags: LoadedFlags): ImageService | undefined {
  let service: ImageService;
  try {
    service = startImageService(flags.values);
  } catch (err) {
    process.stderr.write(`ucr ${command}: cannot open the image store at ${flags.values.docker_store_dir}: ${(err as Error).message}\n`);
    return undefined;
  }
  for (const note of service.notes) process.stderr.write(`ucr ${command}: ${note}\n`);
  return service;
}

function short(id: string): string {
  if (!id.startsWith("sha256:")) return id.split("/").slice(-2).join("/"); // an archive member
  return id.slice("sha256:".length, "sha256:".length + 12);
}

/** Renders layer events: redrawn lines on a TTY, one line per state change otherwise. */
class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly lines = new Map<number, string>();
  private readonly started = new Map<number, number>();
  private drawn = 0;
  private lastDraw = 0;

  event(e: LayerEvent): void {
    if (e.kind === "layer") {
      const label = `layer ${e.index + 1}/${e.total} ${short(e.id)}`;
      const text =
        e.state === "cached"
          ? `${label}: already in the store`
          : e.state === "shared"
            ? `${label}: joining a download in progress`
            : `${label}: fetching${e.size ? ` (${humanBytes(e.size)})` : ""}`;
      this.started.set(e.index, performance.now());
      this.set(e.index, text, true);
    } else if (e.kind === "progress") {
      const secs = (performance.now() - (this.started.get(e.index) ?? performance.now())) / 1000;
      const rate = secs > 0 ? `${humanBytes(e.bytes / secs)}/s` : "";
      const of = e.size ? ` of ${humanBytes(e.size)}` : "";
      this.set(e.index, `layer ${e.index + 1} ${short(e.id)}: ${humanBytes(e.bytes)}${of} ${rate}`, false);
    } else {
      const rate = e.ms > 0 ? `${humanBytes((e.bytes / e.ms) * 1000)}/s` : "";
      this.set(
        e.index,
        `layer ${e.index + 1} ${short(e.id)}: done, ${humanBytes(e.bytes)} in ${(e.ms / 1000).toFixed(2)}s (${rate})`,
        true,
      );
    }
  }

  private set(index: number, text: string, important: boolean): void {
    this.lines.set(index, text);
    if (!this.tty) {
      if (important) process.stderr.write(`${text}\n`);
      return;
    }
    const now = performance.now();
    if (!important && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    let out = this.drawn > 0 ? `\x1b[${this.drawn}F` : "";
    const sorted = [...this.lines.entries()].sort((a, b) => a[0] - b[0]);
    for (const [, line] of sorted) out += `\x1b[2K${line}\n`;
    this.drawn = sorted.length;
    process.stderr.write(out);
  }
}

function summary(record: ImageRecord, ms: number): string {
  return `${record.reference}: ${record.layers.length} layer(s), config ${short(record.configDigest)}${record.manifestDigest ? `, manifest ${record.manifestDigest}` : ""} (${(ms / 1000).toFixed(2)}s)`;
}

export async function pullMain(args: readonly string[]): Promise<number> {
  const rest = args.filter((a) => a !== "--force" && a !== "--force_pull");
  const force = rest.length !== args.length;
  const positionals: string[] = [];
  const flags = flagsFor("pull", rest, positionals);
  if (positionals.length !== 1) {
    process.stderr.write(`ucr pull: expected one image name, got ${positionals.length} (usage: ucr pull IMAGE [--force] [flags])\n`);
    return 2;
  }
  const service = openService("pull", flags);
  if (!service) return 1;
  const progress = new Progress();
  const started = performance.now();
  // Shared with other pulls, exclusive of an agent's GC sweep on the same store.
  const unlock = service.store.lockShared();
  try {
    const record = await service.puller.pull(positionals[0]!, { force, onEvent: (e) => progress.event(e) });
    process.stdout.write(`${summary(record, performance.now() - started)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`ucr ${(err as Error).message}\n`);
    return 1;
  } finally {
    unlock();
    service.stop();
  }
}

export async function loadMain(args: readonly string[]): Promise<number> {
  const positionals: string[] = [];
  const flags = flagsFor("load", args, positionals);
  const [file, ...names] = positionals;
  if (!file) {
    process.stderr.write("ucr load: expected an archive file (usage: ucr load FILE [NAME...] [flags])\n");
    return 2;
  }
  const service = openService("load", flags);
  if (!service) return 1;
  const progress = new Progress();
  const unlock = service.store.lockShared();
  try {
    const tags = names.length > 0 ? names : archiveTags(file);
    if (tags.length === 0) {
      process.stderr.write(`ucr load: ${file} has no tagged images; name one: ucr load ${file} NAME\n`);
      return 1;
    }
    for (const tag of tags) {
      const started = performance.now();
      const record = await service.puller.load(file, tag, { onEvent: (e) => progress.event(e) });
      process.stdout.write(`loaded ${summary(record, performance.now() - started)}\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`ucr load: ${(err as Error).message}\n`);
    return 1;
  } finally {
    unlock();
    service.stop();
  }
}

const IMAGES_USAGE = "usage: ucr images [--agent HOST:PORT | --work_dir DIR]";

/** The `ucr images` table from the agent's (or a store's) image entries. */
function imagesTable(entries: ImageEntry[]): string {
  const rows = entries.map((img) => [
    img.reference,
    short(img.manifest_digest ?? img.config_digest),
    humanBytes(img.size_bytes),
    String(img.layers),
    img.last_used_at.replace("T", " ").slice(0, 19),
  ]);
  return table(["REFERENCE", "DIGEST", "SIZE", "LAYERS", "LAST USED"], rows);
}

/**
 * `ucr images`: the agent's images (GET /images). With --work_dir or --docker_store_dir it
 * reads that store directly instead, which needs no agent (and the store's owner, root).
 */
export async function imagesMain(args: readonly string[]): Promise<number> {
  if (args.some((a) => /^--(work_dir|docker_store_dir)(=|$)/.test(a))) {
    const positionals: string[] = [];
    const flags = flagsFor("images", args, positionals);
    if (positionals.length > 0) {
      process.stderr.write(`ucr images: unexpected argument '${positionals[0]}' (${IMAGES_USAGE})\n`);
      return 2;
    }
    return clientCommand("images", async () => {
      const store = new DockerStore(flags.values.docker_store_dir);
      store.init();
      process.stdout.write(imagesTable(imageEntries(store)));
      return 0;
    });
  }
  return clientCommand("images", async () => {
    const { opts, rest } = splitClientOptions(args);
    if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}' (${IMAGES_USAGE})`);
    let answer;
    try {
      answer = await request(opts, "/images");
    } catch (err) {
      if (err instanceof AgentError) throw new AgentError(`${err.message}, or read a store without an agent: ucr images --work_dir=DIR`);
      throw err;
    }
    process.stdout.write(imagesTable(expectJson<{ images: ImageEntry[] }>(opts, "GET /images", answer).images));
    return 0;
  });
}
