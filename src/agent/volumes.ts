// A launch's volumes as mounts for the init stage: host paths (the legacy `host_path` or a
// HOST_PATH source, with their mount propagation), sandbox paths (SANDBOX_PATH SELF, PARENT
// for a nested container, or a legacy relative `host_path`), and images (Docker or Appc,
// mounted read-only). A relative container_path is inside the sandbox, as in Mesos.
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { join, relative } from "node:path";
import { makeDirBelow } from "../runtime/inroot.ts";
import type { LaunchContainer } from "../mesos/calls.ts";

type Image = NonNullable<NonNullable<NonNullable<LaunchContainer["container"]>["volumes"]>[number]["image"]>;
import type { VolumeSpec } from "../runtime/spec.ts";
import { invalid } from "../errors.ts";

export interface VolumeContext {
  /** The container's sandbox on the host, and where the workload sees it. */
  sandbox: string;
  sandboxInContainer: string;
  /** The top-level container's sandbox (the container's own, or the one a nested one sits in). */
  topSandbox: string;
  /** A nested container's parent's sandbox on the host (for PARENT sandbox paths). */
  parentSandbox?: string;
  dockerEnabled: boolean;
  appcEnabled: boolean;
  /** Pulls an image volume's image for the container; returns its layer trees, base first. */
  pullImage(image: Image): Promise<string[]>;
  /** The agent's mount table (/proc/self/mountinfo), read when a volume needs it. */
  mountinfo?: () => string;
}

/** A mount of the agent's mount table: where, and the peer group it shares mounts with (if shared). */
interface MountEntry {
  target: string;
  shared?: number;
}

/** Parses /proc/self/mountinfo (mount points unescaped). */
function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 7) continue;
    const target = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    const optional = f.slice(6, f.indexOf("-"));
    const shared = optional.find((o) => o.startsWith("shared:"));
    out.push({ target, ...(shared ? { shared: Number(shared.slice("shared:".length)) } : {}) });
  }
  return out;
}

/** The mount holding `path` (a real path): the last-mounted one whose target is it or an ancestor (Mesos' findByTarget). */
function mountHolding(entries: readonly MountEntry[], path: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const e of entries) {
    const under = e.target === "/" || path === e.target || path.startsWith(`${e.target}/`);
    if (under && (!best || e.target.length >= best.target.length)) best = e;
  }
  return best;
}

export async function volumeMounts(call: LaunchContainer, ctx: VolumeContext): Promise<VolumeSpec[]> {
  const out: VolumeSpec[] = [];
  for (const [i, v] of (call.container?.volumes ?? []).entries()) {
    const where = `container.volumes[${i}] (container_path '${v.container_path}')`;
    if (v.container_path.split("/").includes("..")) throw invalid(`${where}: container_path must not contain '..'`);
    const target = v.container_path.startsWith("/") ? v.container_path : join(ctx.sandboxInContainer, v.container_path);
    const readonly = v.mode === "RO";
    if (v.image) {
      if (v.image.type === "DOCKER" && !ctx.dockerEnabled)
        throw invalid(`${where}: Docker images are not enabled (--image_providers=docker)`);
      if (v.image.type === "APPC" && !ctx.appcEnabled) throw invalid(`${where}: Appc images are not enabled (--image_providers=appc)`);
      if (!readonly) throw invalid(`${where}: an image volume must be mounted read-only (mode RO)`);
      out.push({ target, readonly: true, lowers: await ctx.pullImage(v.image) });
      continue;
    }
    // The legacy form: an absolute host_path is a host path, a relative one a path in the sandbox (Mesos).
    const legacy = v.host_path;
    const type = v.source?.type ?? (legacy === undefined ? undefined : legacy.startsWith("/") ? "HOST_PATH" : "SANDBOX_PATH");
    if (type === "HOST_PATH") {
      const source = v.source?.host_path?.path ?? legacy;
      if (!source?.startsWith("/")) throw invalid(`${where}: Path '${source ?? ""}' in HOST_PATH volume is not absolute`);
      if (!existsSync(source)) throw invalid(`${where}: Path '${source}' in HOST_PATH volume does not exist`);
      const bidirectional = v.source?.host_path?.mount_propagation?.mode === "BIDIRECTIONAL";
      if (bidirectional) checkSharedMount(source, where, ctx);
      out.push({ target, readonly, source, ...(bidirectional ? { propagation: "bidirectional" as const } : {}) });
    } else if (type === "SANDBOX_PATH") {
      const sp = v.source?.sandbox_path ?? { type: "SELF" as const, path: legacy! };
      const parent = sp.type === "PARENT";
      const root = parent ? ctx.parentSandbox : ctx.sandbox;
      if (root === undefined) throw invalid(`${where}: a PARENT sandbox path needs a nested container (a top-level one has no parent)`);
      if (sp.path.startsWith("/") || sp.path.split("/").includes("..")) {
        throw invalid(`${where}: sandbox_path.path must be relative and stay inside the sandbox`);
      }
      const source = join(root, sp.path);
      // In a sandbox (a nested one is in its parent's, which that workload writes): no link followed.
      try {
        makeDirBelow(ctx.topSandbox, relative(ctx.topSandbox, source), 0o755, { exclusive: false });
      } catch (err) {
        throw invalid(`${where}: ${(err as Error).message}`);
      }
      out.push({ target, readonly, source });
    } else {
      // launch-rules.ts refuses these before anything is made; kept as a guard.
      throw invalid(`${where}: volumes of type ${type ?? "UNKNOWN"} are not supported`);
    }
  }
  return out;
}

/**
 * BIDIRECTIONAL needs the mount holding the host path to be shared (Mesos' volume/host_path):
 * the container's bind of it then stays in that peer group, so what the container mounts
 * below it appears on the host, as Mesos' CSI plugins need.
 */
function checkSharedMount(source: string, where: string, ctx: VolumeContext): void {
  let real: string;
  try {
    real = realpathSync(source);
  } catch (err) {
    throw invalid(`${where}: host path '${source}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const entries = parseMountinfo((ctx.mountinfo ?? (() => readFileSync("/proc/self/mountinfo", "utf8")))());
  const holder = mountHolding(entries, real);
  if (!holder) throw invalid(`${where}: Cannot find the mount containing host path '${source}'`);
  if (holder.shared === undefined) {
    throw invalid(
      `${where}: Cannot setup bidirectional mount propagation for host path '${source}' because it is not under a shared mount ` +
        `(${holder.target} is not shared: mount --make-shared it, or a bind of it)`,
    );
  }
}
