// Errors by kind: every error ucr makes says what was attempted, on what, and why (its
// message), what kind of failure it is (its kind), and what it came from (its cause). Only the
// API edge turns a kind into a status code (api/status.ts, one table); nothing below it does.

/**
 * invalid: the request (or what it names: an image, a layer, a flag) cannot be served as asked.
 * not-found: what it names does not exist. conflict: it collides with something that exists.
 * precondition: what it names is not in a state that allows it (REMOVE of a running container).
 * unimplemented: ucr does not do this (yet). unavailable: not now (the agent is stopping).
 * internal: ucr or the machine failed (a full disk, a cgroup that cannot be made).
 */
export type ErrorKind = "invalid" | "not-found" | "conflict" | "precondition" | "unimplemented" | "unavailable" | "internal";

export class UcrError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A base for a module's own errors, all of one kind: `class ArchiveError extends errorOfKind("invalid") {}`. */
export function errorOfKind(kind: ErrorKind) {
  return class extends UcrError {
    constructor(message: string, options?: { cause?: unknown }) {
      super(kind, message, options);
    }
  };
}

/** The kind of any thrown value: a UcrError's own, anything else is internal. */
export function kindOf(err: unknown): ErrorKind {
  return err instanceof UcrError ? err.kind : "internal";
}

/** A thrown value's message (a non-Error is shown as text). */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const invalid = (message: string, cause?: unknown) => new UcrError("invalid", message, causeOf(cause));
export const notFound = (message: string, cause?: unknown) => new UcrError("not-found", message, causeOf(cause));
export const precondition = (message: string, cause?: unknown) => new UcrError("precondition", message, causeOf(cause));
export const unimplemented = (message: string) => new UcrError("unimplemented", message);
export const unavailable = (message: string, cause?: unknown) => new UcrError("unavailable", message, causeOf(cause));
export const internal = (message: string, cause?: unknown) => new UcrError("internal", message, causeOf(cause));

function causeOf(cause: unknown): { cause?: unknown } | undefined {
  return cause === undefined ? undefined : { cause };
}
