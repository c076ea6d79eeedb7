/**
 * The training config schema. Key names are exactly the ones LoRA tutorials use (kohya / lora-scripts /
 * diffusers-style), so a user can copy a YAML snippet from a guide and it works. Values are validated by zod;
 * defaults follow kohya's sd-scripts unless noted.
 */
import { z } from "zod";

export const OPTIMIZERS = ["AdamW", "Lion", "SGD"] as const;
export const LR_SCHEDULERS = [
  "constant",
  "constant_with_warmup",
  "linear",
  "cosine",
  "cosine_with_restarts",
] as const;
/** The engine's providers (runtime/providers.ts): "auto" tries cuda, then webgpu, then falls back to the cpu. */
export const EXECUTION_PROVIDERS = ["cpu", "cuda", "tensorrt", "webgpu", "auto"] as const;

/** kohya's default LoRA targets: every Linear / 1x1 conv inside the UNet transformer blocks and CLIP layers. */
export const DEFAULT_TARGET_MODULES = [
  "to_q",
  "to_k",
  "to_v",
  "to_out.0",
  "proj_in",
  "proj_out",
  "ff.net.0.proj",
  "ff.net.2",
  "q_proj",
  "k_proj",
  "v_proj",
  "out_proj",
  "fc1",
  "fc2",
];

/** Enum values are matched case-insensitively ("adamw" is AdamW), then stored in their canonical spelling. */
function caseInsensitiveEnum<const T extends readonly [string, ...string[]]>(values: T) {
  return z.preprocess((v) => {
    if (typeof v !== "string") return v;
    return values.find((c) => c.toLowerCase() === v.toLowerCase()) ?? v;
  }, z.enum(values));
}

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

/** `512`, `"512"`, `"512,768"` or `[512, 768]` (width, height), as kohya's --resolution accepts. */
const resolution = z.preprocess(
  (v) => {
    if (typeof v === "number") return [v, v];
    if (typeof v === "string" && /^\s*\d+\s*(,\s*\d+\s*)?$/.test(v)) {
      const parts = v.split(",").map((p) => Number(p.trim()));
      return parts.length === 1 ? [parts[0], parts[0]] : parts;
    }
    if (Array.isArray(v) && v.length === 1) return [v[0], v[0]];
    return v;
  },
  z.tuple([positiveInt, positiveInt], { error: 'expected a size like 512, "512,768" or [512, 768]' }),
);

/** ".txt" or "txt" both mean the ".txt" sidecar. */
const captionExtension = z
  .string()
  .min(1)
  .transform((s) => (s.startsWith(".") ? s : `.${s}`));

export const configSchema = z.strictObject({
  // --- the tutorial keys ---
  train_data_dir: z.string().min(1),
  metadata_path: z.string().min(1).optional(),
  base_model: z.string().min(1),
  lora_rank: positiveInt.default(8),
  /** Default: equal to lora_rank (scale alpha/rank = 1). */
  lora_alpha: z.number().positive().optional(),
  target_modules: z.array(z.string().min(1)).min(1).default(DEFAULT_TARGET_MODULES),
  batch_size: positiveInt.default(1),
  epochs: positiveInt.default(10),
  learning_rate: z.number().positive().default(1e-4),
  output_dir: z.string().min(1).default("output"),
  /** Save a checkpoint every N optimizer steps; 0 saves only at the end. */
  save_steps: nonNegativeInt.default(0),
  // --- data ---
  resolution: resolution.default([512, 512]),
  enable_bucket: z.boolean().default(true),
  min_bucket_reso: positiveInt.default(256),
  max_bucket_reso: positiveInt.default(1024),
  bucket_reso_steps: positiveInt.default(64),
  bucket_no_upscale: z.boolean().default(false),
  repeats: positiveInt.default(1),
  caption_extension: captionExtension.default(".txt"),
  /** What a picture without a caption does: train with an empty caption and warn, or stop. */
  missing_caption: z.enum(["warn", "error"]).default("warn"),
  shuffle_caption: z.boolean().default(false),
  keep_tokens: nonNegativeInt.default(0),
  caption_dropout_rate: z.number().min(0).max(1).default(0),
  flip_aug: z.boolean().default(false),
  cache_latents: z.boolean().default(true),
  cache_latents_to_disk: z.boolean().default(false),
  // --- schedule ---
  max_train_steps: positiveInt.optional(),
  gradient_accumulation_steps: positiveInt.default(1),
  gradient_checkpointing: z.boolean().default(false),
  mixed_precision: z.enum(["no", "fp16"]).default("no"),
  optimizer: caseInsensitiveEnum(OPTIMIZERS).default("AdamW"),
  lr_scheduler: caseInsensitiveEnum(LR_SCHEDULERS).default("constant"),
  /** Steps, or (like kohya) a fraction of the total steps when below 1. */
  lr_warmup_steps: z.number().nonnegative().default(0),
  lr_scheduler_num_cycles: positiveInt.default(1),
  unet_lr: z.number().positive().optional(),
  /** 0 keeps the text-encoder LoRA fixed (its parameters stay at their initial no-op values). */
  text_encoder_lr: z.number().nonnegative().optional(),
  train_text_encoder: z.boolean().default(false),
  conv_rank: positiveInt.optional(),
  conv_alpha: z.number().positive().optional(),
  min_snr_gamma: z.number().positive().optional(),
  noise_offset: z.number().min(0).default(0),
  seed: nonNegativeInt.default(42),
  clip_skip: z.number().int().min(1).max(12).default(1),
  // --- outputs ---
  /** Prompts inline, or the path of a text file with one prompt per line (kohya's --sample_prompts). */
  sample_prompts: z.union([z.array(z.string()), z.string().min(1)]).optional(),
  sample_every_n_steps: positiveInt.optional(),
  output_name: z
    .string()
    .min(1)
    .regex(/^[^/\\]+$/, "must be a file name without folders")
    .default("lora"),
  save_precision: z.enum(["float", "fp16", "bf16"]).default("fp16"),
  resume: z.string().min(1).optional(),
  // --- runtime ---
  execution_provider: caseInsensitiveEnum(EXECUTION_PROVIDERS).default("cpu"),
  threads: positiveInt.optional(),
});

/** The config as written in the file (after defaults), paths still as the user wrote them. */
export type RawConfig = z.output<typeof configSchema>;
export type Optimizer = (typeof OPTIMIZERS)[number];
export type LrSchedulerName = (typeof LR_SCHEDULERS)[number];

/** Every key the schema knows; used for "did you mean" suggestions. */
export const CONFIG_KEYS: readonly string[] = Object.keys(configSchema.shape);

/** The config after loading: paths absolute, derived values filled in. */
export interface TrainConfig extends Omit<RawConfig, "lora_alpha" | "conv_alpha" | "sample_prompts"> {
  lora_alpha: number;
  conv_alpha?: number;
  /** The prompts themselves (a sample_prompts file is read at load time). */
  sample_prompts: string[];
  /** Absolute path of the config file this came from (undefined for configs built in code). */
  config_path?: string;
}
