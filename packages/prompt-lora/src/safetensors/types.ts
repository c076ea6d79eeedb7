/** Shared types of the safetensors module (contract: other modules code against these). */

export type DType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file (8 + header length + data_offsets[0]). */
  fileOffset: number;
  byteLength: number;
}

/** A tensor to write. `data` may be a function so a writer can stream tensors one at a time. */
export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  data: ArrayBufferView | (() => ArrayBufferView | Promise<ArrayBufferView>);
}
