// Mesos' text forms of durations ("30secs", "1mins") and byte sizes ("64GB"), parsed and
// printed the way stout does so GET_FLAGS shows what a Mesos agent would.

const DURATION_UNITS: ReadonlyArray<readonly [string, number]> = [
  ["ns", 1],
  ["us", 1e3],
  ["ms", 1e6],
  ["secs", 1e9],
  ["mins", 60e9],
  ["hrs", 3600e9],
  ["days", 86400e9],
  ["weeks", 604800e9],
];

const NUMBER_PREFIX = /^(\d+(?:\.\d*)?|\.\d+)(.*)$/;

/** Parses "30secs", "1.5mins", "100ms" into nanoseconds; throws a message on bad input. */
export function parseDuration(text: string): number {
  const m = NUMBER_PREFIX.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a duration (expected a number and a unit, e.g. 30secs)`);
  const unit = DURATION_UNITS.find(([name]) => name === m[2]);
  if (!unit) {
    throw new Error(`'${text}' has unknown unit '${m[2]}' (use one of ${DURATION_UNITS.map(([n]) => n).join(", ")})`);
  }
  return Math.round(Number(m[1]) * unit[1]);
}

/** Prints nanoseconds in the largest unit not above the value, as stout's operator<< does. */
export function formatDuration(ns: number): string {
  let chosen = DURATION_UNITS[0]!;
  for (const unit of DURATION_UNITS) if (ns >= unit[1]) chosen = unit;
  return `${Number((ns / chosen[1]).toPrecision(15))}${chosen[0]}`;
}

const BYTE_UNITS: ReadonlyArray<readonly [string, number]> = [
  ["B", 1],
  ["KB", 1024],
  ["MB", 1024 ** 2],
  ["GB", 1024 ** 3],
  ["TB", 1024 ** 4],
];

/** Parses "64GB", "512MB", "100B" (binary multiples, as stout's Bytes) into bytes. */
export function parseBytes(text: string): number {
  const m = NUMBER_PREFIX.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a size (expected a number and a unit, e.g. 64GB)`);
  const unit = BYTE_UNITS.find(([name]) => name === m[2]);
  if (!unit) {
    throw new Error(`'${text}' has unknown unit '${m[2]}' (use one of ${BYTE_UNITS.map(([n]) => n).join(", ")})`);
  }
  return Math.round(Number(m[1]) * unit[1]);
}

/** Prints a byte count in the largest unit that loses nothing ("64GB", "1536KB", "7B"). */
export function formatBytes(bytes: number): string {
  let chosen = BYTE_UNITS[0]!;
  for (const unit of BYTE_UNITS) if (bytes !== 0 && bytes % unit[1] === 0) chosen = unit;
  return `${bytes / chosen[1]}${chosen[0]}`;
}

/** Human-friendly size for logs and build output: "94.2 MiB". */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}
