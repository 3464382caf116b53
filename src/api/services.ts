// What the API edge needs from the agent, and nothing more: handlers are written against these
// interfaces, and the composition (src/compose.ts) hands the agent's parts in.
import type { Container, Exited } from "../agent/container.ts";
import type { LoadedFlags } from "../config/flags.ts";
import type { GcResult } from "../gc/collector.ts";
import type { Puller } from "../images/puller.ts";
import type { DockerStore } from "../images/store.ts";
import type { LaunchContainer } from "../mesos/calls.ts";
import type { ContainerID } from "../mesos/messages.ts";
import type { NetworkStatus } from "../network/cni.ts";

/** The containers table as the container calls use it. */
interface ContainerCalls {
  /** true: launched; false: the ID was already in use. `session`: a LAUNCH_NESTED_CONTAINER_SESSION. */
  launch(call: LaunchContainer, options?: { session?: boolean }): Promise<boolean>;
  /** Resolves once the container is no longer being provisioned. */
  launched(c: Container): Promise<void>;
  get(id: ContainerID): Container | undefined;
  list(): Container[];
  /** Resolves once it exited. */
  wait(id: ContainerID): Promise<Exited>;
  kill(id: ContainerID, signal: number): void;
  remove(id: ContainerID): Promise<void>;
  diskUsed(c: Container): Promise<number | undefined>;
}

export interface AgentServices {
  /** GET_FLAGS' view, and the values the edge itself reads. */
  readonly flags: Pick<LoadedFlags, "shown" | "values">;
  readonly containers: ContainerCalls;
  readonly networks: { status(key: string): NetworkStatus[] | undefined };
  readonly images: { readonly store: DockerStore; readonly puller: Pick<Puller, "pull"> };
  readonly collector: { prune(excluded: Set<string>): Promise<GcResult> };
}
