// The peers bench/launch.ts runs beside ucr: a crun bundle from the same image, and the mount
// namespace without cgroup2 that crun and podman need on a hybrid host (test/helpers/podman.ts).
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCgroup2FreeNamespace } from "../../test/helpers/podman.ts";
import { PATH } from "./options.ts";
import { checkStop, exec, mustRun, reason, state } from "./state.ts";

/**
 * The mount namespace without /sys/fs/cgroup/unified that crun and podman's crun need on this
 * hybrid host (test/helpers/podman.ts says why). One long-lived process holds it and each run
 * enters it with nsenter (its cost is measured as its own row).
 */
export async function startHolder(dir: string): Promise<string[]> {
  checkStop();
  // Detached like the agent: cleanup after a Ctrl-C still needs the namespace for podman rm.
  const ns = await startCgroup2FreeNamespace(dir, { env: { PATH }, detached: true });
  state.holder = ns.holder;
  if (!ns.prefix) throw new Error(ns.error);
  return ns.prefix;
}

/** crun bundle from the same image: rootfs by umoci, config.json by `crun spec`. */
export async function makeBundle(dir: string, archive: string): Promise<string> {
  const layout = join(dir, "oci");
  const bundle = join(dir, "bundle");
  await mustRun(["skopeo", "copy", "--quiet", `docker-archive:${archive}`, `oci:${layout}:t`]);
  await mustRun(["umoci", "unpack", "--image", `${layout}:t`, bundle]);
  // umoci wrote its own config.json; the brief's peer is crun's default spec.
  rmSync(join(bundle, "config.json"));
  const r = await exec(["sh", "-c", `cd '${bundle}' && crun spec`]);
  if (r.code !== 0) throw new Error(`crun spec: ${reason(r)}`);
  const specPath = join(bundle, "config.json");
  const spec = JSON.parse(readFileSync(specPath, "utf8")) as {
    process: { args: string[]; terminal: boolean };
    linux: { namespaces: { type: string }[] };
  };
  spec.process.args = ["/bin/true"];
  spec.process.terminal = false;
  // ucr keeps the host network (as Mesos does); so must crun, or it pays for a netns.
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "network");
  writeFileSync(specPath, JSON.stringify(spec, null, 2));
  return bundle;
}
