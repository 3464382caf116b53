// errno numbers to their names (Linux, same on x86_64 and arm64 for these), and the Error
// every libc call throws: it names the call, what it was called on, and the errno.
import { UcrError } from "../errors.ts";

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  15: "ENOTBLK",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  31: "EMLINK",
  32: "EPIPE",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  95: "EOPNOTSUPP",
  110: "ETIMEDOUT",
  116: "ESTALE",
};

export function errnoName(errno: number): string {
  return NAMES[errno] ?? `errno ${errno}`;
}

export class SysError extends UcrError {
  readonly code: string;
  constructor(
    readonly call: string,
    readonly errno: number,
    detail: string,
    what?: string,
  ) {
    super("internal", `${call}(${what ?? ""}) failed: ${errnoName(errno)} (${detail})`);
    this.code = errnoName(errno);
  }
}
