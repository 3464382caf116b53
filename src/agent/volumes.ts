// A launch's volumes as mounts for the init stage: host paths (the legacy `host_path` or a
// HOST_PATH source), sandbox paths (SANDBOX_PATH, SELF), and Docker images (pulled, mounted
// read-only). A relative container_path is inside the sandbox, as in Mesos.
import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import { makeDirBelow } from "../runtime/inroot.ts";
import type { LaunchContainer } from "../mesos/calls.ts";
import type { VolumeSpec } from "../runtime/spec.ts";
import { invalid, unimplemented } from "../errors.ts";

export interface VolumeContext {
  /** The container's sandbox on the host, and where the workload sees it. */
  sandbox: string;
  sandboxInContainer: string;
  /** The top-level container's sandbox (the container's own, or the one a nested one sits in). */
  topSandbox: string;
  dockerEnabled: boolean;
  /** Pulls an image volume's image for the container; returns its layer trees, base first. */
  pullImage(name: string, force: boolean): Promise<string[]>;
}

export async function volumeMounts(call: LaunchContainer, ctx: VolumeContext): Promise<VolumeSpec[]> {
  const out: VolumeSpec[] = [];
  for (const [i, v] of (call.container?.volumes ?? []).entries()) {
    const where = `volume ${i} (container_path '${v.container_path}')`;
    if (v.container_path.split("/").includes("..")) throw invalid(`${where}: container_path must not contain '..'`);
    const target = v.container_path.startsWith("/") ? v.container_path : join(ctx.sandboxInContainer, v.container_path);
    const readonly = v.mode === "RO";
    if (v.image) {
      if (v.image.type !== "DOCKER" || !v.image.docker)
        throw unimplemented(`${where}: only Docker image volumes are implemented`);
      if (!ctx.dockerEnabled) throw invalid(`${where}: Docker images are not enabled (--image_providers=docker)`);
      if (!readonly) throw invalid(`${where}: an image volume must be mounted read-only (mode RO)`);
      out.push({ target, readonly: true, lowers: await ctx.pullImage(v.image.docker.name, v.image.cached === false) });
      continue;
    }
    const type = v.source?.type ?? (v.host_path !== undefined ? "HOST_PATH" : undefined);
    if (type === "HOST_PATH") {
      const source = v.source?.host_path?.path ?? v.host_path;
      if (!source?.startsWith("/")) throw invalid(`${where}: the host path must be absolute`);
      if (!existsSync(source)) throw invalid(`${where}: host path '${source}' does not exist`);
      out.push({ target, readonly, source });
    } else if (type === "SANDBOX_PATH") {
      const sp = v.source?.sandbox_path;
      if (!sp) throw invalid(`${where}: SANDBOX_PATH needs 'sandbox_path'`);
      if ((sp.type ?? "SELF") !== "SELF")
        throw invalid(`${where}: sandbox_path of type ${sp.type} needs a nested container`);
      if (sp.path.startsWith("/") || sp.path.split("/").includes("..")) {
        throw invalid(`${where}: sandbox_path.path must be relative and stay inside the sandbox`);
      }
      const source = join(ctx.sandbox, sp.path);
      // In the sandbox (a nested one is in its parent's, which that workload writes): no link followed.
      try {
        makeDirBelow(ctx.topSandbox, relative(ctx.topSandbox, source), 0o755, { exclusive: false });
      } catch (err) {
        throw invalid(`${where}: ${(err as Error).message}`);
      }
      out.push({ target, readonly, source });
    } else {
      throw unimplemented(`${where}: volumes of type ${type ?? "UNKNOWN"} are not implemented`);
    }
  }
  return out;
}
