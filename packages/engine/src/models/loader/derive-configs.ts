/**
 * Configs of a single-file (original LDM layout) checkpoint, read off its tensor names and shapes: the file has no
 * config, so block counts, widths and layer counts come from the tensors, and what shapes cannot tell (attention
 * heads) from the families' conventions: SD1 UNets use 8 heads per level, SD2 UNets 64-wide heads; CLIP text
 * towers use 64-wide heads (ViT-L 12, OpenCLIP-H 16). Anything else is passed as an override.
 */
import type { ClipTextConfig, UNetModelConfig, VaeConfig } from "../configs.ts";
import { CheckpointError } from "./errors.ts";

export type ShapeMap = ReadonlyMap<string, readonly number[]>;

const U = "model.diffusion_model.";
const V = "first_stage_model.";

function need(shapes: ShapeMap, file: string, key: string): readonly number[] {
  const s = shapes.get(key);
  if (!s)
    throw new CheckpointError(
      "MISSING_TENSOR",
      file,
      `cannot derive the model config: "${key}" is missing`,
      key,
    );
  return s;
}

function countIndexed(shapes: ShapeMap, prefix: string): number {
  let n = 0;
  const re = new RegExp(`^${prefix.replaceAll(".", "\\.")}(\\d+)\\.`);
  for (const k of shapes.keys()) {
    const m = re.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

export interface UNetDeriveOptions {
  /** "sd1": 8 heads per level; "sd2": heads = channels / 64. */
  headConvention: "sd1" | "sd2";
  /** Explicit heads (per level or one for all), for models off the conventions. */
  heads?: number | number[];
  predictionType: "epsilon" | "v_prediction";
}

export function deriveUNetConfig(shapes: ShapeMap, file: string, o: UNetDeriveOptions): UNetModelConfig {
  const convIn = need(shapes, file, `${U}input_blocks.0.0.weight`);
  const ch0 = convIn[0];
  // input_blocks: [conv_in, (L resnet blocks, downsampler) per level..., without the last downsampler].
  let firstDown = -1;
  for (
    let k = 1;
    shapes.has(`${U}input_blocks.${k}.0.in_layers.2.weight`) ||
    shapes.has(`${U}input_blocks.${k}.0.op.weight`);
    k++
  ) {
    if (shapes.has(`${U}input_blocks.${k}.0.op.weight`)) {
      firstDown = k;
      break;
    }
  }
  const nInput = countIndexed(shapes, `${U}input_blocks.`);
  const L = firstDown > 0 ? firstDown - 1 : nInput - 1;
  // conv_in + levels * (L + 1) - 1 blocks (the last level has no downsampler).
  const levels = nInput / (L + 1);
  if (!Number.isInteger(levels))
    throw new CheckpointError(
      "BAD_CONFIG",
      file,
      `UNet has ${nInput} input blocks, not a multiple of ${L + 1}`,
    );
  const blockOut: number[] = [];
  const down: string[] = [];
  const up: string[] = [];
  const depth: number[] = [];
  let linearProjection = false;
  let cross = 0;
  for (let i = 0; i < levels; i++) {
    const first = `${U}input_blocks.${1 + i * (L + 1)}`;
    blockOut.push(need(shapes, file, `${first}.0.in_layers.2.weight`)[0]);
    const attn = shapes.get(`${first}.1.proj_in.weight`);
    down.push(attn ? "CrossAttnDownBlock2D" : "DownBlock2D");
    depth.push(attn ? countIndexed(shapes, `${first}.1.transformer_blocks.`) : 1);
    if (attn) {
      linearProjection = attn.length === 2;
      cross = need(shapes, file, `${first}.1.transformer_blocks.0.attn2.to_k.weight`)[1];
    }
    up.push(
      shapes.has(`${U}output_blocks.${i * (L + 1)}.1.proj_in.weight`) ? "CrossAttnUpBlock2D" : "UpBlock2D",
    );
  }
  if (cross === 0) throw new CheckpointError("BAD_CONFIG", file, "UNet has no cross-attention blocks");
  const heads = blockOut.map((c, i) => {
    const h =
      o.heads !== undefined
        ? typeof o.heads === "number"
          ? o.heads
          : o.heads[i]
        : o.headConvention === "sd1"
          ? 8
          : c / 64;
    if (!Number.isInteger(h) || h < 1 || c % h !== 0)
      throw new CheckpointError(
        "BAD_CONFIG",
        file,
        `UNet level ${i} (${c} channels): ${h} attention heads; pass unetHeads`,
      );
    return h;
  });
  const out = need(shapes, file, `${U}out.2.weight`);
  const temb = need(shapes, file, `${U}time_embed.0.weight`)[0];
  return {
    in_channels: convIn[1],
    out_channels: out[0],
    down_block_types: down,
    up_block_types: up,
    mid_block_type: shapes.has(`${U}middle_block.1.proj_in.weight`) ? "UNetMidBlock2DCrossAttn" : null,
    block_out_channels: blockOut,
    layers_per_block: L,
    cross_attention_dim: cross,
    attention_head_dim: heads.every((h) => h === heads[0]) ? heads[0] : heads,
    num_attention_heads: null,
    transformer_layers_per_block: depth.every((d) => d === depth[0]) ? depth[0] : depth,
    use_linear_projection: linearProjection,
    // Only matters for fp16 attention; these graphs compute attention in fp32.
    upcast_attention: false,
    flip_sin_to_cos: true,
    freq_shift: 0,
    norm_num_groups: 32,
    norm_eps: 1e-5,
    conv_in_kernel: convIn[2],
    conv_out_kernel: out[2],
    // diffusers writes null for the default width 4 x block_out_channels[0].
    time_embedding_dim: temb === 4 * ch0 ? null : temb,
    prediction_type: o.predictionType,
  };
}

export function deriveVaeConfig(shapes: ShapeMap, file: string, scalingFactor: number): VaeConfig {
  const convIn = need(shapes, file, `${V}encoder.conv_in.weight`);
  const levels = countIndexed(shapes, `${V}encoder.down.`);
  const L = countIndexed(shapes, `${V}encoder.down.0.block.`);
  const blockOut = Array.from(
    { length: levels },
    (_, i) => need(shapes, file, `${V}encoder.down.${i}.block.0.conv1.weight`)[0],
  );
  return {
    in_channels: convIn[1],
    out_channels: need(shapes, file, `${V}decoder.conv_out.weight`)[0],
    down_block_types: new Array(levels).fill("DownEncoderBlock2D"),
    up_block_types: new Array(levels).fill("UpDecoderBlock2D"),
    block_out_channels: blockOut,
    layers_per_block: L,
    latent_channels: need(shapes, file, `${V}post_quant_conv.weight`)[0],
    norm_num_groups: 32,
    scaling_factor: scalingFactor,
  };
}

/** transformers CLIPTextModel config of an "hf-clip" layout text encoder under `prefix`. */
export function deriveClipTextConfig(
  shapes: ShapeMap,
  file: string,
  prefix: string,
  heads?: number,
): ClipTextConfig {
  const tok = need(shapes, file, `${prefix}text_model.embeddings.token_embedding.weight`);
  const pos = need(shapes, file, `${prefix}text_model.embeddings.position_embedding.weight`);
  const hidden = tok[1];
  const nHeads = heads ?? hidden / 64;
  if (!Number.isInteger(nHeads) || nHeads < 1) {
    throw new CheckpointError(
      "BAD_CONFIG",
      file,
      `text encoder width ${hidden} is not a multiple of CLIP's 64-wide heads: pass textEncoderHeads`,
    );
  }
  return {
    vocab_size: tok[0],
    hidden_size: hidden,
    intermediate_size: need(shapes, file, `${prefix}text_model.encoder.layers.0.mlp.fc1.weight`)[0],
    num_hidden_layers: countIndexed(shapes, `${prefix}text_model.encoder.layers.`),
    num_attention_heads: nHeads,
    max_position_embeddings: pos[0],
    hidden_act: "quick_gelu",
    layer_norm_eps: 1e-5,
    eos_token_id: 2,
  };
}

/**
 * CLIPTextModel config of an OpenCLIP tower (SD2 `cond_stage_model.model.`), as diffusers converts it: SD2
 * conditions on the penultimate layer, so the converted model has one layer fewer than the file (the last
 * resblock is never used and is reported unused); GELU activation; 64-wide heads.
 */
export function deriveOpenClipTextConfig(
  shapes: ShapeMap,
  file: string,
  prefix: string,
  heads?: number,
): ClipTextConfig {
  const tok = need(shapes, file, `${prefix}token_embedding.weight`);
  const hidden = tok[1];
  const nHeads = heads ?? hidden / 64;
  if (!Number.isInteger(nHeads) || nHeads < 1) {
    throw new CheckpointError(
      "BAD_CONFIG",
      file,
      `text encoder width ${hidden} is not a multiple of 64: pass textEncoderHeads`,
    );
  }
  return {
    vocab_size: tok[0],
    hidden_size: hidden,
    intermediate_size: need(shapes, file, `${prefix}transformer.resblocks.0.mlp.c_fc.weight`)[0],
    num_hidden_layers: countIndexed(shapes, `${prefix}transformer.resblocks.`) - 1,
    num_attention_heads: nHeads,
    max_position_embeddings: need(shapes, file, `${prefix}positional_embedding`)[0],
    hidden_act: "gelu",
    layer_norm_eps: 1e-5,
    eos_token_id: 2,
  };
}
