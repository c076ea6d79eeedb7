/**
 * The demo base model's architecture: SD1's family (UNet2DConditionModel with cross-attention down/up blocks,
 * AutoencoderKL with 8x downsampling, a CLIP text transformer) at a size that trains on a CPU in minutes.
 *
 * Widths are chosen so the engine's single-file loader derives exactly this config from the tensor shapes with
 * no overrides: GroupNorm uses 32 groups (channels are multiples of 32), the UNet has SD1's 8 heads per level,
 * and the text encoder is 64 wide (one CLIP-style 64-wide head). The text encoder's vocabulary is the demo's own
 * CLIP-format BPE (see bpe-trainer.ts), so its size is only known once the tokenizer is built.
 */
import type { ClipTextConfig, UNetModelConfig, VaeConfig } from "@lora-studio/engine";

/** Images are 64x64; the VAE works at 8x8 latents. */
export const DEMO_IMAGE_SIZE = 64;
export const DEMO_LATENT_SIZE = 8;
export const DEMO_TEXT_WIDTH = 64;

export const DEMO_UNET: UNetModelConfig = {
  in_channels: 4,
  out_channels: 4,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  block_out_channels: [64, 64, 64],
  layers_per_block: 1,
  cross_attention_dim: DEMO_TEXT_WIDTH,
  attention_head_dim: 8,
  num_attention_heads: null,
  transformer_layers_per_block: 1,
  use_linear_projection: false,
  upcast_attention: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  norm_num_groups: 32,
  norm_eps: 1e-5,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  time_embedding_dim: null,
  prediction_type: "epsilon",
};

export const DEMO_VAE: VaeConfig = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  block_out_channels: [64, 32, 32, 64],
  layers_per_block: 1,
  latent_channels: 4,
  norm_num_groups: 32,
  scaling_factor: 0.18215,
};

/** The text encoder for a vocabulary of `vocabSize` tokens (bos = vocabSize - 2, eos = vocabSize - 1 as in CLIP). */
export function demoTextConfig(vocabSize: number): ClipTextConfig {
  return {
    vocab_size: vocabSize,
    hidden_size: DEMO_TEXT_WIDTH,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 1,
    max_position_embeddings: 77,
    hidden_act: "quick_gelu",
    layer_norm_eps: 1e-5,
    eos_token_id: vocabSize - 1,
  };
}
