// Mesos' rules for a LAUNCH_CONTAINER call that need no I/O: what may be nested how, which
// resources a standalone container may use, which image types are enabled, and the limits
// the resources ask for. Pure functions of the call, its parent and the flags.
import type { Resource } from "../api/proto.ts";
import type { LaunchContainer } from "../api/calls.ts";
import type { Flags } from "../config/flags.ts";
import { ContainerError, idKey, type Container } from "./container.ts";

/** Throws the 400 Mesos answers for a launch it refuses before doing anything. */
export function checkLaunch(call: LaunchContainer, parent: Container | undefined, flags: Pick<Flags, "image_providers">): void {
  const id = call.container_id;
  if (call.container && call.container.type !== "MESOS") throw new ContainerError(400, "The provided ContainerInfo is not supported");
  const shareCgroups = call.container?.linux_info?.share_cgroups;
  if (id.parent) {
    if (!parent) throw new ContainerError(400, `Parent container ${idKey(id.parent)} does not exist`);
    if (parent.state !== "RUNNING") throw new ContainerError(400, `Parent container ${parent.key} is not running`);
    const depth = idKey(id).split(".").length - 1;
    const hasResources = (call.resources ?? []).length > 0 || Object.keys(call.limits ?? {}).length > 0;
    if (depth >= 2 && hasResources) {
      throw new ContainerError(400, "Resources and limits can only be set on top-level containers and their direct children");
    }
    if (depth >= 2 && shareCgroups === false) {
      throw new ContainerError(400, "Only a direct child of a top-level container may have its own cgroups (share_cgroups: false)");
    }
    if (hasResources && shareCgroups !== false) {
      throw new ContainerError(
        400,
        "A nested container that shares its parent's cgroups cannot have its own resources or limits; set share_cgroups: false",
      );
    }
  } else {
    checkTopLevelResources(call.resources ?? []);
    if (shareCgroups === true) throw new ContainerError(400, "A top-level container cannot share cgroups: it has no parent");
  }

  const image = call.container?.mesos?.image;
  if (image?.type === "DOCKER" && !(flags.image_providers ?? []).includes("docker")) {
    throw new ContainerError(
      400,
      "Docker images are not enabled: start the agent with --image_providers=docker --isolation=filesystem/linux,docker/runtime",
    );
  }
  if (image?.type === "APPC" && !(flags.image_providers ?? []).includes("appc")) {
    throw new ContainerError(
      400,
      "Appc images are not enabled: start the agent with --image_providers=appc (and --isolation=filesystem/linux)",
    );
  }
}

/** Does this launch get cgroups of its own (a nested one shares its parent's unless told not to)? */
export function ownsCgroups(call: LaunchContainer): boolean {
  return !call.container_id.parent || call.container?.linux_info?.share_cgroups === false;
}

/** cpus and mem from the launch's resources, `limits` winning (Mesos 1.9+ limits). */
export function limitsOf(call: LaunchContainer): { cpus?: number; memBytes?: number; diskBytes?: number } {
  const scalar = (name: string) => call.resources?.find((r) => r.name === name && r.type === "SCALAR")?.scalar?.value;
  const limit = (name: string) => call.limits?.[name]?.value;
  const cpus = limit("cpus") ?? scalar("cpus");
  const mem = limit("mem") ?? scalar("mem");
  const disk = scalar("disk");
  return {
    ...(disk !== undefined && Number.isFinite(disk) ? { diskBytes: Math.round(disk * 1048576) } : {}),
    ...(cpus !== undefined && Number.isFinite(cpus) ? { cpus } : {}),
    ...(mem !== undefined && Number.isFinite(mem) ? { memBytes: Math.round(mem * 1048576) } : {}),
  };
}

/** Mesos refuses reserved, persistent-volume and revocable resources on a top-level launch. */
function checkTopLevelResources(resources: Resource[]): void {
  for (const r of resources) {
    if ((r.role && r.role !== "*") || (r.reservations ?? []).length > 0 || r.reservation) {
      throw new ContainerError(400, `resource '${r.name}' is reserved; standalone containers cannot use reserved resources`);
    }
    if (r.disk?.persistence)
      throw new ContainerError(400, `resource '${r.name}' is a persistent volume, which standalone containers cannot use`);
    if (r.revocable) throw new ContainerError(400, `resource '${r.name}' is revocable, which standalone containers cannot use`);
  }
}

/** A top-level container's hostname: ContainerInfo.hostname, else its ID (as Mesos names it). */
export function hostnameOf(call: LaunchContainer, nested: boolean): string {
  const given = call.container?.hostname;
  if (given === undefined) return call.container_id.value.slice(0, 63);
  if (nested) throw new ContainerError(400, "container.hostname: a nested container shares its parent's UTS namespace and hostname");
  if (given.length > 64 || !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(given)) {
    throw new ContainerError(400, `container.hostname: '${given}' is not a hostname (letters, digits, '-' and '.', at most 64 characters)`);
  }
  return given;
}

/**
 * A session (LAUNCH_NESTED_CONTAINER_SESSION) is Mesos' DEBUG class: it enters its parent as it
 * is, so nothing of its own may be mounted or attached (Mesos' filesystem/linux isolator fails
 * these launches with the same words).
 */
export function checkSession(call: LaunchContainer): void {
  if (call.container?.mesos?.image) throw new ContainerError(400, "A 'rootfs' cannot be set for DEBUG containers: a session runs in its parent's filesystem");
  if ((call.container?.volumes ?? []).length > 0) throw new ContainerError(400, "Volumes not supported for DEBUG containers");
  if ((call.container?.network_infos ?? []).length > 0) {
    throw new ContainerError(400, "container.network_infos: a session joins its parent's network namespace and cannot have networks of its own");
  }
}

/** The window size a launch's tty_info asks for (none: the kernel's 0x0, as Mesos leaves it). */
export function ttyOf(call: LaunchContainer): { window?: { rows: number; columns: number } } | undefined {
  const tty = call.container?.tty_info;
  if (!tty) return undefined;
  return tty.window_size ? { window: { rows: tty.window_size.rows, columns: tty.window_size.columns } } : {};
}
