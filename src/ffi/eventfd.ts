// eventfd(2) for cgroup v1 notifications (the memory controller's OOM events): the kernel
// signals the eventfd, the agent's event loop reads it like a pipe. Its own dlopen so the
// init stage's libc table (libc.ts) stays as it is.
import { dlopen, read } from "bun:ffi";
import { SysError } from "./errno.ts";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
  eventfd: { args: ["u32", "i32"], returns: "i32" },
});

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

/**
 * A new non-blocking, close-on-exec eventfd. Non-blocking matters: Bun reads it through
 * its poller (Bun.file(fd).stream()), which never parks a thread on it.
 */
export function eventfd(): number {
  const fd = libc.symbols.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd === -1) {
    const e = read.i32(libc.symbols.__errno_location()!);
    throw new SysError("eventfd", e, libc.symbols.strerror(e)?.toString() ?? "unknown error");
  }
  return fd;
}
