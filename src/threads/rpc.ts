// A small request/response protocol over worker postMessage, typed end to end: a worker
// serves an interface of operations (`serveRpc<DiskOps>`), and the caller's API is derived
// from it (`WorkerClient<DiskOps>.call("du", {path})` knows the argument, the result and the
// progress type), as comlink's Remote<T> derives it. Errors cross the boundary as {name,
// message, code, kind} and come back as WorkerErrors of that name and kind, so the API
// answers a worker's failure as it would the error itself.
import { threadId } from "node:worker_threads";
import { UcrError, kindOf, type ErrorKind } from "../errors.ts";
import type { WorkerHandle } from "./workers.ts";

declare const self: Worker;

interface RpcRequest {
  id: number;
  op: string;
  args: unknown;
}

type RpcReply =
  | { id: number; progress: unknown }
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string; kind: ErrorKind } };

export class WorkerError extends UcrError {
  constructor(
    message: string,
    readonly code?: string,
    name = "WorkerError",
    kind: ErrorKind = "internal",
  ) {
    super(kind, message);
    this.name = name;
  }
}

/** What a handler gets besides its argument: a way to report progress to the caller. */
export interface RpcContext<Progress = never> {
  progress(data: Progress): void;
}

/**
 * The shape of what a worker exposes: operations of one argument (none: `void`), sync or
 * async, that may report progress. An interface of such methods is one (`interface DiskOps`).
 */
export type Operations<T> = { [K in keyof T]: (args: never, ctx: RpcContext<never>) => unknown };

/** What every worker answers besides its own operations. */
export interface Ping {
  ping(): { worker: string; threadId: number; at: number };
}

type Result<F> = F extends (...args: never[]) => infer R ? Awaited<R> : never;
type ProgressOf<F> = F extends (args: never, ctx: RpcContext<infer P>) => unknown ? P : never;
/** A call's arguments after the operation's name: its argument (none for an operation that takes none) and options. */
type CallArgs<F> = F extends () => unknown
  ? [args?: undefined, options?: CallOptions<ProgressOf<F>>]
  : F extends (args: infer A, ...rest: never[]) => unknown
    ? [args: A, options?: CallOptions<ProgressOf<F>>]
    : never;

/** How a call is made: a progress callback (typed by the operation) and buffers to move, not copy. */
interface CallOptions<P> {
  onProgress?: (data: P) => void;
  transfer?: ArrayBuffer[];
}

type Handler = (args: unknown, ctx: RpcContext<unknown>) => unknown;

/** Inside a worker: answer requests with `handlers`, which implement the worker's operations. */
export function serveRpc<Ops extends Operations<Ops>>(handle: WorkerHandle<Ops>, handlers: Ops): void {
  const worker = handle.name;
  const all: Record<string, Handler> = {
    ping: () => ({ worker, threadId, at: Date.now() }) satisfies ReturnType<Ping["ping"]>,
    ...(handlers as unknown as Record<string, Handler>),
  };
  self.onmessage = async (event: MessageEvent<RpcRequest>) => {
    const { id, op, args } = event.data;
    const handler = all[op];
    let reply: RpcReply;
    try {
      if (!handler) throw new WorkerError(`worker ${worker} has no operation '${op}'`);
      const ctx: RpcContext<unknown> = { progress: (data) => postMessage({ id, progress: data } satisfies RpcReply) };
      reply = { id, ok: true, value: await handler(args, ctx) };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      reply = { id, ok: false, error: { name: e.name ?? "Error", message: e.message ?? String(err), code: e.code, kind: kindOf(err) } };
    }
    postMessage(reply);
  };
}

/**
 * On the server thread: a worker and the calls waiting on it. Given a factory instead of a
 * Worker, the thread starts at the first call (or start()) and, with `idleStopMs`, stops
 * after that long without a call in flight, to start again at the next: an idle agent
 * keeps no worker threads (each holds a few MiB).
 */
export class WorkerClient<Ops extends Operations<Ops> = Ping> {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; onProgress?: (data: unknown) => void }
  >();
  /** Calls started and not yet answered: how busy this worker is. */
  get busy(): number {
    return this.pending.size;
  }
  private dead: Error | undefined;
  /** unref() asked for: the worker keeps the process alive only while calls are pending. */
  private weak = false;
  private worker: Worker | undefined;
  private readonly factory: (() => Worker) | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Called each time the thread starts (a lazy one: at its first use after a stop). */
  onStart: (() => void) | undefined;
  /** Called each time a lazy worker's thread is stopped for being idle. */
  onIdleStop: (() => void) | undefined;

  constructor(
    readonly name: string,
    worker: Worker | (() => Worker),
    private readonly idleStopMs = 0,
  ) {
    if (typeof worker === "function") this.factory = worker;
    else this.attach(worker);
  }

  /** Is the thread there now? */
  get running(): boolean {
    return this.worker !== undefined;
  }

  private attach(worker: Worker): void {
    this.worker = worker;
    worker.onmessage = (event: MessageEvent<RpcReply>) => {
      const reply = event.data;
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      if ("progress" in reply) {
        waiter.onProgress?.(reply.progress);
        return;
      }
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.idle();
      if (reply.ok) waiter.resolve(reply.value);
      else waiter.reject(new WorkerError(reply.error.message, reply.error.code, reply.error.name, reply.error.kind));
    };
    worker.onerror = (event: ErrorEvent) => this.fail(worker, new WorkerError(`worker ${this.name} failed: ${event.message}`));
    // Our own stop of an idle thread is not a failure: by then this.worker is another (or none).
    worker.addEventListener("close", () => this.fail(worker, new WorkerError(`worker ${this.name} exited`)));
    if (this.weak) worker.unref();
  }

  /** Starts a lazy worker's thread now, if it is not running (e.g. ahead of the calls it will get). */
  start(): void {
    if (this.worker || this.dead || !this.factory) return;
    this.attach(this.factory());
    this.onStart?.();
    if (this.pending.size === 0) this.idle();
  }

  private idle(): void {
    if (this.weak) this.worker?.unref();
    clearTimeout(this.idleTimer);
    if (!this.factory || this.idleStopMs <= 0) return;
    this.idleTimer = setTimeout(() => {
      if (this.stop()) this.onIdleStop?.();
    }, this.idleStopMs);
    this.idleTimer.unref();
  }

  /**
   * Stops a lazy worker's thread now if no call is in flight (it starts again at the next
   * call): a promise settled once the thread has ended, or undefined if it was not stopped.
   */
  stop(): Promise<void> | undefined {
    if (!this.factory || this.pending.size > 0 || !this.worker) return undefined;
    clearTimeout(this.idleTimer);
    const w = this.worker;
    this.worker = undefined;
    const ended = new Promise<void>((resolve) => w.addEventListener("close", () => resolve()));
    w.terminate();
    return ended;
  }

  private fail(worker: Worker, err: Error): void {
    if (worker !== this.worker) return;
    // A lazy worker starts again at its next call; a plain one is gone for good.
    if (this.factory) this.worker = undefined;
    else this.dead = err;
    for (const w of this.pending.values()) w.reject(err);
    this.pending.clear();
  }

  /** Calls operation `op` of the worker (starting its thread if it is a lazy one that is not running). */
  call<K extends keyof (Ops & Ping) & string>(op: K, ...[args, options = {}]: CallArgs<(Ops & Ping)[K]>): Promise<Result<(Ops & Ping)[K]>> {
    if (this.dead) return Promise.reject(this.dead);
    clearTimeout(this.idleTimer);
    this.start();
    const worker = this.worker!;
    const id = this.nextId++;
    const transfer = options.transfer ?? [];
    // A call in flight keeps the process alive, even for a worker that otherwise would not.
    if (this.weak && this.pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      const onProgress = options.onProgress as ((data: unknown) => void) | undefined;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onProgress });
      worker.postMessage({ id, op, args } satisfies RpcRequest, transfer);
    });
  }

  /** Let the process exit while the worker idles (not while a call is pending). */
  unref(): void {
    this.weak = true;
    if (this.pending.size === 0) this.worker?.unref();
  }

  terminate(): void {
    clearTimeout(this.idleTimer);
    const w = this.worker;
    if (w) this.fail(w, new WorkerError(`worker ${this.name} was stopped`));
    this.dead ??= new WorkerError(`worker ${this.name} was stopped`);
    this.worker = undefined;
    w?.terminate();
  }
}
