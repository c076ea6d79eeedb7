/** Public API of @lora-studio/prompt-lora: formats, prompt tokens, the Lora library, merging. No ML runtime. */

export * from "./safetensors/index.ts";
export { atomicWriteFile, withAtomicPath } from "./util/atomic.ts";
export {
  architectureFromConfig,
  architectureOf,
  type CheckpointTarget,
  diffusersCheckpointTarget,
  familyPresets,
  kohyaName,
  ModelArchitecture,
  type ModelConfigs,
  type ModuleSpec,
  moduleTree,
  moduleTreeFromConfig,
  originalCheckpointTarget,
  parseKohyaName,
  type TextEncoderConfig,
  type TextEncoderLayout,
  type UNetConfig,
} from "./architecture/index.ts";
export {
  type Adapter,
  AdapterError,
  type AdapterErrorCode,
  type AdapterModule,
  type AdapterSummary,
  type Component,
  detectFamily,
  familyFromMetadata,
  type ModelFamily,
  moduleBiasDelta,
  moduleDelta,
  parseAdapter,
  rawDelta,
  readAdapter,
  summarizeAdapterFile,
  type Tensor,
  type TensorMap,
  truncateRank,
  type WriteAdapterOptions,
  writeAdapter,
} from "./adapters/index.ts";
