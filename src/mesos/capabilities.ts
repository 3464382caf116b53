// Linux capabilities by name (Mesos' CapabilityInfo names: the kernel's without CAP_) and the
// default set every container gets; sets are sorted arrays of capability numbers.

/** Index = the kernel's capability number (linux/capability.h); Mesos' enum value is 1000 + it. */
export const CAPABILITY_NAMES = [
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_ADMIN",
  "NET_RAW",
  "IPC_LOCK",
  "IPC_OWNER",
  "SYS_MODULE",
  "SYS_RAWIO",
  "SYS_CHROOT",
  "SYS_PTRACE",
  "SYS_PACCT",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_NICE",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "MKNOD",
  "LEASE",
  "AUDIT_WRITE",
  "AUDIT_CONTROL",
  "SETFCAP",
  "MAC_OVERRIDE",
  "MAC_ADMIN",
  "SYSLOG",
  "WAKE_ALARM",
  "BLOCK_SUSPEND",
  "AUDIT_READ",
  "PERFMON",
  "BPF",
  "CHECKPOINT_RESTORE",
] as const;
export type CapabilityName = (typeof CAPABILITY_NAMES)[number];

/**
 * What every container gets unless its request and the agent's flags say otherwise: podman's
 * shipped set (containers.conf), Docker's 14 without NET_RAW, MKNOD and AUDIT_WRITE. Our
 * containers share the host's network namespace (as Mesos' do), where NET_RAW would let one
 * sniff and forge the host's traffic; and there is no device cgroup yet to stop a MKNOD'd
 * block device from being opened.
 */
export const DEFAULT_CAPABILITIES: readonly CapabilityName[] = [
  "CHOWN",
  "DAC_OVERRIDE",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "NET_BIND_SERVICE",
  "SYS_CHROOT",
  "SETFCAP",
];

function capabilityNumber(name: CapabilityName): number {
  return CAPABILITY_NAMES.indexOf(name);
}

/** Sorted, without duplicates. */
export function capabilitySet(names: readonly CapabilityName[]): number[] {
  return [...new Set(names.map(capabilityNumber))].sort((a, b) => a - b);
}

/** Mesos' rendering of a set (stout's stringify of std::set<Capability>): `{ CHOWN, KILL }`. */
export function formatCapabilities(set: readonly number[]): string {
  return `{ ${set.map((n) => CAPABILITY_NAMES[n] ?? `CAP_${n}`).join(", ")} }`;
}

/** The capability numbers in a mask such as /proc/self/status' CapBnd (hex). */
export function capabilitiesOfMask(mask: bigint): number[] {
  const out: number[] = [];
  for (let n = 0; n < 64; n++) if ((mask >> BigInt(n)) & 1n) out.push(n);
  return out;
}
