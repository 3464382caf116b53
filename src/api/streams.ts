// The streaming calls, as Mesos' agent and its I/O switchboard answer them (src/slave/http.cpp,
// src/slave/containerizer/mesos/io/switchboard.cpp): LAUNCH_NESTED_CONTAINER_SESSION (a DEBUG
// nested container whose output is the answer, ended with it), ATTACH_CONTAINER_OUTPUT (any
// number of readers) and ATTACH_CONTAINER_INPUT (one writer at a time). The container's end
// of each is the launcher's switchboard (agent/switchboard-client.ts).
import { idKey, type Container } from "../agent/container.ts";
import { UcrError, invalid, notFound, precondition } from "../errors.ts";
import { endSession } from "../agent/session.ts";
import { SwitchboardGone, attachInput, attachOutput, type InputAttachment } from "../agent/switchboard-client.ts";
import { log } from "../log.ts";
import { CallError, parseCall, type AttachContainerInput, type Call, type LaunchContainer, type ProcessIO } from "../mesos/calls.ts";
import { ApiError, emptyResponse, parseJsonBody, textResponse } from "./http.ts";
import { RecordioError } from "../mesos/recordio.ts";
import type { ContainerID } from "../mesos/messages.ts";
import type { AgentServices } from "./services.ts";
import { STATUS_OF_KIND } from "./status.ts";
import { ProcessIOStream, decodeCall, streamEncoding, streamResponse, type CallContext } from "./wire.ts";

/**
 * Streams and input attachments open now, each with how to end it when the agent stops: they
 * last as long as their container's output, and must not hold the agent's shutdown.
 */
const open = new Set<() => void>();

/** The agent is stopping: every stream ends (sessions with it, as their clients go), every input answers 503. */
export function closeStreams(): void {
  for (const close of [...open]) close();
}

/** What Mesos answers for a container that has no switchboard (tty_info or a session). */
const NO_SWITCHBOARD = "I/O switchboard server was disabled for this container";

function fail(err: unknown): Response {
  if (err instanceof UcrError) return textResponse(STATUS_OF_KIND[err.kind], err.message);
  if (err instanceof SwitchboardGone) return textResponse(500, err.message);
  throw err;
}

/** The container to attach to, launched (a launch in flight is waited for, as Mesos does). */
async function switchboarded(agent: AgentServices, id: ContainerID): Promise<Container> {
  const c = agent.containers.get(id);
  if (!c) throw notFound(`Container ${idKey(id)} cannot be found`);
  if (!c.io) throw precondition(`${NO_SWITCHBOARD}: ${c.key} was launched without tty_info and is not a session`);
  await agent.containers.launched(c);
  // A launch that failed meanwhile left no container.
  if (agent.containers.get(id) !== c) throw notFound(`Container ${idKey(id)} cannot be found`);
  return c;
}

/** A switchboard's output as RecordIO ProcessIO records; `onEnd` runs once when the stream is over either way. */
async function outputStream(
  agent: AgentServices,
  c: Container,
  context: CallContext,
  onEnd: (why: "eof" | "client" | "shutdown") => void = () => {},
): Promise<Response> {
  let ended = false;
  const end = (why: "eof" | "client" | "shutdown") => {
    if (ended) return;
    ended = true;
    open.delete(shutdown);
    onEnd(why);
  };
  const shutdown = () => {
    attachment?.close();
    stream.close();
    end("shutdown");
  };
  let attachment: Awaited<ReturnType<typeof attachOutput>> | undefined;
  const stream = await ProcessIOStream.open(streamEncoding(context.wire), agent.flags.values.http_heartbeat_interval, () => {
    attachment?.close();
    end("client");
  });
  try {
    attachment = await attachOutput(c.runtime, (e) => {
      if (e.kind === "end") {
        stream.close();
        end("eof");
        return;
      }
      stream.send({
        type: "DATA",
        data: { type: e.kind === "stdout" ? "STDOUT" : "STDERR", data: Buffer.from(e.data).toString("base64") },
      });
      // A slow client holds the switchboard, which holds the container: nothing is dropped.
      if (stream.backlogged()) {
        attachment?.pause();
        void stream.drained().then(() => attachment?.resume());
      }
    });
  } catch (err) {
    stream.close(); // its heartbeats stop; no answer carries it
    throw err;
  }
  if (!ended) open.add(shutdown);
  return streamResponse(stream, context.wire);
}

export async function attachContainerOutput(
  p: { container_id: ContainerID },
  agent: AgentServices,
  context: CallContext,
): Promise<Response> {
  try {
    const c = await switchboarded(agent, p.container_id);
    return await outputStream(agent, c, context);
  } catch (err) {
    return fail(err);
  }
}

/**
 * Launches the session, then answers with its output. Its end (EOF of the output, or the
 * client going away) ends the container, as Mesos destroys it; WAIT_CONTAINER tells how.
 */
export async function launchNestedContainerSession(p: LaunchContainer, agent: AgentServices, context: CallContext): Promise<Response> {
  if (!p.container_id.parent) {
    return textResponse(
      400,
      "Failed to validate agent::Call: Expecting 'launch_nested_container_session.container_id.parent' to be present",
    );
  }
  if (p.container?.linux_info?.share_cgroups === false) {
    return textResponse(
      400,
      "Failed to validate agent::Call: 'launch_nested_container_session.container.linux_info' is invalid: " +
        "'share_cgroups' cannot be set to 'false' for nested container sessions",
    );
  }
  let launched: boolean;
  try {
    launched = await agent.containers.launch({ ...p, resources: [] }, { session: true });
  } catch (err) {
    return fail(err);
  }
  // The ID was in use: Mesos answers the launch's 202 as it is, without a stream.
  if (!launched) return emptyResponse(202);
  const c = agent.containers.get(p.container_id)!;
  try {
    const whys = {
      eof: "its output is over",
      client: "its client went away",
      shutdown: "the agent is stopping, and its client goes with it",
    };
    return await outputStream(agent, c, context, (why) => endSession(c, whys[why]));
  } catch (err) {
    log.warn(`session ${c.key}: cannot attach to its output: ${(err as Error).message}`);
    endSession(c, "its output cannot be read");
    return fail(err);
  }
}

/** Mesos' checks of an input record after the first (IOSwitchboardServerProcess::validate). */
function inputProblem(input: AttachContainerInput): string | undefined {
  if (input.type !== "PROCESS_IO")
    return `Expecting 'attach_container_input.type' to be 'PROCESS_IO' instead of: '${input.type ?? "UNKNOWN"}'`;
  const m: ProcessIO | undefined = input.process_io;
  if (!m) return "Expecting 'attach_container_input.process_io' to be present";
  if (!m.type) return "Expecting 'process_io.type' to be present";
  if (m.type === "UNKNOWN") return "'process_io.type' is unknown";
  if (m.type === "CONTROL") {
    if (!m.control) return "Expecting 'process_io.control' to be present";
    if (!m.control.type) return "Expecting 'process_io.control.type' to be present";
    if (m.control.type === "UNKNOWN") return "'process_io.control.type' is unknown";
    if (m.control.type === "TTY_INFO") {
      if (!m.control.tty_info) return "Expecting 'process_io.control.tty_info' to be present";
      if (!m.control.tty_info.window_size) return "Expecting 'tty_info.window_size' to be present";
    }
    if (m.control.type === "HEARTBEAT" && !m.control.heartbeat) return "Expecting 'process_io.control.heartbeat' to be present";
    return undefined;
  }
  if (!m.data) return "Expecting 'process_io.data' to be present";
  if (!m.data.type) return "Expecting 'process_io.data.type' to be present";
  if (m.data.type !== "STDIN") return "Expecting 'process_io.data.type' to be 'STDIN'";
  if (m.data.data === undefined) return "Expecting 'process_io.data.data' to be present";
  return undefined;
}

/** The records after the first, each an agent::Call in the message encoding; 400 with why at the first bad one. */
async function* inputRecords(context: CallContext): AsyncGenerator<AttachContainerInput> {
  for await (const record of context.records!) {
    const body = await decodeCall(record, context.wire.messageContent!, parseJsonBody);
    let call;
    try {
      call = parseCall(body);
    } catch (err) {
      if (err instanceof CallError) throw invalid(err.message);
      throw err;
    }
    if (call.type !== "ATTACH_CONTAINER_INPUT") throw invalid(`Expecting an ATTACH_CONTAINER_INPUT record, got ${call.type}`);
    yield (call as Call<"ATTACH_CONTAINER_INPUT">).payload;
  }
}

/**
 * Feeds the container's input from the request's records: STDIN data (empty: EOF), window
 * sizes and heartbeats. Answers when the records end (200), when the switchboard ends (200,
 * its output is over), or at the first record that cannot be applied (400 or 500).
 */
export async function attachContainerInput(p: AttachContainerInput, agent: AgentServices, context: CallContext): Promise<Response> {
  if (!p.type) return textResponse(400, "Failed to validate agent::Call: Expecting 'attach_container_input.type' to be present");
  if (p.type === "UNKNOWN") return textResponse(400, "Failed to validate agent::Call: 'attach_container_input.type' is unknown");
  if (p.type !== "CONTAINER_ID") return textResponse(400, "Expecting 'attach_container_input.type' to be CONTAINER_ID");
  if (!p.container_id)
    return textResponse(400, "Failed to validate agent::Call: Expecting 'attach_container_input.container_id' to be present");
  let input: InputAttachment;
  try {
    const c = await switchboarded(agent, p.container_id);
    const attached = await attachInput(c.runtime);
    if (attached === "conflict") return textResponse(409, "Multiple input connections are not allowed");
    input = attached;
  } catch (err) {
    return fail(err);
  }
  const fed = (async () => {
    for await (const record of inputRecords(context)) {
      const problem = inputProblem(record);
      if (problem) throw invalid(problem);
      const m = record.process_io!;
      if (m.type === "CONTROL") {
        const size = m.control!.tty_info?.window_size;
        if (m.control!.type === "TTY_INFO" && size) input.resize(size.rows, size.columns);
        continue;
      }
      const data = Buffer.from(m.data!.data!, "base64");
      if (data.byteLength === 0) input.eof();
      else await input.write(data);
    }
    return { status: 200 } as const;
  })();
  let result: { status: 200 } | { status: number; message: string };
  let stopping!: (r: { status: number; message: string }) => void;
  const stopped = new Promise<{ status: number; message: string }>((resolve) => (stopping = resolve));
  const shutdown = () => stopping({ status: 503, message: "Agent is shutting down" });
  open.add(shutdown);
  try {
    result = await Promise.race([fed, input.ended, stopped]);
  } catch (err) {
    if (err instanceof UcrError) result = { status: STATUS_OF_KIND[err.kind], message: err.message };
    else if (err instanceof ApiError) result = { status: err.status, message: err.message };
    else if (err instanceof RecordioError) result = { status: 400, message: err.message };
    else throw err;
  } finally {
    open.delete(shutdown);
    input.close();
  }
  fed.catch(() => {}); // the switchboard ended first: the rest of the body is not read
  return "message" in result ? textResponse(result.status, result.message) : emptyResponse(200);
}
