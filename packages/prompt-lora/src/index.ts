/** Public API of @lora-studio/prompt-lora: formats, prompt tokens, the Lora library, merging. No ML runtime. */

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
export { LibraryCache } from "./library/cache.ts";
export { type FileHashes, hashFile } from "./library/hash.ts";
export {
  decodeMetadata,
  type FamilySource,
  familyFromLoraMetadata,
  findPreview,
  readUserMetadata,
  type UserMetadata,
} from "./library/metadata.ts";
// LoRA library (models/Lora folder listing, A1111 hashes, metadata, cache)
export { analyzeFile, describeFile, LORA_EXTENSIONS, type ScanOptions, scanLibrary } from "./library/scan.ts";
export type { FileInfo, LibraryEntry, LibraryListing } from "./library/types.ts";
export { naturalCompare, type WalkResult, walkFolder } from "./library/walk.ts";
export { factoredSvd, type LowRank, type LowRankOptions, randomizedSvd } from "./math/rsvd.ts";
export { type BakeOptions, type BakeReport, bakeCheckpoint } from "./merge/bake.ts";
export { type ModuleWeights, openModuleWeights } from "./merge/checkpoint.ts";
export {
  type CompressionReport,
  type CompressOptions,
  compressAdapter,
  compressAdapterParallel,
  type ModuleCompression,
  type ParallelCompressOptions,
} from "./merge/compress.ts";
export { MergeError, type MergeErrorCode } from "./merge/errors.ts";
export { type ExtractOptions, extractAdapter } from "./merge/extract.ts";
export { multiplierFor, type StackOptions, stackAdapters } from "./merge/stack.ts";
export type { ProgressCallback, StackEntry } from "./merge/types.ts";
export { parsePythonFloat, parsePythonInt } from "./prompt/numbers.ts";
// prompt tokens (A1111 extra-networks syntax) and name resolution
export {
  type NetworkType,
  type ParsedPrompt,
  type ParseOptions,
  type PromptError,
  type PromptNetwork,
  parsePrompt,
  type UnknownToken,
} from "./prompt/parse.ts";
export {
  indexLibrary,
  type LibraryIndex,
  lookupNetwork,
  type Resolution,
  type ResolvedNetwork,
  resolveNetworks,
} from "./prompt/resolve.ts";
export * from "./safetensors/index.ts";
export { atomicWriteFile, withAtomicPath } from "./util/atomic.ts";
// CLI helpers
export { createProgress, type Progress, type ProgressOptions, withProgress } from "./util/progress.ts";
