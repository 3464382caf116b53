// What this build of ucr is. scripts/build.ts replaces the UCR_BUILD_* globals with
// --define; under `bun run` (no build) they are absent and we say "unknown".
import pkg from "../package.json" with { type: "json" };

declare const UCR_BUILD_DATE: string | undefined; // "2026-11-21 23:59:00" (UTC)
declare const UCR_BUILD_TIME: number | undefined; // seconds since the epoch
declare const UCR_BUILD_USER: string | undefined;
declare const UCR_GIT_SHA: string | undefined;

function defined<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined; // not replaced at build time: running from source
  }
}

export interface VersionInfo {
  version: string;
  build_date?: string;
  build_time?: number;
  build_user?: string;
  git_sha?: string;
}

export const VERSION: string = pkg.version;

export function versionInfo(): VersionInfo {
  const info: VersionInfo = { version: VERSION };
  const date = defined(() => UCR_BUILD_DATE);
  const time = defined(() => UCR_BUILD_TIME);
  const user = defined(() => UCR_BUILD_USER);
  const sha = defined(() => UCR_GIT_SHA);
  if (date) info.build_date = date;
  if (typeof time === "number") info.build_time = time;
  if (user) info.build_user = user;
  if (sha) info.git_sha = sha;
  return info;
}
