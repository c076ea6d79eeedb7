/** Public API of @lora-studio/trainer: config, dataset, logging, output metadata and the training run. */

export { type Caption, Captioner, type CaptionerInfo, type CaptionerOptions } from "./autolabel/captioner.ts";
export {
  type CaptionerConfig,
  CaptionerModelError,
  type ImageProcessing,
  readCaptionerConfig,
} from "./autolabel/captioner-config.ts";
export {
  DEFAULT_GENERATION,
  type Generated,
  type GenerationOptions,
  generate,
} from "./autolabel/generate.ts";
export {
  captionHash,
  captionState,
  MANIFEST_RELATIVE_PATH,
  ManifestError,
  readManifest,
} from "./autolabel/manifest.ts";
export { type OnnxSignature, OnnxSignatureError, readOnnxSignature } from "./autolabel/onnx-signature.ts";
export { loadProcessedRgb, loadSquareRgb, packNormalized } from "./autolabel/preprocess.ts";
export {
  type AutoLabelEvent,
  type AutoLabelOptions,
  type AutoLabelReport,
  autoLabel,
  type ImageAction,
  type ImageResult,
} from "./autolabel/run.ts";
export { type TaggerInfo, TaggerModelError, type TaggerOptions, WdTagger } from "./autolabel/tagger.ts";
export {
  composeCaption,
  DEFAULT_TAG_OPTIONS,
  formatTag,
  isKaomoji,
  readSelectedTags,
  type ScoredTag,
  selectTags,
  TagFileError,
  type TagInfo,
  type TagSelectOptions,
} from "./autolabel/tags.ts";
export { TokenDecoder, TokenizerFileError } from "./autolabel/token-decoder.ts";
// config
export { ConfigError, type ConfigIssue, editDistance, suggest } from "./config/errors.ts";
export {
  fromKohya,
  type KohyaImport,
  type KohyaReport,
  kohyaImportToYaml,
  mapKohyaSettings,
} from "./config/kohya.ts";
export { loadConfig, parseConfig, resolveConfig } from "./config/load.ts";
export {
  type LrScheduleOptions,
  learningRateAt,
  lrMultiplier,
  resolveWarmupSteps,
} from "./config/lr-schedule.ts";
export {
  CONFIG_KEYS,
  configSchema,
  DEFAULT_TARGET_MODULES,
  EXECUTION_PROVIDERS,
  LR_SCHEDULERS,
  type LrSchedulerName,
  OPTIMIZERS,
  type Optimizer,
  type RawConfig,
  type TrainConfig,
} from "./config/schema.ts";
export { type ModulePredicate, targetModulePredicate } from "./config/targets.ts";
export {
  type BucketAssignment,
  BucketPlanner,
  type BucketSettings,
  centerCrop,
  fixedResolutionAssignment,
  makeBucketResolutions,
  type Size,
} from "./dataset/buckets.ts";
export {
  type CaptionProcessing,
  type CaptionResult,
  type CaptionSource,
  loadCaptions,
  processCaption,
  readMetadataCsv,
  tagFrequency,
  textEmbeddingsCacheable,
} from "./dataset/captions.ts";
export {
  type CheckFlag,
  type CheckFlagKind,
  type CheckOptions,
  type CheckResult,
  type CheckRow,
  datasetCheck,
  formatCheckTable,
} from "./dataset/check.ts";
// dataset
export { CsvError, formatCsv, formatCsvField, parseCsv } from "./dataset/csv.ts";
export {
  type Discovery,
  discoverImages,
  type FoundImage,
  IMAGE_EXTENSIONS,
  type SkippedFile,
} from "./dataset/discover.ts";
export {
  type ImageInfo,
  ImageLoadError,
  loadBucketed,
  loadRgb,
  probeImage,
  type RgbImage,
  toTensorCHW,
} from "./dataset/image.ts";
export {
  decodeLatent,
  encodeLatent,
  imageContentHash,
  type Latent,
  LatentCache,
  type LatentKeyParts,
  latentCacheKey,
} from "./dataset/latent-cache.ts";
export {
  type Batch,
  DataOrder,
  type DataOrderState,
  epochBatches,
  type OrderBucket,
} from "./dataset/order.ts";
export {
  type DataPlan,
  DatasetError,
  orderBuckets,
  type PlannedBucket,
  type PlannedImage,
  planDataset,
  stepArithmetic,
} from "./dataset/plan.ts";
export { formatPlan, type PlanExtras, stepSentence } from "./dataset/plan-text.ts";
export {
  hammingDistance,
  laplacianVariance,
  measureImage,
  perceptualHash,
  sharpness,
} from "./dataset/quality.ts";
export { deriveSeed, Rng, type RngState } from "./dataset/rng.ts";
// logging
export { crc32c, maskedCrc32c } from "./logging/crc32c.ts";
export { type HealthKind, type HealthNote, trainingHealth } from "./logging/health.ts";
export { type LossPoint, lossCurveSvg, movingAverage, writeLossCurvePng } from "./logging/loss-curve.ts";
export { type MetricsRecord, MetricsWriter, readMetrics } from "./logging/metrics.ts";
export { encodeScalarEvent, frameRecord, KOHYA_TAGS, TensorBoardWriter } from "./logging/tensorboard.ts";
export { type SshsHashes, sshsHashes, withSshsHashes } from "./output/hashes.ts";
// output
export {
  checkpointMetadata,
  type DatasetSummaryForMetadata,
  datasetSummaryFromPlan,
  modelspecMetadata,
  type TrainingMetadataInput,
  trainingMetadata,
} from "./output/metadata.ts";
export { pyFloat, pyJsonDumps } from "./output/python-format.ts";
export { type BaseModel, BaseModelError, openBaseModel } from "./train/base-model.ts";
export {
  loadTrainState,
  ResumeError,
  saveLora,
  saveTrainState,
  type TrainStateRecord,
} from "./train/checkpoint.ts";
export { estimateStep, graphMemoryBound, type StepEstimate } from "./train/estimate.ts";
export { EVAL_TIMESTEPS, FixedBatchEvaluator } from "./train/evaluation.ts";
export { NonFiniteLossError, type TrainEvent, type TrainEventHandler } from "./train/events.ts";
export { consoleProgress, formatEta, stepLine } from "./train/progress.ts";
export { DEFAULT_GRAPH_OPTIMIZATION, optimizerConfig, type TrainOptions } from "./train/setup.ts";
export {
  moduleAlpha,
  TargetError,
  textEncoderLoraRanks,
  trainingSummary,
  unetLoraRanks,
} from "./train/targets.ts";
export { type TrainResult, train } from "./train/train.ts";
export { type TrainingWorker, trainInWorker, type WorkerTrainOptions } from "./train/worker.ts";
