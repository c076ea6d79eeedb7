/**
 * Import of kohya sd-scripts settings: a `--config_file` .toml (sections such as [model_arguments] are
 * flattened, as sd-scripts does) or the flat .json the lora-scripts / kohya_ss GUIs save. Each key is mapped to
 * this project's config key, converted (with a note), reported as unsupported, reported as having no effect
 * here, or reported as unknown: nothing is dropped silently.
 */
import { readFile } from "node:fs/promises";
import { extname, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { stringify as stringifyYaml } from "yaml";
import { ConfigError } from "./errors.ts";

export type KohyaReportKind = "converted" | "unsupported" | "ignored" | "unknown";

export interface KohyaReport {
  key: string;
  kind: KohyaReportKind;
  message: string;
}

export interface KohyaImport {
  /** Keys of this project's config (YAML-ready; paths as written in the source file). */
  config: Record<string, unknown>;
  reports: KohyaReport[];
}

/** kohya key -> our key, for values that carry over unchanged. */
const SAME_MEANING: Record<string, string> = {
  pretrained_model_name_or_path: "base_model",
  network_dim: "lora_rank",
  network_alpha: "lora_alpha",
  train_batch_size: "batch_size",
  max_train_epochs: "epochs",
  max_train_steps: "max_train_steps",
  learning_rate: "learning_rate",
  unet_lr: "unet_lr",
  text_encoder_lr: "text_encoder_lr",
  lr_warmup_steps: "lr_warmup_steps",
  lr_scheduler_num_cycles: "lr_scheduler_num_cycles",
  enable_bucket: "enable_bucket",
  min_bucket_reso: "min_bucket_reso",
  max_bucket_reso: "max_bucket_reso",
  bucket_reso_steps: "bucket_reso_steps",
  bucket_no_upscale: "bucket_no_upscale",
  output_dir: "output_dir",
  output_name: "output_name",
  save_every_n_steps: "save_steps",
  train_data_dir: "train_data_dir",
  caption_extension: "caption_extension",
  shuffle_caption: "shuffle_caption",
  keep_tokens: "keep_tokens",
  caption_dropout_rate: "caption_dropout_rate",
  seed: "seed",
  clip_skip: "clip_skip",
  gradient_checkpointing: "gradient_checkpointing",
  gradient_accumulation_steps: "gradient_accumulation_steps",
  min_snr_gamma: "min_snr_gamma",
  noise_offset: "noise_offset",
  cache_latents: "cache_latents",
  cache_latents_to_disk: "cache_latents_to_disk",
  flip_aug: "flip_aug",
  sample_prompts: "sample_prompts",
  sample_every_n_steps: "sample_every_n_steps",
  resume: "resume",
};

/** Keys that only tune kohya's PyTorch runtime or GUI; they have no counterpart and no effect here. */
const NO_EFFECT_HERE: Record<string, string> = {
  xformers: "attention kernels are chosen by the engine",
  sdpa: "attention kernels are chosen by the engine",
  mem_eff_attn: "attention kernels are chosen by the engine",
  lowram: "memory handling is automatic",
  max_data_loader_n_workers: "data loading runs in this process",
  persistent_data_loader_workers: "data loading runs in this process",
  logging_dir: "logs are written under output_dir",
  log_prefix: "logs are written under output_dir",
  log_with: "TensorBoard files and metrics.jsonl are always written",
  save_model_as: "the LoRA is always written as .safetensors",
  model_train_type: "lora-scripts GUI field",
  save_state: "the training state is always saved with each checkpoint",
  max_token_length: "captions use CLIP's 77-token window",
  prior_loss_weight: "regularization images are not supported",
  network_train_unet_only: "mapped to train_text_encoder",
};

export async function fromKohya(path: string): Promise<KohyaImport> {
  const file = resolve(path);
  const text = await readFile(file, "utf8").catch((err: Error) => {
    throw new ConfigError(file, [{ keyPath: "", message: `cannot read: ${err.message}` }]);
  });
  let data: unknown;
  try {
    data = extname(file).toLowerCase() === ".json" ? JSON.parse(text) : parseToml(text);
  } catch (err) {
    throw new ConfigError(file, [
      { keyPath: "", message: `not valid ${extname(file)}: ${(err as Error).message}` },
    ]);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigError(file, [{ keyPath: "", message: "expected a table of settings" }]);
  }
  return mapKohyaSettings(flattenSections(data as Record<string, unknown>));
}

/** sd-scripts reads `[section] key = v` tables as if every key were top level. */
function flattenSections(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) {
    if (typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date))
      Object.assign(out, v);
    else out[k] = v;
  }
  return out;
}

export function mapKohyaSettings(settings: Record<string, unknown>): KohyaImport {
  const config: Record<string, unknown> = {};
  const reports: KohyaReport[] = [];
  const report = (key: string, kind: KohyaReportKind, message: string) =>
    reports.push({ key, kind, message });

  for (const [key, value] of Object.entries(settings)) {
    // GUIs write empty strings for unset fields.
    if (value === "" || value === null || value === undefined) continue;
    if (key in SAME_MEANING) {
      config[SAME_MEANING[key]] = value;
      continue;
    }
    switch (key) {
      case "resolution":
        config.resolution = convertResolution(value, report);
        break;
      case "lr_scheduler":
        mapScheduler(String(value), config, report);
        break;
      case "optimizer_type":
        mapOptimizer(String(value), config, report);
        break;
      case "mixed_precision":
        if (value === "fp16" || value === "no") config.mixed_precision = value;
        else {
          config.mixed_precision = "no";
          report(key, "converted", `"${String(value)}" is not available here; training in fp32 ("no")`);
        }
        break;
      case "save_precision":
        config.save_precision = value;
        break;
      case "network_module":
        if (value !== "networks.lora") {
          report(
            key,
            "unsupported",
            `"${String(value)}" is not supported; only networks.lora (LoRA / LoCon) is trained`,
          );
        }
        break;
      case "network_args":
        mapNetworkArgs(value, config, report);
        break;
      case "network_train_unet_only":
        config.train_text_encoder = !value;
        break;
      case "color_aug":
        if (value)
          report(key, "unsupported", "color augmentation is not supported; images are used as they are");
        break;
      case "save_every_n_epochs":
        report(key, "unsupported", "checkpoints are saved by steps here: set save_steps");
        break;
      case "v2":
      case "v_parameterization":
        if (value) report(key, "unsupported", "SD2 / v-prediction training is not supported; SD1 only");
        break;
      default:
        if (key in NO_EFFECT_HERE) report(key, "ignored", NO_EFFECT_HERE[key]);
        else
          report(key, "unknown", `unknown kohya setting (value ${JSON.stringify(value)}) was not imported`);
    }
  }
  // sd-scripts' defaults differ from ours (network_dim 4, network_alpha 1); keep the run the user had.
  if (config.lora_rank === undefined) {
    config.lora_rank = 4;
    report("network_dim", "converted", "not set: sd-scripts' default 4 is written out");
  }
  if (config.lora_alpha === undefined) {
    config.lora_alpha = 1;
    report("network_alpha", "converted", "not set: sd-scripts' default 1 is written out (scale 1/rank)");
  }
  // In sd-scripts max_train_epochs overrides max_train_steps; here max_train_steps would win, so keep epochs.
  if (config.epochs !== undefined && config.max_train_steps !== undefined) {
    delete config.max_train_steps;
    report(
      "max_train_steps",
      "converted",
      "dropped: max_train_epochs overrides it in sd-scripts, and epochs is kept",
    );
  }
  return { config, reports };
}

function convertResolution(
  value: unknown,
  report: (k: string, kind: KohyaReportKind, m: string) => void,
): unknown {
  if (typeof value === "number") return value;
  const parts = String(value)
    .split(",")
    .map((s) => Number(s.trim()));
  if (parts.length === 0 || parts.length > 2 || parts.some((n) => !Number.isInteger(n) || n <= 0)) {
    report("resolution", "unsupported", `cannot read "${String(value)}" as a resolution`);
    return undefined;
  }
  return parts.length === 1 || parts[0] === parts[1] ? parts[0] : parts;
}

function mapScheduler(
  value: string,
  config: Record<string, unknown>,
  report: (k: string, kind: KohyaReportKind, m: string) => void,
) {
  const supported = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts"];
  if (supported.includes(value)) config.lr_scheduler = value;
  else if (value === "polynomial") {
    config.lr_scheduler = "linear";
    report("lr_scheduler", "converted", '"polynomial" (power 1 by default) is the same as "linear"');
  } else report("lr_scheduler", "unsupported", `"${value}" is not available; using "constant"`);
}

function mapOptimizer(
  value: string,
  config: Record<string, unknown>,
  report: (k: string, kind: KohyaReportKind, m: string) => void,
) {
  const v = value.toLowerCase();
  const exact: Record<string, string> = { adamw: "AdamW", lion: "Lion", sgd: "SGD" };
  const near: Record<string, string> = {
    adamw8bit: "AdamW",
    pagedadamw8bit: "AdamW",
    lion8bit: "Lion",
    sgdnesterov: "SGD",
  };
  if (v in exact) config.optimizer = exact[v];
  else if (v in near) {
    config.optimizer = near[v];
    report(
      "optimizer_type",
      "converted",
      `"${value}" -> ${near[v]} (full-precision states, same update rule)`,
    );
  } else report("optimizer_type", "unsupported", `"${value}" is not available; using AdamW`);
}

/** network_args = ["conv_dim=4", "conv_alpha=1"] is kohya's LoCon switch. */
function mapNetworkArgs(
  value: unknown,
  config: Record<string, unknown>,
  report: (k: string, kind: KohyaReportKind, m: string) => void,
) {
  const items = Array.isArray(value) ? value.map(String) : String(value).split(/\s+/);
  for (const item of items) {
    const [k, v] = item.split("=").map((s) => s.trim());
    if ((k === "conv_dim" || k === "conv_rank") && v !== undefined) config.conv_rank = Number(v);
    else if (k === "conv_alpha" && v !== undefined) config.conv_alpha = Number(v);
    else report(`network_args.${k}`, "unsupported", `network argument "${item}" is not supported`);
  }
}

/** The imported config as a YAML file, the reports as comments at the top. */
export function kohyaImportToYaml(imported: KohyaImport, source: string): string {
  const lines = [`# imported from ${source}`];
  for (const r of imported.reports) lines.push(`# ${r.kind}: ${r.key}: ${r.message}`);
  return `${lines.join("\n")}\n${stringifyYaml(imported.config)}`;
}
