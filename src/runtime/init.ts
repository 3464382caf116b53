// `ucr __init`: the container init stage. The agent will start this binary as `ucr __init`
// to unshare namespaces, mount the rootfs, pivot_root and exec the workload, so the HTTP
// server's own process never changes its namespaces. Until the container runtime lands,
// it refuses to run rather than pretend.

export function initMain(_args: readonly string[]): number {
  process.stderr.write(
    "ucr __init: the container init stage is started by the agent when it launches a container;\n" +
      "this build has no container runtime yet, so there is nothing to initialise.\n",
  );
  return 2;
}
