/**
 * diffusers AutoencoderKL: Encoder (conv_in, DownEncoderBlock2D x n, UNetMidBlock2D with one single-head
 * attention, conv_norm_out, SiLU, conv_out) -> quant_conv -> (mean, logvar); post_quant_conv -> Decoder (conv_in,
 * mid block, UpDecoderBlock2D x n, conv_norm_out, SiLU, conv_out). GroupNorm eps is 1e-6 throughout.
 *
 * Encoder graph: input `sample` float32 [B, in_channels, H, W] (image in [-1, 1]); outputs `mean` and `logvar`
 * [B, latent_channels, H/f, W/f] (logvar clamped to [-30, 20]; latents are unscaled: multiply by scaling_factor
 * for training). Decoder graph: input `latents` float32 [B, latent_channels, h, w]; output `out` [B, out, h*f, w*f]
 * (raw decoder output; the caller divides latents by scaling_factor first, as pipelines do).
 * With computeDType "float16" the layers run in fp16 between a Cast of the input and Casts of the outputs.
 */
import { GraphBuilder } from "../../graph/builder.ts";
import type { Value } from "../../graph/ir.ts";
import { add, max, min, reshape, split, transpose } from "../../graph/ops/index.ts";
import { attention } from "../../nn/attention.ts";
import { conv2d, groupNorm, silu } from "../../nn/layers.ts";
import {
  type BuiltGraph,
  type ComputeDType,
  type LoraTargets,
  ModuleContext,
  type WeightSource,
} from "../../nn/module.ts";
import type { VaeConfig } from "../configs.ts";
import { downsample2D, resnetBlock2D, upsample2D } from "../resnet.ts";

const EPS = 1e-6;

/** Attention over the H*W positions with one head of width C and a residual (diffusers Attention with group_norm). */
function spatialAttention(ctx: ModuleContext, x: Value, groups: number): Value {
  const [n, c, h, w] = x.shape;
  const normed = ctx.b.scope("group_norm", () => groupNorm(ctx, x, groups, EPS));
  const tokens = transpose(reshape(normed, [n, c, h * w]), [0, 2, 1]);
  const o = attention(ctx, tokens, undefined, {
    queryDim: c,
    contextDim: c,
    heads: 1,
    inner: c,
    qkvBias: true,
  });
  return add(reshape(transpose(o, [0, 2, 1]), [n, c, h, w]), x);
}

function midBlock(ctx: ModuleContext, x: Value, channels: number, groups: number): Value {
  const b = ctx.b;
  const rs = { inChannels: channels, outChannels: channels, groups, eps: EPS };
  let h = b.scope("resnets.0", () => resnetBlock2D(ctx, x, undefined, rs));
  const h1 = h;
  h = b.scope("attentions.0", () => spatialAttention(ctx, h1, groups));
  const h2 = h;
  return b.scope("resnets.1", () => resnetBlock2D(ctx, h2, undefined, rs));
}

function encoder(ctx: ModuleContext, x: Value, cfg: VaeConfig): Value {
  const b = ctx.b;
  const ch = cfg.block_out_channels;
  const g = cfg.norm_num_groups;
  let h = b.scope("conv_in", () => conv2d(ctx, x, cfg.in_channels, ch[0], { kernel: 3 }));
  for (let i = 0; i < ch.length; i++) {
    if (cfg.down_block_types[i] !== "DownEncoderBlock2D")
      b.fail("VAE encoder", [h], `unsupported block ${cfg.down_block_types[i]}`);
    const cur = h;
    h = b.scope(`down_blocks.${i}`, () => {
      let y = cur;
      for (let j = 0; j < cfg.layers_per_block; j++) {
        const inC = j === 0 ? (i === 0 ? ch[0] : ch[i - 1]) : ch[i];
        const yj = y;
        y = b.scope(`resnets.${j}`, () =>
          resnetBlock2D(ctx, yj, undefined, { inChannels: inC, outChannels: ch[i], groups: g, eps: EPS }),
        );
      }
      const yd = y;
      return i < ch.length - 1 ? b.scope("downsamplers.0", () => downsample2D(ctx, yd, ch[i], 0)) : y;
    });
  }
  const top = ch[ch.length - 1];
  const hm = h;
  h = b.scope("mid_block", () => midBlock(ctx, hm, top, g));
  const hn = h;
  h = b.scope("conv_norm_out", () => groupNorm(ctx, hn, g, EPS));
  const act = silu(h);
  return b.scope("conv_out", () => conv2d(ctx, act, top, 2 * cfg.latent_channels, { kernel: 3 }));
}

function decoder(ctx: ModuleContext, z: Value, cfg: VaeConfig): Value {
  const b = ctx.b;
  const rev = [...cfg.block_out_channels].reverse();
  const g = cfg.norm_num_groups;
  let h = b.scope("conv_in", () => conv2d(ctx, z, cfg.latent_channels, rev[0], { kernel: 3 }));
  const hm = h;
  h = b.scope("mid_block", () => midBlock(ctx, hm, rev[0], g));
  for (let i = 0; i < rev.length; i++) {
    if (cfg.up_block_types[i] !== "UpDecoderBlock2D")
      b.fail("VAE decoder", [h], `unsupported block ${cfg.up_block_types[i]}`);
    const cur = h;
    h = b.scope(`up_blocks.${i}`, () => {
      let y = cur;
      for (let j = 0; j <= cfg.layers_per_block; j++) {
        const inC = j === 0 ? (i === 0 ? rev[0] : rev[i - 1]) : rev[i];
        const yj = y;
        y = b.scope(`resnets.${j}`, () =>
          resnetBlock2D(ctx, yj, undefined, { inChannels: inC, outChannels: rev[i], groups: g, eps: EPS }),
        );
      }
      const yu = y;
      return i < rev.length - 1 ? b.scope("upsamplers.0", () => upsample2D(ctx, yu, rev[i])) : y;
    });
  }
  const last = rev[rev.length - 1];
  const hn = h;
  h = b.scope("conv_norm_out", () => groupNorm(ctx, hn, g, EPS));
  const act = silu(h);
  return b.scope("conv_out", () => conv2d(ctx, act, last, cfg.out_channels, { kernel: 3 }));
}

/** Downsampling factor of the VAE: 2^(levels-1) (8 for SD). */
export function vaeScaleFactor(cfg: VaeConfig): number {
  return 2 ** (cfg.block_out_channels.length - 1);
}

/**
 * Encoder + quant_conv on an existing context: (mean, logvar) with logvar NOT clamped (the graph builders clamp;
 * an autoencoder training graph uses this directly, since it differentiates through it).
 */
export function vaeEncodeMoments(
  ctx: ModuleContext,
  x: Value,
  cfg: VaeConfig,
): { mean: Value; logvar: Value } {
  const b = ctx.b;
  const enc = b.scope("encoder", () => encoder(ctx, x, cfg));
  const lc = 2 * cfg.latent_channels;
  const moments = b.scope("quant_conv", () => conv2d(ctx, enc, lc, lc, { kernel: 1 }));
  const [mean, logvar] = split(moments, 1, [cfg.latent_channels, cfg.latent_channels]);
  return { mean, logvar };
}

/** post_quant_conv + decoder on an existing context: unscaled latents -> image (raw decoder output). */
export function vaeDecodeLatents(ctx: ModuleContext, z: Value, cfg: VaeConfig): Value {
  const lc = cfg.latent_channels;
  const q = ctx.b.scope("post_quant_conv", () => conv2d(ctx, z, lc, lc, { kernel: 1 }));
  return ctx.b.scope("decoder", () => decoder(ctx, q, cfg));
}

export interface VaeGraphOptions {
  batch: number;
  /** Image height/width (encoder) or latent height/width (decoder). */
  height: number;
  width: number;
  lora?: LoraTargets;
  /** Dtype the layers compute in (default "float32"); "float16" for GPUs: inputs/outputs stay float32. */
  computeDType?: ComputeDType;
}

export function buildVaeEncoderGraph(cfg: VaeConfig, weights: WeightSource, o: VaeGraphOptions): BuiltGraph {
  const b = new GraphBuilder("vae_encoder");
  const ctx = new ModuleContext(b, weights, o.lora, o.computeDType);
  const x = ctx.toCompute(b.input("sample", "float32", [o.batch, cfg.in_channels, o.height, o.width]));
  const moments = vaeEncodeMoments(ctx, x, cfg);
  const [mean, logvar] = [ctx.toFloat32(moments.mean), ctx.toFloat32(moments.logvar)];
  const clamped = min(max(logvar, b.constant(-30)), b.constant(20));
  b.output(mean, "mean");
  b.output(clamped, "logvar");
  return { graph: b.build(), ctx };
}

export function buildVaeDecoderGraph(cfg: VaeConfig, weights: WeightSource, o: VaeGraphOptions): BuiltGraph {
  const b = new GraphBuilder("vae_decoder");
  const ctx = new ModuleContext(b, weights, o.lora, o.computeDType);
  const z = ctx.toCompute(b.input("latents", "float32", [o.batch, cfg.latent_channels, o.height, o.width]));
  b.output(ctx.toFloat32(vaeDecodeLatents(ctx, z, cfg)), "out");
  return { graph: b.build(), ctx };
}
