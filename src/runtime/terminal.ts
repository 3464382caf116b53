// The workload's pseudo-terminal (tty_info, a TTY session), made by stage 2 inside the
// container so it comes from the container's own devpts (the workload sees /dev/pts/N), and
// its master handed to the launcher (SCM_RIGHTS on CONSOLE_FD), which keeps it.
import { closeSync } from "node:fs";
import { O_CLOEXEC, O_NOCTTY, O_PATH, O_RDWR, close, dup2, openat } from "../ffi/libc.ts";
import { fchown, newSession, openPtyPeer, sendFd, setControllingTerminal, setWindowSize, unlockPty, type WindowSize } from "../ffi/tty.ts";
import { kindOf, openInRoot } from "./inroot.ts";

/** fd 4 of a stage 2 that makes a terminal: where the master goes (the launcher holds the other end). */
const CONSOLE_FD = 4;

const PTMX = { major: 5, minor: 2 };

export interface Terminal {
  master: number;
  slave: number;
  /** N of /dev/pts/N in the container. */
  index: number;
}

/**
 * Opens the container's /dev/ptmx (found inside `root`, its links followed inside it) and makes
 * a terminal of `window` size whose slave belongs to `owner`. The node is opened O_PATH first
 * and must be the ptmx device (5:2): a workload's root may have put another device there, which
 * must not be opened by us (stage 2 is in none of the container's cgroups yet, its devices
 * cgroup included). It is then opened for real through `proc` (the host's /proc, held from
 * before the container's root was entered), from that very descriptor.
 */
export function makeTerminal(root: number, proc: number, window: WindowSize | undefined, owner: { uid: number; gid: number }): Terminal {
  let node;
  try {
    node = openInRoot(root, "/dev/ptmx", { flags: O_PATH });
  } catch (err) {
    throw new Error(`cannot find the container's /dev/ptmx for its terminal: ${(err as Error).message}`);
  }
  let master: number;
  try {
    // glibc's dev_t encoding (gnu_dev_major, gnu_dev_minor)
    const rdev = BigInt(node.st.rdev);
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n));
    if (!node.st.isCharacterDevice() || major !== PTMX.major || minor !== PTMX.minor) {
      const what = node.st.isCharacterDevice() ? `the character device ${major}:${minor}` : kindOf(node.st);
      throw new Error(`the container's /dev/ptmx (${node.path}) is ${what}, not the pseudo-terminal multiplexer (5:2)`);
    }
    master = openat(proc, `self/fd/${node.fd}`, O_RDWR | O_NOCTTY | O_CLOEXEC);
  } finally {
    close(node.fd);
  }
  try {
    const index = unlockPty(master);
    const slave = openPtyPeer(master);
    try {
      if (window) setWindowSize(master, window);
      if (owner.uid !== 0 || owner.gid !== 0) fchown(slave, owner.uid, owner.gid);
    } catch (err) {
      close(slave);
      throw err;
    }
    return { master, slave, index };
  } catch (err) {
    close(master);
    throw new Error(`cannot make the container's terminal: ${(err as Error).message}`);
  }
}

/**
 * Makes the terminal this process's controlling terminal and its stdin, stdout and stderr (in a
 * session of its own), and sends the master to the launcher; this process keeps neither end.
 */
export function useTerminal(t: Terminal): void {
  newSession();
  setControllingTerminal(t.slave);
  for (const fd of [0, 1, 2]) dup2(t.slave, fd);
  close(t.slave);
  try {
    sendFd(CONSOLE_FD, t.master, Buffer.from(String(t.index)));
  } finally {
    close(t.master);
    closeSync(CONSOLE_FD);
  }
}
