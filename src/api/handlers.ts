// The dispatcher: one handler per agent::Call type. Handlers get the validated payload, the
// agent's services (services.ts) and the request's wire, and return an Answer (an agent::Response, sent in the encoding
// the client accepts), a bare status, or a text error.
import { VERSION, versionInfo } from "../version.ts";
import type { CallType, Payload } from "../mesos/calls.ts";
import { idKey, type Container, type Exited } from "../agent/container.ts";
import { invalid, notFound } from "../errors.ts";
import { ImageCollector } from "../gc/collector.ts";
import { emptyResponse, textResponse } from "./http.ts";
import type { ContainerID } from "../mesos/messages.ts";
import type { AgentServices } from "./services.ts";
import { answer, answerLater, type Answer, type CallContext, type Message } from "./wire.ts";
import { attachContainerInput, attachContainerOutput, launchNestedContainerSession } from "./streams.ts";

type Answered = Response | Answer;
type Handler<T extends CallType> = (payload: Payload<T>, agent: AgentServices, context: CallContext) => Answered | Promise<Answered>;
type HandlerTable = { [T in CallType]: Handler<T> };

/** Calls that later work fills in answer 501 and say so, never a pretend success. */
function notYet(type: CallType, what: string): Handler<CallType> {
  return () => textResponse(501, `${type} is not implemented in ucr ${VERSION} yet: ${what}`);
}

/** Mesos calls that have no meaning for an agent that runs only standalone containers. */
function notForUcr(type: CallType, why: string): Handler<CallType> {
  return () => textResponse(501, `${type} is not supported by ucr: ${why}`);
}

const NO_PROVIDERS = "ucr has no resource providers";

const HANDLERS: HandlerTable = {
  UNKNOWN: () => textResponse(501, "Call type UNKNOWN is not implemented"),

  GET_HEALTH: () => answer({ type: "GET_HEALTH", get_health: { healthy: true } }),
  GET_FLAGS: (_p, agent) => answer({ type: "GET_FLAGS", get_flags: { flags: agent.flags.shown } }),
  GET_VERSION: () => answer({ type: "GET_VERSION", get_version: { version_info: versionInfo() } }),

  // Truthful for ucr: standalone containers never appear in these (reference 1.10).
  GET_STATE: () =>
    answer({
      type: "GET_STATE",
      get_state: {
        get_tasks: {},
        get_executors: {},
        get_frameworks: {},
      },
    }),
  GET_FRAMEWORKS: () => answer({ type: "GET_FRAMEWORKS", get_frameworks: {} }),
  GET_EXECUTORS: () => answer({ type: "GET_EXECUTORS", get_executors: {} }),
  GET_TASKS: () => answer({ type: "GET_TASKS", get_tasks: {} }),

  GET_METRICS: notYet("GET_METRICS", "metrics are not exported yet"),
  GET_LOGGING_LEVEL: notForUcr("GET_LOGGING_LEVEL", "ucr has no glog verbosity; it logs by --logging_level"),
  SET_LOGGING_LEVEL: notForUcr("SET_LOGGING_LEVEL", "ucr has no glog verbosity; it logs by --logging_level"),
  LIST_FILES: notYet("LIST_FILES", "sandbox browsing is not implemented; read <work_dir>/containers/<id>/ directly"),
  READ_FILE: notYet("READ_FILE", "sandbox browsing is not implemented; read <work_dir>/containers/<id>/ directly"),
  GET_AGENT: notForUcr("GET_AGENT", "ucr does not register with a master and has no AgentInfo"),
  GET_OPERATIONS: notForUcr("GET_OPERATIONS", NO_PROVIDERS),
  GET_RESOURCE_PROVIDERS: notForUcr("GET_RESOURCE_PROVIDERS", NO_PROVIDERS),
  ADD_RESOURCE_PROVIDER_CONFIG: notForUcr("ADD_RESOURCE_PROVIDER_CONFIG", NO_PROVIDERS),
  UPDATE_RESOURCE_PROVIDER_CONFIG: notForUcr("UPDATE_RESOURCE_PROVIDER_CONFIG", NO_PROVIDERS),
  REMOVE_RESOURCE_PROVIDER_CONFIG: notForUcr("REMOVE_RESOURCE_PROVIDER_CONFIG", NO_PROVIDERS),
  MARK_RESOURCE_PROVIDER_GONE: notForUcr("MARK_RESOURCE_PROVIDER_GONE", NO_PROVIDERS),

  // Failures are thrown: the server answers each with the status of its kind (status.ts).
  LAUNCH_CONTAINER: async (p, agent) => emptyResponse((await agent.containers.launch(p)) ? 200 : 202),
  WAIT_CONTAINER: (p, agent) => waitAnswer(agent, p.container_id, "WAIT_CONTAINER", "wait_container"),
  KILL_CONTAINER: (p, agent) => {
    agent.containers.kill(p.container_id, p.signal ?? 9);
    return emptyResponse(200);
  },
  REMOVE_CONTAINER: async (p, agent) => {
    await agent.containers.remove(p.container_id);
    return emptyResponse(200);
  },
  GET_CONTAINERS: async (p, agent) => {
    const shown = agent.containers.list().filter((c) => (c.id.parent ? p.show_nested : p.show_standalone));
    const disk = await Promise.all(shown.map((c) => (c.state === "RUNNING" ? agent.containers.diskUsed(c) : undefined)));
    return answer({
      type: "GET_CONTAINERS",
      get_containers: { containers: shown.map((c, i) => containerInfo(c, disk[i], agent.networks.status(c.key))) },
    });
  },
  // The deprecated *_NESTED_CONTAINER calls: the same, with a parent required.
  LAUNCH_NESTED_CONTAINER: async (p, agent) => {
    nested(p.container_id);
    return emptyResponse((await agent.containers.launch({ ...p, resources: [] })) ? 200 : 202);
  },
  WAIT_NESTED_CONTAINER: (p, agent) => {
    nested(p.container_id);
    return waitAnswer(agent, p.container_id, "WAIT_NESTED_CONTAINER", "wait_nested_container");
  },
  KILL_NESTED_CONTAINER: (p, agent) => {
    nested(p.container_id);
    agent.containers.kill(p.container_id, p.signal ?? 9);
    return emptyResponse(200);
  },
  REMOVE_NESTED_CONTAINER: async (p, agent) => {
    nested(p.container_id);
    await agent.containers.remove(p.container_id);
    return emptyResponse(200);
  },
  // The streaming calls (streams.ts): a session's output, and attaching to a container's I/O.
  LAUNCH_NESTED_CONTAINER_SESSION: (p, agent, context) => launchNestedContainerSession({ ...p, resources: [] }, agent, context),
  ATTACH_CONTAINER_INPUT: (p, agent, context) => attachContainerInput(p, agent, context),
  ATTACH_CONTAINER_OUTPUT: (p, agent, context) => attachContainerOutput(p, agent, context),
  PRUNE_IMAGES: async (p, agent) => {
    const excluded = ImageCollector.exclusions([...p.excluded_images, ...(agent.flags.values.image_gc_config?.excluded_images ?? [])]);
    await agent.collector.prune(excluded);
    return emptyResponse(200);
  },
};

export function dispatch<T extends CallType>(
  type: T,
  payload: Payload<T>,
  agent: AgentServices,
  context: CallContext,
): Answered | Promise<Answered> {
  return (HANDLERS[type] as Handler<T>)(payload, agent, context);
}

/** A *_NESTED_CONTAINER call names a parent (Mesos' validation, word for word). */
function nested(id: { parent?: unknown }): void {
  if (!id.parent) throw invalid("Failed to validate agent::Call: Expecting 'container_id.parent' to be present");
}

/**
 * WAIT_CONTAINER's answer. An unknown container is 404 before anything is sent; a known one
 * gets its status line and headers at once, and the exit when it comes: a client that gives
 * up without response headers (mesos-go after 15 s) keeps waiting.
 */
function waitAnswer(agent: AgentServices, id: ContainerID, type: string, field: string): Answer {
  const c = agent.containers.get(id);
  if (!c) throw notFound(`Container '${idKey(id)}' cannot be found`);
  if (c.state === "EXITED") return answer({ type, [field]: waitBody(c) });
  return answerLater({ type }, field, agent.containers.wait(id).then(waitBody));
}

function waitBody(c: Exited): Message {
  const body: Message = {};
  if (c.exitStatus !== undefined) body.exit_status = c.exitStatus;
  if (c.limitation) {
    body.state = "TASK_FAILED";
    body.reason = c.limitation.reason;
    body.limitation = { resources: c.limitation.resources };
  } else if (c.termination) {
    body.state = c.termination.state;
    if (c.termination.reason) body.reason = c.termination.reason;
  }
  if (c.termination && !c.message) body.message = c.termination.message;
  if (c.message) body.message = c.message;
  return body;
}

/**
 * One GET_CONTAINERS entry. Mesos' shapes only: a running container has executor_pid and
 * statistics; one still being provisioned has statistics but no pid; an exited one (kept
 * until REMOVE_CONTAINER) has neither, since Mesos omits what is unavailable.
 */
function containerInfo(c: Container, diskUsed?: number, networkInfos?: unknown[]): Record<string, unknown> {
  const info: Record<string, unknown> = {
    container_id: { value: c.id.value },
    container_status: {
      container_id: c.id,
      ...(c.state === "RUNNING" && c.pid !== undefined ? { executor_pid: c.pid } : {}),
      // Mesos' network/cni status: each network's NetworkInfo with the container's addresses.
      ...(c.state !== "EXITED" && networkInfos ? { network_infos: networkInfos } : {}),
    },
  };
  if (c.state !== "EXITED") {
    info.resource_statistics = {
      timestamp: Date.now() / 1000,
      ...(c.limits?.cpus !== undefined ? { cpus_limit: c.limits.cpus } : {}),
      ...(c.limits?.memBytes !== undefined ? { mem_limit_bytes: c.limits.memBytes } : {}),
      ...(c.limits?.diskBytes !== undefined ? { disk_limit_bytes: c.limits.diskBytes } : {}),
      ...(diskUsed !== undefined ? { disk_used_bytes: diskUsed } : {}),
      ...(c.state === "RUNNING" ? (c.cgroup?.statistics() ?? {}) : {}),
    };
  }
  return info;
}
