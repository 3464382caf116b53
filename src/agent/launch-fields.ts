// What ucr does with each field Mesos defines for LAUNCH_CONTAINER (agent.proto's
// Call.LaunchContainer and every message it reaches in mesos.proto), by message and field
// name. Nothing is accepted without effect: a field is applied, refused (400, or 501 for what
// a later ucr brings), or sits inside a refused field. The rules are launch-rules.ts; a test
// walks the protobuf descriptors so a field missing here fails it.

export type FieldFate =
  /** Applied; how (and, after "unless", when it is refused instead). */
  | { applied: string }
  /** Refused whenever it is given; why. */
  | { refused: string }
  /** Only reachable inside this refused field. */
  | { within: string };

const L = "mesos.v1.agent.Call.LaunchContainer";
const within = (field: string): FieldFate => ({ within: field });

export const LAUNCH_FIELDS: Readonly<Record<string, FieldFate>> = {
  [`${L}.container_id`]: { applied: "the container's name; with a parent, it is nested" },
  [`${L}.command`]: { applied: "what runs (docker/runtime's rules with an image)" },
  [`${L}.resources`]: { applied: "cpus and mem become cgroup limits, disk is measured; anything else is refused" },
  [`${L}.limits`]: { applied: "cpus and mem limits win over the resources; other names are refused" },
  [`${L}.container`]: { applied: "type MESOS only (DOCKER is refused)" },
  "mesos.v1.ContainerID.value": { applied: "checked as Mesos checks it" },
  "mesos.v1.ContainerID.parent": { applied: "the parent, which must be running" },

  "mesos.v1.CommandInfo.uris": { applied: "fetched into the sandbox before the command runs" },
  "mesos.v1.CommandInfo.URI.value": { applied: "http(s), file:// or an absolute path" },
  "mesos.v1.CommandInfo.URI.executable": { applied: "chmod +x" },
  "mesos.v1.CommandInfo.URI.extract": { applied: "archives are extracted unless false" },
  "mesos.v1.CommandInfo.URI.cache": {
    applied: "every URI is fetched afresh: ucr has no fetcher cache, and the sandbox gets the same file",
  },
  "mesos.v1.CommandInfo.URI.output_file": { applied: "the name (and subdirectory) in the sandbox" },
  "mesos.v1.CommandInfo.environment": { applied: "after MESOS_SANDBOX and the image's Env" },
  "mesos.v1.CommandInfo.shell": { applied: "true runs /bin/sh -c value" },
  "mesos.v1.CommandInfo.value": { applied: "the shell command or the executable" },
  "mesos.v1.CommandInfo.arguments": { applied: "argv (shell false)" },
  "mesos.v1.CommandInfo.user": { applied: "the user, with --switch_user (Mesos' flag; without it the agent's user)" },
  "mesos.v1.Environment.variables": { applied: "set in order, later wins" },
  "mesos.v1.Environment.Variable.name": { applied: "the name" },
  "mesos.v1.Environment.Variable.type": { applied: "VALUE; SECRET with environment_secret; UNKNOWN is refused (Mesos)" },
  "mesos.v1.Environment.Variable.value": { applied: "the value (VALUE only, as Mesos)" },
  "mesos.v1.Environment.Variable.secret": { applied: "a VALUE secret's bytes, with environment_secret; refused without it" },
  "mesos.v1.Secret.type": { applied: "VALUE; REFERENCE is refused: ucr has no secret resolver" },
  "mesos.v1.Secret.reference": { applied: "refused with its name: ucr has no secret resolver" },
  "mesos.v1.Secret.Reference.name": within("mesos.v1.Secret.reference"),
  "mesos.v1.Secret.Reference.key": within("mesos.v1.Secret.reference"),
  "mesos.v1.Secret.value": { applied: "the secret's bytes" },
  "mesos.v1.Secret.Value.data": { applied: "base64 in JSON, as protobuf writes bytes" },

  "mesos.v1.Resource.name": { applied: "cpus, mem, disk; gpus, ports and others refused" },
  "mesos.v1.Resource.type": { applied: "SCALAR (the three are scalars)" },
  "mesos.v1.Resource.scalar": { applied: "the amount" },
  "mesos.v1.Value.Scalar.value": { applied: "checked (finite, not negative, bounded)" },
  "mesos.v1.Resource.ranges": { refused: "only scalar resources are applied" },
  "mesos.v1.Value.Ranges.range": within("mesos.v1.Resource.ranges"),
  "mesos.v1.Value.Range.begin": within("mesos.v1.Resource.ranges"),
  "mesos.v1.Value.Range.end": within("mesos.v1.Resource.ranges"),
  "mesos.v1.Resource.set": { refused: "only scalar resources are applied" },
  "mesos.v1.Value.Set.item": within("mesos.v1.Resource.set"),
  "mesos.v1.Resource.role": { applied: '"*" only; a reserved role is refused (Mesos)' },
  "mesos.v1.Resource.allocation_info": { refused: "only Mesos' master allocates resources to roles" },
  "mesos.v1.Resource.AllocationInfo.role": within("mesos.v1.Resource.allocation_info"),
  "mesos.v1.Resource.reservation": { refused: "standalone containers cannot use reserved resources (Mesos)" },
  "mesos.v1.Resource.reservations": { refused: "standalone containers cannot use reserved resources (Mesos)" },
  "mesos.v1.Resource.ReservationInfo.*": within("mesos.v1.Resource.reservations"),
  "mesos.v1.Resource.disk": { applied: "nothing of it is: persistence, volume and source are refused" },
  "mesos.v1.Resource.DiskInfo.persistence": { refused: "persistent volumes are not for standalone containers (Mesos)" },
  "mesos.v1.Resource.DiskInfo.Persistence.*": within("mesos.v1.Resource.DiskInfo.persistence"),
  "mesos.v1.Resource.DiskInfo.volume": { refused: "use container.volumes" },
  "mesos.v1.Resource.DiskInfo.source": { refused: "PATH and MOUNT disks are not supported" },
  "mesos.v1.Resource.DiskInfo.Source.*": within("mesos.v1.Resource.DiskInfo.source"),
  "mesos.v1.Resource.DiskInfo.Source.Path.*": within("mesos.v1.Resource.DiskInfo.source"),
  "mesos.v1.Resource.DiskInfo.Source.Mount.*": within("mesos.v1.Resource.DiskInfo.source"),
  "mesos.v1.Resource.revocable": { refused: "standalone containers cannot use revocable resources (Mesos)" },
  "mesos.v1.Resource.shared": { refused: "only persistent volumes are shared" },
  "mesos.v1.Resource.provider_id": { refused: "resource providers (CSI storage) are not supported" },
  "mesos.v1.ResourceProviderID.value": within("mesos.v1.Resource.provider_id"),

  "mesos.v1.ContainerInfo.type": { applied: "MESOS; DOCKER is refused (Mesos' answer)" },
  "mesos.v1.ContainerInfo.volumes": { applied: "mounted after the sandbox" },
  "mesos.v1.ContainerInfo.hostname": { applied: "the UTS name, /etc/hostname and /etc/hosts (top-level containers)" },
  "mesos.v1.ContainerInfo.docker": { refused: "DockerInfo is for Mesos' Docker containerizer" },
  "mesos.v1.ContainerInfo.DockerInfo.*": within("mesos.v1.ContainerInfo.docker"),
  "mesos.v1.ContainerInfo.DockerInfo.PortMapping.*": within("mesos.v1.ContainerInfo.docker"),
  "mesos.v1.Parameter.*": within("mesos.v1.ContainerInfo.docker"),
  "mesos.v1.Parameters.*": within("mesos.v1.Volume.Source.docker_volume"),
  "mesos.v1.ContainerInfo.mesos": { applied: "its image" },
  "mesos.v1.ContainerInfo.MesosInfo.image": { applied: "the container's rootfs" },
  "mesos.v1.ContainerInfo.network_infos": { applied: "CNI networks (network/cni)" },
  "mesos.v1.ContainerInfo.linux_info": { applied: "field by field" },
  "mesos.v1.ContainerInfo.rlimit_info": { applied: "setrlimit before exec, with posix/rlimits; refused without it" },
  "mesos.v1.ContainerInfo.tty_info": {
    applied: "a pseudo-terminal from the container's own devpts as its stdio, kept by the launcher for ATTACH_CONTAINER_*",
  },
  "mesos.v1.TTYInfo.window_size": { applied: "the terminal's size before exec (absent: the kernel's 0x0, as Mesos)" },
  "mesos.v1.TTYInfo.WindowSize.rows": { applied: "rows, at most 65535 (struct winsize)" },
  "mesos.v1.TTYInfo.WindowSize.columns": { applied: "columns, at most 65535 (struct winsize)" },

  "mesos.v1.Image.type": { applied: "DOCKER (with --image_providers=docker) or APPC (appc)" },
  "mesos.v1.Image.appc": { applied: "simple discovery" },
  "mesos.v1.Image.Appc.name": { applied: "the name" },
  "mesos.v1.Image.Appc.id": { applied: "the image ID, checked" },
  "mesos.v1.Image.Appc.labels": { applied: "version, os, arch for discovery" },
  "mesos.v1.Image.docker": { applied: "a registry or archive image" },
  "mesos.v1.Image.Docker.name": { applied: "the reference" },
  "mesos.v1.Image.Docker.credential": { refused: "deprecated since Mesos 1.3 and never used by Mesos" },
  "mesos.v1.Credential.*": within("mesos.v1.Image.Docker.credential"),
  "mesos.v1.Image.Docker.config": { applied: "registry credentials for this pull (a VALUE secret holding a Docker config.json)" },
  "mesos.v1.Image.cached": { applied: "false fetches the manifest again (Docker); refused for Appc" },
  "mesos.v1.Labels.labels": { applied: "Appc labels, network labels" },
  "mesos.v1.Label.key": { applied: "the key" },
  "mesos.v1.Label.value": { applied: "the value" },

  "mesos.v1.Volume.mode": { applied: "RO makes the bind read-only (image volumes must be RO)" },
  "mesos.v1.Volume.container_path": { applied: "absolute in the container, or relative to the sandbox" },
  "mesos.v1.Volume.host_path": { applied: "legacy form: absolute is a host path, relative a path in the sandbox" },
  "mesos.v1.Volume.image": { applied: "mounted read-only (Docker or Appc)" },
  "mesos.v1.Volume.source": { applied: "HOST_PATH and SANDBOX_PATH; DOCKER_VOLUME, SECRET and CSI_VOLUME refused" },
  "mesos.v1.Volume.Source.type": { applied: "HOST_PATH, SANDBOX_PATH; the others refused" },
  "mesos.v1.Volume.Source.host_path": { applied: "a bind of the host path" },
  "mesos.v1.Volume.Source.HostPath.path": { applied: "absolute, must exist" },
  "mesos.v1.Volume.Source.HostPath.mount_propagation": { applied: "its mode" },
  "mesos.v1.MountPropagation.mode": {
    applied: "HOST_TO_CONTAINER (rslave, the default) or BIDIRECTIONAL (rshared, under a shared host mount)",
  },
  "mesos.v1.Volume.Source.sandbox_path": { applied: "SELF, or PARENT for a nested container" },
  "mesos.v1.Volume.Source.SandboxPath.type": { applied: "SELF or PARENT" },
  "mesos.v1.Volume.Source.SandboxPath.path": { applied: "relative, inside that sandbox" },
  "mesos.v1.Volume.Source.docker_volume": { refused: "Docker volume drivers are not supported" },
  "mesos.v1.Volume.Source.DockerVolume.*": within("mesos.v1.Volume.Source.docker_volume"),
  "mesos.v1.Volume.Source.secret": { refused: "secret volumes are not supported" },
  "mesos.v1.Volume.Source.csi_volume": { refused: "CSI volumes are not supported" },
  "mesos.v1.Volume.Source.CSIVolume.*": within("mesos.v1.Volume.Source.csi_volume"),
  "mesos.v1.Volume.Source.CSIVolume.StaticProvisioning.*": within("mesos.v1.Volume.Source.csi_volume"),
  "mesos.v1.Volume.Source.CSIVolume.VolumeCapability.*": within("mesos.v1.Volume.Source.csi_volume"),
  "mesos.v1.Volume.Source.CSIVolume.VolumeCapability.AccessMode.*": within("mesos.v1.Volume.Source.csi_volume"),
  "mesos.v1.Volume.Source.CSIVolume.VolumeCapability.MountVolume.*": within("mesos.v1.Volume.Source.csi_volume"),

  "mesos.v1.NetworkInfo.name": { applied: "the CNI network" },
  "mesos.v1.NetworkInfo.ip_addresses": { applied: "requested addresses (CNI 'ips')" },
  "mesos.v1.NetworkInfo.IPAddress.protocol": { applied: "IPv4 or IPv6" },
  "mesos.v1.NetworkInfo.IPAddress.ip_address": { applied: "a static address" },
  "mesos.v1.NetworkInfo.groups": { applied: "passed to the plugins (Mesos' args)" },
  "mesos.v1.NetworkInfo.labels": { applied: "passed to the plugins (Mesos' args)" },
  "mesos.v1.NetworkInfo.port_mappings": { applied: "portmap plugin" },
  "mesos.v1.NetworkInfo.PortMapping.host_port": { applied: "0 takes one from --resources ports" },
  "mesos.v1.NetworkInfo.PortMapping.container_port": { applied: "the port inside" },
  "mesos.v1.NetworkInfo.PortMapping.protocol": { applied: "tcp or udp" },

  "mesos.v1.LinuxInfo.capability_info": { applied: "as effective_capabilities (deprecated), with linux/capabilities" },
  "mesos.v1.LinuxInfo.bounding_capabilities": { applied: "the bounding set, with linux/capabilities" },
  "mesos.v1.LinuxInfo.effective_capabilities": { applied: "effective, permitted and ambient, with linux/capabilities" },
  "mesos.v1.CapabilityInfo.capabilities": { applied: "kernel names without CAP_" },
  "mesos.v1.LinuxInfo.seccomp": { applied: "a profile or unconfined, with linux/seccomp" },
  "mesos.v1.SeccompInfo.profile_name": { applied: "a file in --seccomp_config_dir" },
  "mesos.v1.SeccompInfo.unconfined": { applied: "no filter" },
  "mesos.v1.LinuxInfo.share_pid_namespace": { applied: "the parent's (or the agent's) PID namespace, with namespaces/pid" },
  "mesos.v1.LinuxInfo.ipc_mode": { applied: "PRIVATE or SHARE_PARENT, with namespaces/ipc" },
  "mesos.v1.LinuxInfo.shm_size": { applied: "size of a PRIVATE /dev/shm in MB, with namespaces/ipc" },
  "mesos.v1.LinuxInfo.share_cgroups": { applied: "a direct child of a top-level container may have its own cgroups" },

  "mesos.v1.RLimitInfo.rlimits": { applied: "each set before exec" },
  "mesos.v1.RLimitInfo.RLimit.type": { applied: "RLMT_AS ... RLMT_STACK; UNKNOWN refused" },
  "mesos.v1.RLimitInfo.RLimit.soft": { applied: "with hard; neither is unlimited" },
  "mesos.v1.RLimitInfo.RLimit.hard": { applied: "with soft; neither is unlimited" },
};

/** The fate of `typeName.field`: its own entry, or its message's `Type.*`. */
export function fateOf(typeName: string, field: string): FieldFate | undefined {
  return LAUNCH_FIELDS[`${typeName}.${field}`] ?? LAUNCH_FIELDS[`${typeName}.*`];
}
