// What the confinement tests share: the capabilities every container gets by default, as the
// tests expect them (written out here, not taken from src/), and their agents' cleanup.
import { expect } from "bun:test";
import type { RunningAgent } from "./agent.ts";

/** podman's default set, which ucr gives every container unless asked otherwise. */
export const DEFAULT_SET = [
  "CHOWN",
  "DAC_OVERRIDE",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "NET_BIND_SERVICE",
  "SYS_CHROOT",
  "SETFCAP",
];

/** Kills, waits for and removes every top-level container of each agent (nested ones go with them), then stops it. */
export async function removeContainersAndStop(agents: ReadonlyArray<RunningAgent | undefined>): Promise<void> {
  for (const a of agents) {
    if (!a) continue;
    const list = (await (await a.call({ type: "GET_CONTAINERS", get_containers: { show_standalone: true } })).json()) as {
      get_containers: { containers: Array<{ container_id: { value: string; parent?: unknown } }> };
    };
    for (const c of list.get_containers.containers.filter((x) => !x.container_id.parent)) {
      const ref = { container_id: c.container_id };
      await a.call({ type: "KILL_CONTAINER", kill_container: ref });
      await a.call({ type: "WAIT_CONTAINER", wait_container: ref });
      await a.call({ type: "REMOVE_CONTAINER", remove_container: ref });
    }
    expect(await a.stop()).toBe(0);
  }
}
