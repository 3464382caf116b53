// The one place an error becomes a status code: each kind of error (src/errors.ts) answers
// with the status Mesos answers such a failure with; anything that is not one of ours is a 500.
import { UcrError, type ErrorKind } from "../errors.ts";
import { ApiError } from "./http.ts";

export const STATUS_OF_KIND: Readonly<Record<ErrorKind, number>> = {
  invalid: 400,
  "not-found": 404,
  conflict: 409,
  // Mesos answers a call whose container is in the wrong state as a failed future: 500
  // (REMOVE_CONTAINER of a running one); its clients expect that, not 409 or 412.
  precondition: 500,
  unimplemented: 501,
  unavailable: 503,
  internal: 500,
};

/** The status and one-line message a thrown value answers with; `expected`: not a bug of ours. */
export function failureOf(err: unknown): { status: number; message: string; headers?: Record<string, string>; expected: boolean } {
  if (err instanceof ApiError) return { status: err.status, message: err.message, headers: err.headers, expected: true };
  if (err instanceof UcrError) return { status: STATUS_OF_KIND[err.kind], message: err.message, expected: true };
  return { status: 500, message: `Internal error: ${err instanceof Error ? err.message : String(err)}`, expected: false };
}
