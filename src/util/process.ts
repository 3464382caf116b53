// Process helpers shared by the store (whose staging belongs to live pulls) and the
// containers table (whose workloads may outlive the agent).

/** Does `pid` name a live process (one we may not signal counts as live)? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
