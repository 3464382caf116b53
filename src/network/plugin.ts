// Running one CNI plugin as the spec says: the binary in the host's namespaces, CNI_* in its
// environment, the config on stdin, the result (or an error object) on stdout, a deadline.
import { pluginErrorText } from "./result.ts";
import { errorOfKind } from "../errors.ts";

type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";

export interface Invocation {
  command: CniCommand;
  /** The plugin binary (found in the plugin search path). */
  binary: string;
  /** The plugin search path (CNI_PATH), for delegated plugins such as IPAM. */
  cniPath: readonly string[];
  containerId: string;
  /** The netns file; absent on a DEL whose namespace is gone. */
  netns?: string;
  ifName: string;
  stdin: string;
  timeoutMs: number;
  /** Names the plugin, network and container in errors. */
  what: string;
}

class PluginError extends errorOfKind("internal") {}

/** A plugin's stdout/stderr past this is cut off (a result is a few KiB). */
const MAX_OUTPUT = 1 << 20;
/** Plugins shell out to iptables, ip, modprobe: they need a PATH even if the agent has none. */
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Runs the plugin; its stdout on success, else a PluginError saying what it answered. */
export async function invokePlugin(inv: Invocation): Promise<string> {
  const env: Record<string, string> = {
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId,
    CNI_IFNAME: inv.ifName,
    CNI_PATH: inv.cniPath.join(":"),
    PATH: process.env.PATH || DEFAULT_PATH,
  };
  if (inv.netns !== undefined) env.CNI_NETNS = inv.netns;
  let proc;
  try {
    proc = Bun.spawn([inv.binary], { stdin: Buffer.from(inv.stdin), stdout: "pipe", stderr: "pipe", env });
  } catch (err) {
    throw new PluginError(`${inv.what}: cannot run ${inv.binary}: ${(err as Error).message}`);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, inv.timeoutMs);
  const [stdout, stderr] = await Promise.all([readBounded(proc.stdout), readBounded(proc.stderr)]);
  const code = await proc.exited;
  clearTimeout(timer);
  if (timedOut) throw new PluginError(`${inv.what}: ${inv.command} did not finish within ${inv.timeoutMs / 1000} s and was killed`);
  if (code !== 0) {
    throw new PluginError(`${inv.what}: ${inv.command} failed (exit ${code ?? proc.signalCode}): ${pluginErrorText(stdout, stderr)}`);
  }
  return stdout;
}

async function readBounded(stream: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    if (size >= MAX_OUTPUT) continue; // keep draining so the plugin is not blocked on a full pipe
    chunks.push(chunk.subarray(0, MAX_OUTPUT - size));
    size += chunk.byteLength;
  }
  return Buffer.concat(chunks).toString("utf8");
}
