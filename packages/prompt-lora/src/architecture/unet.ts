/**
 * The Linear and Conv2d layers of diffusers' UNet2DConditionModel, derived from its config by walking the blocks the
 * way diffusers constructs them, together with each layer's name in the original (LDM/SGM) single-file layout.
 *
 * The original layout numbers blocks flatly: input_blocks.0 is conv_in, then each down level contributes
 * layers_per_block (resnet [+ attention]) blocks plus one downsampler block; output_blocks has layers_per_block + 1
 * blocks per level, the level's upsampler sitting inside its last block after the resnet (and attention).
 * Resnet internals are renamed (conv1 = in_layers.2, time_emb_proj = emb_layers.1, conv2 = out_layers.3,
 * conv_shortcut = skip_connection); transformer internals keep their names.
 */
import type { ModuleSpec, UNetConfig } from "./types.ts";

/** A module plus the key of its weight in the original single-file layout. */
export interface MappedModule {
  spec: ModuleSpec;
  original: string;
}

const ORIGINAL_UNET_PREFIX = "model.diffusion_model.";

function perBlock<T>(value: T | T[], count: number, field: string): T[] {
  if (Array.isArray(value)) {
    if (value.length !== count)
      throw new Error(`UNet config: ${field} has ${value.length} entries, expected ${count}`);
    return value;
  }
  return Array.from({ length: count }, () => value);
}

/** Collects modules while the block walk below runs. */
class UNetWalk {
  readonly out: MappedModule[] = [];

  linear(path: string, original: string, inFeatures: number, outFeatures: number, heads?: number): void {
    const spec: ModuleSpec = {
      component: "unet",
      path,
      layer: "linear",
      inFeatures,
      outFeatures,
      kernel: [1, 1],
    };
    if (heads !== undefined) spec.heads = heads;
    this.out.push({ spec, original: `${ORIGINAL_UNET_PREFIX}${original}.weight` });
  }

  conv(path: string, original: string, inFeatures: number, outFeatures: number, k: number): void {
    this.out.push({
      spec: { component: "unet", path, layer: "conv", inFeatures, outFeatures, kernel: [k, k] },
      original: `${ORIGINAL_UNET_PREFIX}${original}.weight`,
    });
  }

  resnet(path: string, original: string, inCh: number, outCh: number, tembCh: number): void {
    this.conv(`${path}.conv1`, `${original}.in_layers.2`, inCh, outCh, 3);
    this.linear(`${path}.time_emb_proj`, `${original}.emb_layers.1`, tembCh, outCh);
    this.conv(`${path}.conv2`, `${original}.out_layers.3`, outCh, outCh, 3);
    if (inCh !== outCh) this.conv(`${path}.conv_shortcut`, `${original}.skip_connection`, inCh, outCh, 1);
  }

  /** diffusers Transformer2DModel: proj_in, `depth` BasicTransformerBlocks (self-attn, cross-attn, GEGLU ff), proj_out. */
  transformer(path: string, original: string, ch: number, t: TransformerShape): void {
    const headDim = Math.floor(ch / t.heads);
    const inner = t.heads * headDim;
    const proj = (name: string, i: number, o: number) =>
      t.linearProjection
        ? this.linear(`${path}.${name}`, `${original}.${name}`, i, o)
        : this.conv(`${path}.${name}`, `${original}.${name}`, i, o, 1);
    proj("proj_in", ch, inner);
    for (let d = 0; d < t.depth; d++) {
      const block = `transformer_blocks.${d}`;
      for (const attn of ["attn1", "attn2"]) {
        const kvIn = attn === "attn1" ? inner : t.crossDim;
        for (const [name, i, o] of [
          ["to_q", inner, inner],
          ["to_k", kvIn, inner],
          ["to_v", kvIn, inner],
          ["to_out.0", inner, inner],
        ] as const) {
          const rel = `${block}.${attn}.${name}`;
          this.linear(`${path}.${rel}`, `${original}.${rel}`, i, o, t.heads);
        }
      }
      // GEGLU doubles the projection's output (value and gate); the hidden width is 4x.
      this.linear(`${path}.${block}.ff.net.0.proj`, `${original}.${block}.ff.net.0.proj`, inner, inner * 8);
      this.linear(`${path}.${block}.ff.net.2`, `${original}.${block}.ff.net.2`, inner * 4, inner);
    }
    proj("proj_out", inner, ch);
  }
}

interface TransformerShape {
  heads: number;
  depth: number;
  crossDim: number;
  linearProjection: boolean;
}

export function unetModules(config: UNetConfig): MappedModule[] {
  const walk = new UNetWalk();
  const levels = config.block_out_channels.length;
  if (config.down_block_types.length !== levels || config.up_block_types.length !== levels) {
    throw new Error("UNet config: down_block_types, up_block_types and block_out_channels differ in length");
  }
  const L = config.layers_per_block;
  const ch0 = config.block_out_channels[0];
  const temb = config.time_embedding_dim ?? ch0 * 4;
  // Legacy diffusers naming: attention_head_dim holds the head count unless num_attention_heads is set.
  const heads = perBlock(config.num_attention_heads ?? config.attention_head_dim, levels, "attention heads");
  const depth = perBlock(config.transformer_layers_per_block ?? 1, levels, "transformer_layers_per_block");
  const cross = perBlock(config.cross_attention_dim, levels, "cross_attention_dim");
  const linearProjection = config.use_linear_projection ?? false;
  const shape = (i: number, d: number[], h: number[], c: number[]): TransformerShape => ({
    heads: h[i],
    depth: d[i],
    crossDim: c[i],
    linearProjection,
  });

  walk.conv("conv_in", "input_blocks.0.0", config.in_channels, ch0, config.conv_in_kernel ?? 3);
  walk.linear("time_embedding.linear_1", "time_embed.0", ch0, temb);
  walk.linear("time_embedding.linear_2", "time_embed.2", temb, temb);
  if (config.addition_embed_type === "text_time") {
    const addIn = config.projection_class_embeddings_input_dim;
    if (!addIn)
      throw new Error("UNet config: text_time embedding without projection_class_embeddings_input_dim");
    walk.linear("add_embedding.linear_1", "label_emb.0.0", addIn, temb);
    walk.linear("add_embedding.linear_2", "label_emb.0.2", temb, temb);
  }

  let outCh = ch0;
  for (let i = 0; i < levels; i++) {
    const inCh = outCh;
    outCh = config.block_out_channels[i];
    const hasAttention = config.down_block_types[i].includes("CrossAttn");
    for (let j = 0; j < L; j++) {
      const orig = `input_blocks.${1 + i * (L + 1) + j}`;
      walk.resnet(`down_blocks.${i}.resnets.${j}`, `${orig}.0`, j === 0 ? inCh : outCh, outCh, temb);
      if (hasAttention)
        walk.transformer(
          `down_blocks.${i}.attentions.${j}`,
          `${orig}.1`,
          outCh,
          shape(i, depth, heads, cross),
        );
    }
    if (i < levels - 1) {
      walk.conv(
        `down_blocks.${i}.downsamplers.0.conv`,
        `input_blocks.${(i + 1) * (L + 1)}.0.op`,
        outCh,
        outCh,
        3,
      );
    }
  }

  const midCh = config.block_out_channels[levels - 1];
  if (config.mid_block_type !== null) {
    const midType = config.mid_block_type ?? "UNetMidBlock2DCrossAttn";
    if (midType !== "UNetMidBlock2DCrossAttn")
      throw new Error(`UNet config: unsupported mid_block_type ${midType}`);
    walk.resnet("mid_block.resnets.0", "middle_block.0", midCh, midCh, temb);
    walk.transformer(
      "mid_block.attentions.0",
      "middle_block.1",
      midCh,
      shape(levels - 1, depth, heads, cross),
    );
    walk.resnet("mid_block.resnets.1", "middle_block.2", midCh, midCh, temb);
  }

  const rev = <T>(a: T[]) => [...a].reverse();
  const revCh = rev(config.block_out_channels);
  const [revDepth, revHeads, revCross] = [rev(depth), rev(heads), rev(cross)];
  outCh = revCh[0];
  for (let i = 0; i < levels; i++) {
    const prevCh = outCh;
    outCh = revCh[i];
    const inCh = revCh[Math.min(i + 1, levels - 1)];
    const hasAttention = config.up_block_types[i].includes("CrossAttn");
    for (let j = 0; j <= L; j++) {
      const orig = `output_blocks.${i * (L + 1) + j}`;
      // Up resnets take the previous output concatenated with the matching skip connection.
      const skip = j === L ? inCh : outCh;
      const resIn = j === 0 ? prevCh : outCh;
      walk.resnet(`up_blocks.${i}.resnets.${j}`, `${orig}.0`, resIn + skip, outCh, temb);
      if (hasAttention)
        walk.transformer(
          `up_blocks.${i}.attentions.${j}`,
          `${orig}.1`,
          outCh,
          shape(i, revDepth, revHeads, revCross),
        );
    }
    if (i < levels - 1) {
      const slot = hasAttention ? 2 : 1;
      walk.conv(
        `up_blocks.${i}.upsamplers.0.conv`,
        `output_blocks.${i * (L + 1) + L}.${slot}.conv`,
        outCh,
        outCh,
        3,
      );
    }
  }

  walk.conv("conv_out", "out.2", ch0, config.out_channels, config.conv_out_kernel ?? 3);
  return walk.out;
}
