/**
 * The standard configs of the three families, as published in their diffusers repos
 * (runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1, stabilityai/stable-diffusion-xl-base-1.0).
 * Only the numbers live here; every module name is derived from them by unet.ts / text-encoder.ts.
 */
import type { ModelConfigs, ModelFamily, TextEncoderConfig, UNetConfig } from "./types.ts";

const sd1Unet: UNetConfig = {
  in_channels: 4,
  out_channels: 4,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  cross_attention_dim: 768,
  attention_head_dim: 8,
  use_linear_projection: false,
};

const sd2Unet: UNetConfig = {
  ...sd1Unet,
  cross_attention_dim: 1024,
  attention_head_dim: [5, 10, 20, 20],
  use_linear_projection: true,
};

const sdxlUnet: UNetConfig = {
  in_channels: 4,
  out_channels: 4,
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  block_out_channels: [320, 640, 1280],
  layers_per_block: 2,
  cross_attention_dim: 2048,
  attention_head_dim: [5, 10, 20],
  transformer_layers_per_block: [1, 2, 10],
  use_linear_projection: true,
  addition_embed_type: "text_time",
  projection_class_embeddings_input_dim: 2816,
};

/** CLIP ViT-L/14 text tower (SD1, SDXL te1). */
const clipL: TextEncoderConfig = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
};
/** OpenCLIP ViT-H/14 text tower as diffusers ships it for SD2: 23 layers (the 24th is never used). */
const openClipH: TextEncoderConfig = {
  hidden_size: 1024,
  intermediate_size: 4096,
  num_hidden_layers: 23,
  num_attention_heads: 16,
};
/** OpenCLIP ViT-bigG/14 text tower (SDXL te2). */
const openClipBigG: TextEncoderConfig = {
  hidden_size: 1280,
  intermediate_size: 5120,
  num_hidden_layers: 32,
  num_attention_heads: 20,
};

export const familyPresets: Record<Exclude<ModelFamily, "unknown">, ModelConfigs> = {
  sd1: {
    unet: sd1Unet,
    textEncoders: { te: clipL },
    textLayouts: { te: { style: "hf-clip", prefix: "cond_stage_model.transformer." } },
  },
  sd2: {
    unet: sd2Unet,
    textEncoders: { te: openClipH },
    textLayouts: { te: { style: "open-clip", prefix: "cond_stage_model.model." } },
  },
  sdxl: {
    unet: sdxlUnet,
    textEncoders: { te1: clipL, te2: openClipBigG },
    textLayouts: {
      te1: { style: "hf-clip", prefix: "conditioner.embedders.0.transformer." },
      te2: { style: "open-clip", prefix: "conditioner.embedders.1.model." },
    },
  },
};

export function presetFor(family: ModelFamily): ModelConfigs {
  if (family === "unknown") throw new Error('No module tree for family "unknown": pass a config instead');
  return familyPresets[family];
}
