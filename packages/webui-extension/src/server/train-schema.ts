/**
 * What the Train tab needs from the trainer: the config keys with their defaults (taken by parsing a
 * minimal config with the trainer's own zod schema, so they cannot drift), the enum choices, and validation
 * of a config with the same code `pnpm train` uses.
 */
import { join } from "node:path";
import {
  CONFIG_KEYS,
  ConfigError,
  configSchema,
  DatasetError,
  EXECUTION_PROVIDERS,
  formatPlan,
  LR_SCHEDULERS,
  OPTIMIZERS,
  planDataset,
} from "@lora-studio/trainer";
import type { JobStore } from "../jobs/store.ts";
import type { JobEnvironment } from "../jobs/types.ts";
import { etaFromHistory } from "../training/eta.ts";
import { activationTextFrom } from "../training/hot-load.ts";
import { resolveJobConfig, runsDir } from "../training/job-config.ts";

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

/**
 * Validates YAML config text as a training job would run it (relative paths against the datasets folder,
 * the output in a run folder: training/job-config.ts); returns the resolved config or the trainer's issues.
 */
export function validateTrainConfig(yaml: string, env: Pick<JobEnvironment, "datasetsDir" | "dataDir">) {
  try {
    const config = resolveJobConfig(yaml, env.datasetsDir, join(runsDir(env.dataDir), "(new run)"));
    return { ok: true as const, config };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false as const, message: err.message, issues: err.issues };
    throw err;
  }
}

/**
 * The trainer's dry-run plan of a config (images, captions, repeats, buckets, the step arithmetic), from
 * the same planDataset `pnpm train --dry-run` prints, plus the activation text a hot-loaded LoRA will get.
 */
export async function planTrainConfig(
  yaml: string,
  env: Pick<JobEnvironment, "datasetsDir" | "dataDir">,
  store?: JobStore,
) {
  const checked = validateTrainConfig(yaml, env);
  if (!checked.ok) return checked;
  const config = checked.config;
  try {
    const plan = await planDataset(config);
    return {
      ok: true as const,
      text: formatPlan(plan),
      images: plan.images.length,
      repeats: plan.images.reduce((n, im) => n + im.repeats, 0),
      stepsPerEpoch: plan.stepsPerEpoch,
      epochs: plan.epochs,
      totalSteps: plan.totalSteps,
      buckets: plan.buckets.map((b) => b.bucket),
      warnings: plan.warnings,
      eta: store === undefined ? null : etaFromHistory(store, config, plan.totalSteps),
      activationText: activationTextFrom(
        plan.images.map((im) => im.caption),
        config.keep_tokens,
        config.output_name,
      ),
    };
  } catch (err) {
    if (err instanceof DatasetError) return { ok: false as const, message: err.message, issues: [] };
    throw err;
  }
}
