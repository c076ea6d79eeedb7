/** Types of the architecture module: model configs (diffusers' field names) and the module specs derived from them. */
import type { Component, ModelFamily } from "../adapters/types.ts";

export type { Component, ModelFamily };

/** One Linear or Conv2d of a model, by its diffusers module path inside its component. */
export interface ModuleSpec {
  component: Component;
  /** diffusers module path, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q". */
  path: string;
  layer: "linear" | "conv";
  inFeatures: number;
  outFeatures: number;
  /** [kh, kw]; [1, 1] for a linear layer. */
  kernel: [number, number];
  /** Attention heads, on an attention projection (to_q/k/v/out.0, q/k/v/out_proj). */
  heads?: number;
}

/** The subset of diffusers' UNet2DConditionModel config that decides which layers exist and their shapes. */
export interface UNetConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  mid_block_type?: string | null;
  block_out_channels: number[];
  layers_per_block: number;
  cross_attention_dim: number | number[];
  /** Legacy meaning: number of heads when num_attention_heads is null (the SD1/SD2 configs). */
  attention_head_dim: number | number[];
  num_attention_heads?: number | number[] | null;
  transformer_layers_per_block?: number | number[];
  use_linear_projection?: boolean;
  conv_in_kernel?: number;
  conv_out_kernel?: number;
  addition_embed_type?: string | null;
  projection_class_embeddings_input_dim?: number | null;
  time_embedding_dim?: number | null;
}

/** The subset of transformers' CLIPTextConfig that decides the text encoder's layers. */
export interface TextEncoderConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
}

/**
 * How a text encoder is stored in the original single-file checkpoint:
 * - "hf-clip": transformers' CLIPTextModel names under a prefix (SD1 `cond_stage_model.transformer.`,
 *   SDXL `conditioner.embedders.0.transformer.`);
 * - "open-clip": OpenCLIP's `transformer.resblocks.N` with a fused `attn.in_proj_weight` (SD2
 *   `cond_stage_model.model.`, SDXL `conditioner.embedders.1.model.`).
 */
export interface TextEncoderLayout {
  style: "hf-clip" | "open-clip";
  prefix: string;
}

/** Everything needed to build the module tree of one model and map it onto its checkpoint layouts. */
export interface ModelConfigs {
  unet: UNetConfig;
  /** The text encoders by component: SD1/SD2 `{ te }`, SDXL `{ te1, te2 }`. */
  textEncoders: Partial<Record<Component, TextEncoderConfig>>;
  /** Original single-file layout of each text encoder. */
  textLayouts: Partial<Record<Component, TextEncoderLayout>>;
}
