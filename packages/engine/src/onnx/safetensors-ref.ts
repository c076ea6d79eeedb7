/**
 * Points an initializer straight into a .safetensors file: safetensors stores each tensor as contiguous
 * little-endian bytes at TensorInfo.fileOffset, which is exactly ONNX's raw layout, so the tensor becomes an
 * ExternalTensor (path + offset + length) that ORT memory-maps — nothing converted, nothing copied.
 *
 * `SafetensorsTensorRef` is structurally the contract's TensorInfo (prompt-lora/src/safetensors/types.ts); it is
 * restated here so the engine does not reach into prompt-lora's internals before the package index exports it.
 */
import type { DType, ExternalTensor } from "../graph/ir.ts";
import { DTYPE_BYTES, numel } from "../graph/ir.ts";

export interface SafetensorsTensorRef {
  name: string;
  /** Safetensors dtype string ("F32", "F16", "BF16", ...). */
  dtype: string;
  shape: number[];
  /** Absolute byte offset in the file (8 + header length + data_offsets[0]). */
  fileOffset: number;
  byteLength: number;
}

const DTYPE_OF: Record<string, DType> = {
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
};

/** The ExternalTensor for `info` inside the safetensors file at `path`. */
export function safetensorsExternal(path: string, info: SafetensorsTensorRef): ExternalTensor {
  const dtype = DTYPE_OF[info.dtype];
  if (!dtype)
    throw new Error(
      `${path}: tensor ${info.name} has dtype ${info.dtype}, which ONNX graphs here cannot use`,
    );
  const expected = numel(info.shape) * DTYPE_BYTES[dtype];
  if (expected !== info.byteLength) {
    throw new Error(
      `${path}: tensor ${info.name} is ${info.byteLength} bytes, shape [${info.shape}] ${info.dtype} needs ${expected}`,
    );
  }
  return { dtype, shape: [...info.shape], path, offset: info.fileOffset, byteLength: info.byteLength };
}
