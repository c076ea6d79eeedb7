/** Public API of @lora-studio/engine: graph builder, autodiff, optimizers, runtime, tokenizer, schedulers, SD models. */

export { AutodiffError } from "./autodiff/errors.ts";
export { and, isInfOp, isNaNOp, mod, not, or, pad, scatterNDAdd, sum } from "./autodiff/extra-ops.ts";
export {
  CHECKPOINT_DISABLED_OPTIMIZERS,
  CHECKPOINT_SESSION_OPTIONS,
  type GradOptions,
  grad,
  zerosLike,
} from "./autodiff/grad.ts";
export { type GroupNormOptions, groupNorm as groupNormOp } from "./autodiff/group-norm.ts";
export {
  type CheckpointSegment,
  checkpoint,
  checkpointSegments,
  isGradientStopped,
  stopGradient,
} from "./autodiff/marks.ts";
export { type RuleContext, VJP_RULES, type VjpRule } from "./autodiff/rules.ts";
export {
  asValue,
  attr,
  builderOf,
  GraphBuildError,
  GraphBuilder,
  type OutputSpec,
  typedArrayFor,
} from "./graph/builder.ts";
export * from "./graph/ir.ts";
export * from "./graph/ops/index.ts";
export {
  buildClipTextGraph,
  type ClipTextEncoderOptions,
  type ClipTextGraphOptions,
  clipTextEncoder,
} from "./models/clip-text.ts";
export {
  type ClipTextConfig,
  ConfigError as ModelConfigError,
  parseClipTextConfig,
  parseUNetConfig,
  parseVaeConfig,
  type UNetModelConfig,
  type VaeConfig,
} from "./models/configs.ts";
export {
  type Checkpoint,
  inspectCheckpoint,
  type OpenCheckpointOptions,
  openCheckpoint,
  singleFileCheckpoint,
  type UnusedTensor,
} from "./models/loader/checkpoint.ts";
export type { FamilyDetection, ModelFamilyId } from "./models/loader/detect.ts";
export { CheckpointError, type CheckpointErrorCode } from "./models/loader/errors.ts";
export {
  defaultWeightCacheDir,
  type Fp32CacheEntry,
  type Fp32CacheOptions,
  fp32CacheForProvider,
} from "./models/loader/fp32-cache.ts";
export {
  architectureFor,
  textEncoderKeyMapper,
  unetKeyMapper,
  vaeKeyMapper,
} from "./models/loader/original-keys.ts";
export { FileWeights, type KeyMapper } from "./models/loader/weights.ts";
export { type KohyaTargetOptions, kohyaLoraTargets } from "./models/lora-targets.ts";
export { buildUNetGraph, type UNetGraphOptions } from "./models/unet/unet.ts";
export {
  buildVaeDecoderGraph,
  buildVaeEncoderGraph,
  type VaeGraphOptions,
  vaeDecodeLatents,
  vaeEncodeMoments,
  vaeScaleFactor,
} from "./models/vae/autoencoder-kl.ts";
export { attention, gegluFeedForward, scaledDotProductAttention, timestepEmbedding } from "./nn/attention.ts";
export { type Conv2dOptions, conv2d, groupNorm, layerNorm, linear, quickGelu, silu } from "./nn/layers.ts";
export { type LoraInputNames, loraInputNames, withLora } from "./nn/lora.ts";
export {
  type BuiltGraph,
  type ComputeDType,
  graphInputWeights,
  type LoraTargets,
  ModelBuildError,
  ModuleContext,
  memoryWeights,
  type WeightSource,
} from "./nn/module.ts";
export {
  type EncodeOptions as ModelEncodeOptions,
  encodeModel,
  IR_VERSION,
  OPSET,
  type TensorPlacement,
} from "./onnx/encode.ts";
export {
  INLINE_LIMIT_BYTES,
  type ModelFile,
  type ModelFileOptions,
  writeModelFile,
} from "./onnx/model-file.ts";
export { type SafetensorsTensorRef, safetensorsExternal } from "./onnx/safetensors-ref.ts";
export {
  DYNAMIC_LOSS_SCALE_DEFAULTS,
  LOSS_SCALE_GOOD_STEPS_STATE,
  LOSS_SCALE_STATE,
  LossScaleError,
  type LossScaling,
} from "./optim/loss-scale.ts";
export {
  applyOptimizer,
  type OptimizerConfig,
  optimizerSlots,
  type ParamUpdate,
  type StepScalars,
} from "./optim/optimizers.ts";
export {
  appendTrainStep,
  initialTrainState,
  MICRO_STEP_STATE,
  type ParamGroup,
  STEP_STATE,
  type StateSpec,
  TrainStepError,
  type TrainStepGraph,
  type TrainStepSpec,
} from "./optim/train-step.ts";
// txt2img pipeline, LoRA stacks as adapter inputs, infotext/PNG, training samples
export {
  AdapterInputError,
  adapterFeeds,
  capacityKey,
  type GraphComponent,
  growCapacity,
  neededRank,
  rankBucket,
  specsByPath,
} from "./pipeline/adapter-inputs.ts";
export { bakedWeights, readTensorFloat32 } from "./pipeline/baked-weights.ts";
export { composeGrid, type GridCell, type GridOptions, wrapCaption, writeGrid } from "./pipeline/grid.ts";
export {
  createInfotext,
  type InfotextParams,
  loraHashesValue,
  quoteInfotextValue,
} from "./pipeline/infotext.ts";
export {
  type AppliedLora,
  lorasFromPrompt,
  type PromptLoraOptions,
  type PromptLoras,
} from "./pipeline/lora-prompt.ts";
export { encodePng, textChunk, toRgb8, withTextChunks, writePng } from "./pipeline/png.ts";
export { type Rendered, type RenderedImage, type RenderOptions, renderPrompt } from "./pipeline/render.ts";
export {
  KOHYA_SAMPLERS,
  parseSamplePromptLine,
  parseSamplePrompts,
  readSamplePrompts,
  type SamplePrompt,
  SamplePromptError,
  samplerFromKohya,
} from "./pipeline/sample-prompts.ts";
export {
  type RenderedSample,
  renderSamples,
  type SampleDefaults,
  type SampleRun,
} from "./pipeline/samples.ts";
export {
  type Component as ModelComponent,
  findTokenizerDir,
  type ModelSession,
  PipelineError,
  SdModel,
  type SdModelOptions,
  type SessionShape,
  type WeightMode,
} from "./pipeline/sd-model.ts";
export {
  type LoraMode,
  type Txt2ImgOptions,
  Txt2ImgPipeline,
  type Txt2ImgResult,
} from "./pipeline/txt2img.ts";
export {
  bytesText,
  consoleSink,
  type MessageLevel,
  type MessageSink,
  shown as messageShown,
} from "./runtime/messages.ts";
export { resolveExecutionProvider } from "./runtime/provider-probe.ts";
export {
  type ConcreteProvider,
  type ExecutionProviderChoice,
  INSTALL_HINT,
  isGpuProvider,
  unavailableReason,
} from "./runtime/providers.ts";
export { ortSessionOptions, Session, SessionCreateError, type SessionOptions } from "./runtime/session.ts";
export { type HostData, type HostTensor, hostTensor, zeros } from "./runtime/tensor.ts";
export { type RunnableSession, STATE_IN, STATE_OUT, TrainStepRunner } from "./runtime/train-step.ts";
export { type RunOptions, WorkerSession } from "./runtime/worker-session.ts";
export {
  classifierFreeGuidance,
  type DenoiseOptions,
  denoise,
  guideBatchedOutput,
  type Predict,
} from "./schedulers/denoise.ts";
export { SchedulerError, type SchedulerErrorCode } from "./schedulers/errors.ts";
export {
  addNoise,
  applyNoiseOffset,
  type BetaSchedule,
  computeBetas,
  createNoiseSchedule,
  getVelocity,
  minSnrWeights,
  type NoiseSchedule,
  noiseCoefficients,
  type PredictionType,
  parseScheduleConfig,
  readScheduleConfig,
  type ScheduleConfig,
  SD_SCHEDULE,
  snr,
  type TimestepSpacing,
  trainingTarget,
} from "./schedulers/noise-schedule.ts";
export { createSampler, isSamplerName } from "./schedulers/samplers/index.ts";
export { karrasSigmas, sigmaTable } from "./schedulers/samplers/sigmas.ts";
export {
  SAMPLER_NAMES,
  type Sampler,
  type SamplerName,
  type SamplerOptions,
} from "./schedulers/samplers/types.ts";
export { Mt19937, type NoiseSource, PerImageNoise, TorchCpuGenerator } from "./schedulers/torch-rng.ts";
export {
  applyEmphasis,
  type ChunkedPrompt,
  type ChunkOptions,
  type EmphasisMode,
  type EmphasisOptions,
  emptyChunk,
  type PromptChunk,
  padChunks,
  tokenizePromptChunks,
} from "./tokenizer/chunking.ts";
export {
  bytesToUnicode,
  ClipTokenizer,
  type ClipTokenizerOptions,
  type EncodeOptions,
  type Encoding,
} from "./tokenizer/clip-bpe.ts";
export {
  isBreakMarker,
  PromptSyntaxError,
  parsePromptAttention,
  type WeightedText,
} from "./tokenizer/prompt-weighting.ts";
export { type CleanTextMode, cleanText, fixText, whitespaceClean } from "./tokenizer/text-cleaning.ts";
export {
  CLIP_DEFAULT_SPECIAL_TOKENS,
  loadTokenizerFiles,
  resolveTokenizerDir,
  type SpecialTokens,
  TokenizerError,
  type TokenizerErrorCode,
  type TokenizerFiles,
} from "./tokenizer/tokenizer-files.ts";
export { kaimingUniformDown, kohyaLoraInit } from "./training/lora-init.ts";
export {
  buildJointLoraTrainStep,
  type JointLoraTrainStep,
  type JointLoraTrainStepOptions,
  TEXT_ENCODER_GROUP,
  UNET_GROUP,
} from "./training/lora-joint-train-step.ts";
// packages/engine/src/index.ts (trainer-loop)
export {
  buildLoraTrainStep,
  diffusionLoss,
  type LoraModuleInfo,
  type LoraTrainStep,
  type LoraTrainStepOptions,
  loraModuleInfos,
} from "./training/lora-train-step.ts";
