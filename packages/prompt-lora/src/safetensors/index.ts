/** Public API of the safetensors module: lazy validated reader, streaming atomic writer, dtype conversions. */
export {
  ALL_DTYPES,
  bf16ToF32,
  dtypeByteSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  fromFloat32,
  isDType,
  isFloatDType,
  toFloat32,
} from "./dtypes.ts";
export { SafetensorsError, type SafetensorsErrorCode } from "./errors.ts";
export { MAX_HEADER_BYTES } from "./header.ts";
export { type Float32Tensor, openSafetensors, readSafetensors, type SafetensorsFile } from "./reader.ts";
export { type SyntheticCheckpointOptions, writeSyntheticCheckpoint } from "./synthetic.ts";
export type { DType, TensorInfo, TensorToWrite } from "./types.ts";
export { encodeSafetensorsHeader, writeSafetensors } from "./writer.ts";
