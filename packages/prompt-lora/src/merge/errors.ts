/** Typed errors of the merge module (stack, compress, bake, extract): each names the file, module or key at fault. */
export type MergeErrorCode =
  | "EMPTY_STACK"
  | "SHAPE_MISMATCH"
  | "NEEDS_BASE_WEIGHT"
  | "UNKNOWN_FAMILY"
  | "OUTPUT_IS_BASE"
  | "OUTPUT_EXISTS"
  | "MISSING_TENSOR"
  | "BAD_RANK";

export class MergeError extends Error {
  constructor(
    readonly code: MergeErrorCode,
    message: string,
    readonly key?: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = "MergeError";
  }
}
