// Native code compiled at run time by bun:ffi's embedded TinyCC, for what must run with no
// JavaScript on its thread (spawn.ts, pump.ts, child.ts). The source is read from a memfd (no
// file on disk), compiled without headers or libc (-nostdlib): libc's functions are handed in
// as pointers.
import { cc, dlopen, type FFIFunction, type Library } from "bun:ffi";
import { closeSync, writeSync } from "node:fs";

const libc = dlopen("libc.so.6", { memfd_create: { args: ["ptr", "u32"], returns: "i32" } });

/** Compiles `source` (`what` names it in errors) and binds `symbols`. */
export function compileC<S extends Record<string, FFIFunction>>(what: string, source: string, symbols: S): Library<S> {
  const fd = libc.symbols.memfd_create(Buffer.from(`ucr-${what.replace(/\W+/g, "-")}\0`), 1 /* MFD_CLOEXEC */);
  if (fd < 0) throw new Error(`cannot compile ${what}: memfd_create failed`);
  try {
    writeSync(fd, source);
    return cc({ source: `/proc/self/fd/${fd}`, flags: ["-nostdlib"], symbols }) as Library<S>;
  } catch (err) {
    throw new Error(`cannot compile ${what} (bun:ffi cc): ${(err as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/** The addresses of libc functions bound with dlopen, by name, for a table the native code reads. */
export function addressesOf(fns: ReadonlyArray<readonly [string, unknown]>): BigUint64Array {
  return new BigUint64Array(
    fns.map(([name, fn]) => {
      const p = (fn as { ptr?: number | bigint }).ptr;
      if (p === undefined || p === 0 || p === 0n) throw new Error(`no address for libc's ${name}`);
      return BigInt(p);
    }),
  );
}
