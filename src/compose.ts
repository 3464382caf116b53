// The agent process put together: the agent (directories, workers, images, containers,
// recovery) first, then the API server over it; stopped in reverse. The only module that
// knows both the agent and the API edge, so neither imports the other.
import { isIP } from "node:net";
import { Agent, StartupError } from "./agent/agent.ts";
import { startApiServer, type ApiServer } from "./api/server.ts";
import type { LoadedFlags } from "./config/flags.ts";
import { log } from "./log.ts";

export interface AgentProcess {
  start(): Promise<void>;
  /** Stops within a bounded time: blocked WAITs are answered, other requests get a grace period. */
  stop(): Promise<void>;
}

export function composeAgent(flags: LoadedFlags): AgentProcess {
  const agent = new Agent(flags);
  let server: ApiServer | undefined;
  return {
    async start() {
      await agent.start();
      const f = flags.values;
      if (!isLoopback(f.ip) && !f.authenticate_http_readwrite) {
        const bar = "!".repeat(78);
        log.warn(bar);
        log.warn(`WARNING: listening on ${f.ip} WITHOUT authentication. Anyone who can reach this port`);
        log.warn("can launch containers as root on this machine. Use --authenticate_http_readwrite with");
        log.warn("--http_credentials, or keep --ip on loopback (the default, 127.0.0.1).");
        log.warn(bar);
      }
      try {
        server = startApiServer(agent, f);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new StartupError(`cannot listen on ${f.ip}:${f.port}: ${e.code ?? e.message}`);
      }
      log.always(`agent listening on http://${hostPort(f.ip, server.port)} (Operator API at /api/v1)`);
    },
    async stop() {
      agent.quiesce();
      if (server) {
        log.info("agent stopping: no new requests; finishing those in flight");
        await server.drain();
      }
      agent.stop();
    },
  };
}

function isLoopback(ip: string): boolean {
  return (isIP(ip) === 4 && ip.startsWith("127.")) || ip === "::1";
}

function hostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}
