// Native copy threads: bytes from one descriptor to another with blocking reads and writes, in
// a thread of its own, for a pseudo-terminal master the launcher holds. Bun reads a terminal
// without blocking but cannot write to one so (its writer blocks the event loop when the
// workload does not read its terminal, and O_NONBLOCK on the master races Bun's own reader,
// which then fails with EAGAIN: both measured). So the launcher talks to pipes, which Bun
// handles without blocking, and a pump thread per direction moves the bytes to and from the
// master. Compiled once per process by Bun's embedded TinyCC, as spawn.ts's native sequence.
import { dlopen } from "bun:ffi";
import { addressesOf, compileC } from "./tcc.ts";

const SOURCE = `
static long (*f_read)(int, void *, unsigned long);
static long (*f_write)(int, const void *, unsigned long);
static int (*f_close)(int);
static int (*f_create)(unsigned long *, const void *, void *(*)(void *), void *);
static int (*f_detach)(unsigned long);
static int (*f_sigmask)(int, const void *, void *);
static int *(*f_errno)(void);

void ucr_pump_init(void **f) {
  f_read = f[0];
  f_write = f[1];
  f_close = f[2];
  f_create = f[3];
  f_detach = f[4];
  f_sigmask = f[5];
  f_errno = f[6];
}

static void *pump(void *arg) {
  long v = (long)arg;
  int from = (int)(v >> 32), to = (int)(v & 0xffffffffL);
  char buf[16384];
  long n, off, w;
  for (;;) {
    n = f_read(from, buf, sizeof buf);
    if (n < 0 && *f_errno() == 4) continue;
    if (n <= 0) break;
    for (off = 0; off < n; off += w) {
      w = f_write(to, buf + off, n - off);
      if (w < 0 && *f_errno() == 4) { w = 0; continue; }
      if (w <= 0) goto done;
    }
  }
done:
  f_close(from);
  f_close(to);
  return 0;
}

int ucr_pump_start(int from, int to) {
  unsigned long all[16], old[16], t;
  int i, rc;
  for (i = 0; i < 16; i++) all[i] = ~0UL;
  f_sigmask(0, all, old);
  rc = f_create(&t, 0, pump, (void *)(((long)from << 32) | (unsigned int)to));
  f_sigmask(2, old, 0);
  if (rc == 0) f_detach(t);
  return rc;
}
`;

let start: ((from: number, to: number) => number) | undefined;

function load(): (from: number, to: number) => number {
  if (start) return start;
  const libc = dlopen("libc.so.6", {
    read: { args: ["i32", "ptr", "u64"], returns: "i64" },
    write: { args: ["i32", "ptr", "u64"], returns: "i64" },
    close: { args: ["i32"], returns: "i32" },
    pthread_create: { args: ["ptr", "ptr", "ptr", "ptr"], returns: "i32" },
    pthread_detach: { args: ["u64"], returns: "i32" },
    pthread_sigmask: { args: ["i32", "ptr", "ptr"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
  });
  const s = libc.symbols;
  const native = compileC("the pump threads", SOURCE, {
    ucr_pump_init: { args: ["ptr"], returns: "void" },
    ucr_pump_start: { args: ["i32", "i32"], returns: "i32" },
  });
  native.symbols.ucr_pump_init(
    addressesOf([
      ["read", s.read],
      ["write", s.write],
      ["close", s.close],
      ["pthread_create", s.pthread_create],
      ["pthread_detach", s.pthread_detach],
      ["pthread_sigmask", s.pthread_sigmask],
      ["__errno_location", s.__errno_location],
    ]),
  );
  start = native.symbols.ucr_pump_start as (from: number, to: number) => number;
  return start;
}

/**
 * Starts a thread that copies `from` to `to` until `from` ends or `to` fails, then closes
 * both: both descriptors now belong to the thread. Every signal is blocked in it.
 * @public loaded lazily by runtime/launcher.ts
 */
export function startPump(from: number, to: number): void {
  const rc = load()(from, to);
  if (rc !== 0) throw new Error(`cannot start a pump thread (fd ${from} -> ${to}): pthread_create returned ${rc}`);
}
