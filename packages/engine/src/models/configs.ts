/**
 * Model configs with diffusers' / transformers' field names (so a diffusers config.json parses as is), the
 * defaults those libraries apply, and the per-block values resolved once (heads per level, etc.).
 */

export interface UNetModelConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  mid_block_type: string | null;
  block_out_channels: number[];
  layers_per_block: number;
  cross_attention_dim: number;
  /** Legacy diffusers meaning: the number of heads when num_attention_heads is null (SD1/SD2 configs). */
  attention_head_dim: number | number[];
  num_attention_heads: number | number[] | null;
  transformer_layers_per_block: number | number[];
  use_linear_projection: boolean;
  upcast_attention: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  norm_num_groups: number;
  norm_eps: number;
  conv_in_kernel: number;
  conv_out_kernel: number;
  time_embedding_dim: number | null;
  /** "epsilon" | "v_prediction" (from the scheduler config or the family). */
  prediction_type: "epsilon" | "v_prediction";
}

export interface VaeConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  scaling_factor: number;
}

export interface ClipTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: "quick_gelu" | "gelu";
  layer_norm_eps: number;
  eos_token_id: number;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    message: string,
  ) {
    super(`${file}: ${field}: ${message}`);
    this.name = "ConfigError";
  }
}

type Json = Record<string, unknown>;

function num(j: Json, file: string, field: string, dflt?: number): number {
  const v = j[field] ?? dflt;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new ConfigError(file, field, `expected a number, got ${JSON.stringify(v)}`);
  return v;
}

function strs(j: Json, file: string, field: string): string[] {
  const v = j[field];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
    throw new ConfigError(file, field, "expected a list of block type names");
  return v;
}

function nums(j: Json, file: string, field: string): number[] {
  const v = j[field];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "number"))
    throw new ConfigError(file, field, "expected a list of numbers");
  return v;
}

function numOrList(
  j: Json,
  file: string,
  field: string,
  dflt: number | number[] | null,
): number | number[] | null {
  const v = j[field] ?? dflt;
  if (v === null || typeof v === "number") return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "number")) return v;
  throw new ConfigError(file, field, `expected a number or a list, got ${JSON.stringify(v)}`);
}

/** diffusers UNet2DConditionModel config.json (+ prediction type from the scheduler) with library defaults. */
export function parseUNetConfig(j: Json, file: string, predictionType = "epsilon"): UNetModelConfig {
  const cross = j.cross_attention_dim ?? 1280;
  if (typeof cross !== "number")
    throw new ConfigError(file, "cross_attention_dim", "per-block cross_attention_dim is not supported");
  if (j.addition_embed_type)
    throw new ConfigError(
      file,
      "addition_embed_type",
      `${String(j.addition_embed_type)} (SDXL) is not supported yet`,
    );
  if (predictionType !== "epsilon" && predictionType !== "v_prediction")
    throw new ConfigError(file, "prediction_type", `unsupported prediction type ${predictionType}`);
  return {
    in_channels: num(j, file, "in_channels", 4),
    out_channels: num(j, file, "out_channels", 4),
    down_block_types: strs(j, file, "down_block_types"),
    up_block_types: strs(j, file, "up_block_types"),
    mid_block_type: (j.mid_block_type as string | null | undefined) ?? "UNetMidBlock2DCrossAttn",
    block_out_channels: nums(j, file, "block_out_channels"),
    layers_per_block: num(j, file, "layers_per_block", 2),
    cross_attention_dim: cross,
    attention_head_dim: numOrList(j, file, "attention_head_dim", 8) as number | number[],
    num_attention_heads: numOrList(j, file, "num_attention_heads", null),
    transformer_layers_per_block: numOrList(j, file, "transformer_layers_per_block", 1) as number | number[],
    use_linear_projection: Boolean(j.use_linear_projection ?? false),
    upcast_attention: Boolean(j.upcast_attention ?? false),
    flip_sin_to_cos: Boolean(j.flip_sin_to_cos ?? true),
    freq_shift: num(j, file, "freq_shift", 0),
    norm_num_groups: num(j, file, "norm_num_groups", 32),
    norm_eps: num(j, file, "norm_eps", 1e-5),
    conv_in_kernel: num(j, file, "conv_in_kernel", 3),
    conv_out_kernel: num(j, file, "conv_out_kernel", 3),
    time_embedding_dim: (j.time_embedding_dim as number | null | undefined) ?? null,
    prediction_type: predictionType,
  };
}

export function parseVaeConfig(j: Json, file: string): VaeConfig {
  return {
    in_channels: num(j, file, "in_channels", 3),
    out_channels: num(j, file, "out_channels", 3),
    down_block_types: strs(j, file, "down_block_types"),
    up_block_types: strs(j, file, "up_block_types"),
    block_out_channels: nums(j, file, "block_out_channels"),
    layers_per_block: num(j, file, "layers_per_block", 1),
    latent_channels: num(j, file, "latent_channels", 4),
    norm_num_groups: num(j, file, "norm_num_groups", 32),
    scaling_factor: num(j, file, "scaling_factor", 0.18215),
  };
}

export function parseClipTextConfig(j: Json, file: string): ClipTextConfig {
  const act = j.hidden_act ?? "quick_gelu";
  if (act !== "quick_gelu" && act !== "gelu")
    throw new ConfigError(file, "hidden_act", `unsupported activation ${String(act)}`);
  return {
    vocab_size: num(j, file, "vocab_size", 49408),
    hidden_size: num(j, file, "hidden_size"),
    intermediate_size: num(j, file, "intermediate_size"),
    num_hidden_layers: num(j, file, "num_hidden_layers"),
    num_attention_heads: num(j, file, "num_attention_heads"),
    max_position_embeddings: num(j, file, "max_position_embeddings", 77),
    hidden_act: act,
    layer_norm_eps: num(j, file, "layer_norm_eps", 1e-5),
    eos_token_id: num(j, file, "eos_token_id", 2),
  };
}

/** A per-level value of a UNet config (number = same for every level). */
export function perLevel(v: number | number[], levels: number, field: string): number[] {
  if (typeof v === "number") return new Array(levels).fill(v);
  if (v.length !== levels)
    throw new ConfigError("unet config", field, `${v.length} entries for ${levels} levels`);
  return v;
}

/** Heads per down level: num_attention_heads, else the legacy attention_head_dim (which holds head counts). */
export function unetHeads(c: UNetModelConfig): number[] {
  return perLevel(
    c.num_attention_heads ?? c.attention_head_dim,
    c.block_out_channels.length,
    "attention heads",
  );
}
