/**
 * The metadata a LoRA checkpoint carries, spelled as kohya's train_network.py writes it (every value through
 * Python's str(), nested values through json.dumps), so the WebUI's LoRA info panel, Civitai and metadata
 * editors show our LoRAs like kohya's: the ss_* training keys and the modelspec.* keys of Stability AI's
 * ModelSpec (library/sai_model_spec.py: architecture "stable-diffusion-v1/lora", implementation "diffusers").
 */
import { basename } from "node:path";
import type { TrainConfig } from "../config/schema.ts";
import { tagFrequency } from "../dataset/captions.ts";
import type { DataPlan } from "../dataset/plan.ts";
import { pyBool, pyFloat, pyInt, pyJsonDumps, pyOptional } from "./python-format.ts";

export interface DatasetSummaryForMetadata {
  /** Sum over images of repeats (kohya's num_train_images "includes repeating"). */
  numTrainImages: number;
  numBatchesPerEpoch: number;
  numEpochs: number;
  maxTrainSteps: number;
  /** Subset folder -> {n_repeats, img_count}. */
  datasetDirs: Record<string, { n_repeats: number; img_count: number }>;
  /** Subset folder -> tag -> count. */
  tagFrequency: Record<string, Record<string, number>>;
  buckets: { resolution: [number, number]; count: number }[];
  meanAspectError: number;
}

/**
 * The dataset part of the metadata from a plan, counted as kohya counts it: num_train_images and bucket counts
 * include repeats; mean_img_ar_error is the mean absolute aspect-ratio error over images (not repeats).
 */
export function datasetSummaryFromPlan(plan: DataPlan): DatasetSummaryForMetadata {
  const datasetDirs: DatasetSummaryForMetadata["datasetDirs"] = {};
  for (const s of plan.subsets) datasetDirs[s.name] = { n_repeats: s.repeats, img_count: s.imageCount };
  const captions = new Map(plan.images.map((im) => [im.path, im.caption]));
  const errors = plan.images.map((im) => Math.abs(im.assignment.aspectError));
  return {
    numTrainImages: plan.samplesPerEpoch,
    numBatchesPerEpoch: plan.batchesPerEpoch,
    numEpochs: plan.epochs,
    maxTrainSteps: plan.totalSteps,
    datasetDirs,
    tagFrequency: tagFrequency(plan.images, captions),
    buckets: plan.buckets.map((b) => ({ resolution: b.bucket, count: b.samples })),
    meanAspectError: errors.reduce((a, b) => a + b, 0) / errors.length,
  };
}

export interface TrainingMetadataInput {
  config: Pick<
    TrainConfig,
    | "output_name"
    | "learning_rate"
    | "unet_lr"
    | "text_encoder_lr"
    | "train_text_encoder"
    | "gradient_checkpointing"
    | "gradient_accumulation_steps"
    | "lr_warmup_steps"
    | "lr_scheduler"
    | "lora_rank"
    | "lora_alpha"
    | "conv_rank"
    | "conv_alpha"
    | "mixed_precision"
    | "clip_skip"
    | "cache_latents"
    | "seed"
    | "noise_offset"
    | "optimizer"
    | "caption_dropout_rate"
    | "min_snr_gamma"
    | "batch_size"
    | "resolution"
    | "flip_aug"
    | "shuffle_caption"
    | "enable_bucket"
    | "bucket_no_upscale"
    | "min_bucket_reso"
    | "max_bucket_reso"
    | "keep_tokens"
    | "base_model"
  >;
  dataset: DatasetSummaryForMetadata;
  /** Random integer identifying the run (kohya's ss_session_id). */
  sessionId: number;
  /** Unix time in seconds (fractional), as Python's time.time(). */
  trainingStartedAt: number;
  /** SHA-256 of the base model file (A1111's "new" hash) and its legacy model_hash, when known. */
  baseModelSha256?: string;
  baseModelLegacyHash?: string;
}

/** The ss_* keys fixed at the start of training (kohya builds them once, before the first step). */
export function trainingMetadata(input: TrainingMetadataInput): Record<string, string> {
  const c = input.config;
  const d = input.dataset;
  const textEncoderLr = c.train_text_encoder ? (c.text_encoder_lr ?? c.learning_rate) : undefined;
  const m: Record<string, string> = {
    ss_session_id: pyInt(input.sessionId),
    ss_training_started_at: pyFloat(input.trainingStartedAt),
    ss_output_name: c.output_name,
    ss_learning_rate: pyFloat(c.learning_rate),
    ss_text_encoder_lr: pyOptional(textEncoderLr, pyFloat),
    ss_unet_lr: pyOptional(c.unet_lr, pyFloat),
    // kohya's --network_train_unet_only: True when only the UNet LoRA is trained (no lora_te_* keys).
    ss_network_train_unet_only: pyBool(!c.train_text_encoder),
    ss_num_train_images: pyInt(d.numTrainImages),
    ss_num_reg_images: "0",
    ss_num_batches_per_epoch: pyInt(d.numBatchesPerEpoch),
    ss_num_epochs: pyInt(d.numEpochs),
    ss_gradient_checkpointing: pyBool(c.gradient_checkpointing),
    ss_gradient_accumulation_steps: pyInt(c.gradient_accumulation_steps),
    ss_max_train_steps: pyInt(d.maxTrainSteps),
    ss_lr_warmup_steps: Number.isInteger(c.lr_warmup_steps)
      ? pyInt(c.lr_warmup_steps)
      : pyFloat(c.lr_warmup_steps),
    ss_lr_scheduler: c.lr_scheduler,
    ss_network_module: "networks.lora",
    ss_network_dim: pyInt(c.lora_rank),
    ss_network_alpha: pyFloat(c.lora_alpha),
    ss_network_dropout: "None",
    ss_mixed_precision: c.mixed_precision,
    ss_full_fp16: "False",
    ss_v2: "False",
    ss_base_model_version: "sd_v1",
    ss_clip_skip: c.clip_skip > 1 ? pyInt(c.clip_skip) : "None",
    ss_max_token_length: "None",
    ss_cache_latents: pyBool(c.cache_latents),
    ss_seed: pyInt(c.seed),
    ss_lowram: "False",
    ss_noise_offset: c.noise_offset > 0 ? pyFloat(c.noise_offset) : "None",
    ss_training_comment: "None",
    ss_optimizer: c.optimizer,
    ss_max_grad_norm: "1.0",
    ss_caption_dropout_rate: pyFloat(c.caption_dropout_rate),
    ss_min_snr_gamma: pyOptional(c.min_snr_gamma, pyFloat),
    ss_batch_size_per_device: pyInt(c.batch_size),
    ss_total_batch_size: pyInt(c.batch_size * c.gradient_accumulation_steps),
    ss_resolution: `(${c.resolution[0]}, ${c.resolution[1]})`,
    ss_color_aug: "False",
    ss_flip_aug: pyBool(c.flip_aug),
    ss_random_crop: "False",
    ss_shuffle_caption: pyBool(c.shuffle_caption),
    ss_enable_bucket: pyBool(c.enable_bucket),
    ss_bucket_no_upscale: pyBool(c.bucket_no_upscale),
    ss_min_bucket_reso: pyInt(c.min_bucket_reso),
    ss_max_bucket_reso: pyInt(c.max_bucket_reso),
    ss_keep_tokens: pyInt(c.keep_tokens),
    ss_dataset_dirs: pyJsonDumps(d.datasetDirs),
    ss_reg_dataset_dirs: "{}",
    ss_tag_frequency: pyJsonDumps(d.tagFrequency),
    ss_bucket_info: pyJsonDumps({
      buckets: Object.fromEntries(
        d.buckets.map((b, i) => [String(i), { resolution: b.resolution, count: b.count }]),
      ),
      mean_img_ar_error: d.meanAspectError,
    }),
    ss_sd_model_name: basename(c.base_model),
  };
  if (c.conv_rank !== undefined) {
    m.ss_network_args = pyJsonDumps({
      conv_dim: String(c.conv_rank),
      conv_alpha: String(c.conv_alpha ?? c.conv_rank),
    });
  }
  if (input.baseModelLegacyHash !== undefined) m.ss_sd_model_hash = input.baseModelLegacyHash;
  if (input.baseModelSha256 !== undefined) m.ss_new_sd_model_hash = input.baseModelSha256;
  return m;
}

/** The keys kohya adds each time it saves: finish time, steps and epoch so far. */
export function checkpointMetadata(
  base: Record<string, string>,
  at: { steps: number; epoch: number; finishedAt: number },
): Record<string, string> {
  return {
    ...base,
    ss_training_finished_at: pyFloat(at.finishedAt),
    ss_steps: pyInt(at.steps),
    ss_epoch: pyInt(at.epoch),
  };
}

export interface ModelspecInput {
  title: string;
  resolution: [number, number];
  /** Unix time in seconds of the save. */
  timestamp: number;
  clipSkip?: number;
  author?: string;
  description?: string;
  triggerPhrase?: string;
  tags?: string;
}

/** modelspec.* keys (ModelSpec 1.0.0) for an SD1 LoRA, as kohya's build_metadata fills them. */
export function modelspecMetadata(input: ModelspecInput): Record<string, string> {
  const m: Record<string, string> = {
    "modelspec.sai_model_spec": "1.0.0",
    "modelspec.architecture": "stable-diffusion-v1/lora",
    "modelspec.implementation": "diffusers",
    "modelspec.title": input.title,
    "modelspec.resolution": `${input.resolution[0]}x${input.resolution[1]}`,
    "modelspec.date": localIsoSeconds(input.timestamp),
    "modelspec.prediction_type": "epsilon",
  };
  if (input.clipSkip !== undefined && input.clipSkip > 1)
    m["modelspec.encoder_layer"] = String(input.clipSkip);
  if (input.author !== undefined) m["modelspec.author"] = input.author;
  if (input.description !== undefined) m["modelspec.description"] = input.description;
  if (input.triggerPhrase !== undefined) m["modelspec.trigger_phrase"] = input.triggerPhrase;
  if (input.tags !== undefined) m["modelspec.tags"] = input.tags;
  return m;
}

/** datetime.fromtimestamp(int(ts)).isoformat(): local time, seconds, no zone (what kohya writes). */
export function localIsoSeconds(seconds: number): string {
  const d = new Date(Math.floor(seconds) * 1000);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
