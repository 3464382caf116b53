// What each isolator name of Mesos' `--isolation` means in ucr: one that takes effect, one
// whose job ucr does for every container anyway (accepted, logged once), or one ucr does not
// implement (the agent does not start, naming it). Pure data and one pure function.

type IsolatorKind =
  /** Enables something a launch may ask for, or changes what containers get. */
  | "effect"
  /** ucr does this for every container whether named or not. */
  | "always"
  /** Not implemented: naming it stops the agent. */
  | "unsupported";

export interface Isolator {
  kind: IsolatorKind;
  /** What it does in ucr (effect, always), or why ucr cannot run it (unsupported). */
  note: string;
}

/** Every isolator name Mesos 1.12 knows (src/slave/containerizer/mesos/containerizer.cpp), and what ucr makes of it. */
export const ISOLATORS: Readonly<Record<string, Isolator>> = {
  "posix/cpu": { kind: "always", note: "cpus are enforced with cgroups (cpu shares, or cpu.weight on v2)" },
  "posix/mem": { kind: "always", note: "mem is enforced with cgroups (a memory limit)" },
  "posix/disk": {
    kind: "always",
    note:
      "disk use is measured (du of the sandbox and the rootfs changes) and reported, not enforced, " +
      "as in Mesos without --enforce_container_disk_quota",
  },
  "disk/du": { kind: "always", note: "disk use is measured (du of the sandbox and the rootfs changes) and reported, not enforced" },
  "posix/rlimits": { kind: "effect", note: "containers may set rlimits (container.rlimit_info)" },
  "filesystem/posix": { kind: "always", note: "every container gets its sandbox" },
  "filesystem/linux": {
    kind: "effect",
    note: "containers may have their own rootfs from an image (with --image_providers), in their own mount namespace",
  },
  "docker/runtime": {
    kind: "effect",
    note: "a Docker image's Entrypoint, Cmd, Env and WorkingDir apply (needed by --image_providers=docker)",
  },
  "cgroups/all": {
    kind: "always",
    note: "ucr uses the cpu, cpuacct, memory, pids and devices cgroups for every container (and no others)",
  },
  "cgroups/cpu": { kind: "always", note: "cpus are enforced with the cpu cgroup" },
  "cgroups/mem": { kind: "always", note: "mem is enforced with the memory cgroup; an OOM kill ends the container" },
  "cgroups/pids": { kind: "always", note: "every container has a pids cgroup, limited by --default_container_pids_limit" },
  "cgroups/devices": { kind: "always", note: "every container may open only the default devices and --allowed_devices" },
  "namespaces/pid": {
    kind: "effect",
    note: "every container has its own PID namespace; linux_info.share_pid_namespace may share its parent's (or the agent's)",
  },
  "namespaces/ipc": {
    kind: "effect",
    note: "every top-level container has its own IPC namespace; linux_info.ipc_mode and shm_size may change it",
  },
  "network/cni": { kind: "effect", note: "containers may join CNI networks (container.network_infos)" },
  "linux/capabilities": {
    kind: "effect",
    note: "containers may ask for capabilities (linux_info.effective_capabilities, bounding_capabilities) within --bounding_capabilities",
  },
  "linux/seccomp": {
    kind: "effect",
    note: "containers may name a seccomp profile in --seccomp_config_dir or run unconfined (linux_info.seccomp)",
  },
  "linux/nnp": { kind: "always", note: "no_new_privs is set for every container" },
  "linux/devices": { kind: "effect", note: "the --allowed_devices are made in the /dev of containers with an image" },
  "volume/image": { kind: "always", note: "image volumes are mounted read-only" },
  "volume/host_path": { kind: "always", note: "host path volumes are bound (mount_propagation honoured)" },
  "volume/sandbox_path": { kind: "always", note: "sandbox path volumes (SELF, and PARENT for nested containers) are bound" },
  environment_secret: { kind: "effect", note: "environment variables of type SECRET with a VALUE secret are set" },
  "appc/runtime": {
    kind: "unsupported",
    note:
      "an Appc image's app (exec, environment, working directory) is not applied: " +
      "Appc images give their rootfs only, so give the command",
  },
  "disk/xfs": { kind: "unsupported", note: "XFS project quotas are not implemented; ucr measures disk use with du (disk/du)" },
  "filesystem/shared": { kind: "unsupported", note: "Mesos' deprecated shared-filesystem isolator is not implemented; use volumes" },
  "filesystem/windows": { kind: "unsupported", note: "Windows isolators do not apply on Linux" },
  "windows/cpu": { kind: "unsupported", note: "Windows isolators do not apply on Linux" },
  "windows/mem": { kind: "unsupported", note: "Windows isolators do not apply on Linux" },
  "docker/volume": { kind: "unsupported", note: "Docker volume drivers (dvdcli) are not supported" },
  "cgroups/blkio": { kind: "unsupported", note: "ucr does not use the blkio cgroup (no block I/O limits or statistics)" },
  "cgroups/hugetlb": { kind: "unsupported", note: "ucr does not use the hugetlb cgroup" },
  "cgroups/net_cls": { kind: "unsupported", note: "ucr does not use the net_cls cgroup" },
  "cgroups/perf_event": { kind: "unsupported", note: "ucr does not use the perf_event cgroup" },
  "cgroups/cpuset": { kind: "unsupported", note: "ucr does not use the cpuset cgroup" },
  "network/port_mapping": {
    kind: "unsupported",
    note: "the port_mapping network isolator is not implemented; use network/cni with a portmap plugin",
  },
  "network/ports": {
    kind: "unsupported",
    note: "listening ports are not checked against the container's port resources (Mesos does not run it for standalone containers either)",
  },
  "gpu/nvidia": { kind: "unsupported", note: "GPUs are not supported" },
  "volume/secret": {
    kind: "unsupported",
    note: "secret volumes are not supported (no secret resolver; Mesos does not run it for standalone containers either)",
  },
  "volume/csi": { kind: "unsupported", note: "CSI volumes are not supported (Mesos does not run it for standalone containers either)" },
};

/**
 * Why `--isolation=names` cannot be run, naming the first isolator ucr does not implement
 * (or does not know), or undefined.
 */
export function isolationProblem(names: readonly string[]): string | undefined {
  for (const name of names) {
    const isolator = ISOLATORS[name];
    if (!isolator) return `unknown isolator '${name}'`;
    if (isolator.kind === "unsupported") return `isolator '${name}' is not supported by ucr: ${isolator.note}`;
  }
  return undefined;
}

/** The start-up log line for each named isolator: what it does here. */
export function isolatorLines(names: readonly string[]): string[] {
  return names.map((name) => {
    const isolator = ISOLATORS[name]!;
    return isolator.kind === "always"
      ? `isolator ${name}: ucr does this for every container anyway: ${isolator.note}`
      : `isolator ${name}: ${isolator.note}`;
  });
}
