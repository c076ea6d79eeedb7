/** The one error type the safetensors module throws for anything wrong with a file or a tensor to write. */

/** Machine-readable reason; the message carries the human explanation. */
export type SafetensorsErrorCode =
  | "HEADER_TOO_SMALL"
  | "HEADER_TOO_LARGE"
  | "INVALID_HEADER_LENGTH"
  | "INVALID_UTF8"
  | "INVALID_JSON"
  | "HEADER_NOT_OBJECT"
  | "DUPLICATE_KEY"
  | "INVALID_METADATA"
  | "INVALID_TENSOR_INFO"
  | "UNKNOWN_DTYPE"
  | "INVALID_SHAPE"
  | "INVALID_OFFSETS"
  | "SIZE_MISMATCH"
  | "OVERLAPPING_TENSORS"
  | "HOLE_IN_DATA"
  | "OUT_OF_BOUNDS"
  | "INCOMPLETE_DATA"
  | "TRUNCATED"
  | "TENSOR_NOT_FOUND"
  | "TENSOR_TOO_LARGE"
  | "UNSUPPORTED_CONVERSION"
  | "INVALID_TENSOR"
  | "CLOSED"
  | "IO_ERROR";

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
  readonly code: SafetensorsErrorCode;
  readonly file: string;
  readonly key?: string;

  constructor(
    code: SafetensorsErrorCode,
    file: string,
    message: string,
    key?: string,
    options?: ErrorOptions,
  ) {
    const where = key === undefined ? file : `${file} [${key}]`;
    super(`${where}: ${message}`, options);
    this.code = code;
    this.file = file;
    if (key !== undefined) this.key = key;
  }
}
