// Whether this process runs the compiled binary (its modules embedded under /$bunfs) or the
// sources; apart from version.ts, so the init stage's bundle does not carry package.json.
/** True when running as the `bun build --compile` executable rather than from source. */
export function isCompiled(): boolean {
  return import.meta.url.startsWith("file:///$bunfs/") || Bun.main.startsWith("/$bunfs/");
}
