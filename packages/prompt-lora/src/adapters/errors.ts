/** Typed errors of the adapters module: each names the file (when known), the module or key, and what is wrong. */
export type AdapterErrorCode =
  | "INCOMPLETE_MODULE"
  | "BAD_SHAPE"
  | "NEEDS_BASE_WEIGHT"
  | "UNSUPPORTED_FOR_FORMAT";

export class AdapterError extends Error {
  constructor(
    readonly code: AdapterErrorCode,
    message: string,
    readonly key?: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = "AdapterError";
  }
}
