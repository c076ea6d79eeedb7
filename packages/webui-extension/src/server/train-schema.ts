/**
 * What the Train tab needs from the trainer: the config keys with their defaults (taken by parsing a
 * minimal config with the trainer's own zod schema, so they cannot drift), the enum choices, and validation
 * of a config with the same code `pnpm train` uses.
 */
import { ConfigError } from "../../../trainer/src/config/errors.ts";
import { parseConfig } from "../../../trainer/src/config/load.ts";
import {
  CONFIG_KEYS,
  configSchema,
  EXECUTION_PROVIDERS,
  LR_SCHEDULERS,
  OPTIMIZERS,
} from "../../../trainer/src/config/schema.ts";
import { DatasetError, planDataset } from "../../../trainer/src/dataset/plan.ts";
import { formatPlan } from "../../../trainer/src/dataset/plan-text.ts";

/** Keys the tutorials start with; everything else is folded under "advanced" in the form. */
export const BASIC_KEYS = [
  "train_data_dir",
  "base_model",
  "output_name",
  "lora_rank",
  "lora_alpha",
  "learning_rate",
  "batch_size",
  "epochs",
  "repeats",
  "resolution",
  "save_steps",
];

export function trainSchema() {
  const parsed = configSchema.parse({ train_data_dir: "-", base_model: "-" }) as Record<string, unknown>;
  const defaults: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS)
    if (parsed[k] !== undefined && k !== "train_data_dir" && k !== "base_model") defaults[k] = parsed[k];
  return {
    keys: [...CONFIG_KEYS],
    basic: BASIC_KEYS.filter((k) => CONFIG_KEYS.includes(k)),
    required: ["train_data_dir", "base_model"],
    defaults,
    choices: {
      optimizer: [...OPTIMIZERS],
      lr_scheduler: [...LR_SCHEDULERS],
      execution_provider: [...EXECUTION_PROVIDERS],
      mixed_precision: ["no", "fp16"],
      save_precision: ["float", "fp16", "bf16"],
      missing_caption: ["warn", "error"],
    },
  };
}

/** Validates YAML config text; returns the resolved config or the trainer's issues. */
export function validateTrainConfig(yaml: string) {
  try {
    return { ok: true as const, config: parseConfig(yaml, "webui-config.yaml") };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false as const, message: err.message, issues: err.issues };
    throw err;
  }
}

/**
 * The trainer's dry-run plan of a config (images, captions, repeats, buckets, the step arithmetic), from
 * the same planDataset `pnpm train --dry-run` prints. Needs no training engine.
 */
export async function planTrainConfig(yaml: string) {
  const checked = validateTrainConfig(yaml);
  if (!checked.ok) return checked;
  try {
    const plan = await planDataset(checked.config);
    return {
      ok: true as const,
      text: formatPlan(plan),
      images: plan.images.length,
      stepsPerEpoch: plan.stepsPerEpoch,
      totalSteps: plan.totalSteps,
      warnings: plan.warnings,
    };
  } catch (err) {
    if (err instanceof DatasetError) return { ok: false as const, message: err.message, issues: [] };
    throw err;
  }
}
