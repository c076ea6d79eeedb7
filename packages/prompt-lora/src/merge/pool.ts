/** Where the merge worker entry lives, and how its errors become MergeErrors again on this side. */
import type { TaskError } from "../util/worker-pool.ts";
import { MergeError, type MergeErrorCode } from "./errors.ts";

/** merge-worker.ts when running from source (tsx), merge-worker.js in a compiled build. */
export function mergeWorkerEntry(): URL {
  const ext = import.meta.url.endsWith(".ts") ? "ts" : "js";
  return new URL(`./merge-worker.${ext}`, import.meta.url);
}

export function reviveMergeError(e: TaskError): Error {
  if (e.name === "MergeError" && e.code) {
    const prefix = e.file ? `${e.file}: ` : "";
    const message = prefix && e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
    return new MergeError(e.code as MergeErrorCode, message, e.key, e.file);
  }
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code) Object.assign(err, { code: e.code, key: e.key, file: e.file });
  return err;
}
