/**
 * diffusers UNet2DConditionModel (SD1.x / SD2.x) as one static-shape graph:
 *   time_proj (sinusoids, flip_sin_to_cos, freq_shift) -> time_embedding (linear_1, SiLU, linear_2);
 *   conv_in -> down_blocks -> mid_block -> up_blocks (with skips) -> conv_norm_out, SiLU, conv_out.
 *
 * Graph inputs: `sample` float32 [B, C, H, W] (latents), `timestep` [B] (float32, or int64 with
 * timestepDType "int64"), `encoder_hidden_states` float32 [B, S, cross_attention_dim].
 * Output: `out` [B, out_channels, H, W] (epsilon or v, per config.prediction_type), plus `hook.<module>` outputs
 * (time_proj, time_embedding, conv_in, down_blocks.i, mid_block, up_blocks.i, conv_norm_out) when `hooks` is set.
 * computeDType "float32" (default): fp32 throughout, so upcast_attention needs no special handling. "float16"
 * (mixed precision for GPUs): inputs are cast to fp16 at the boundary and the output (and hooks) back to float32,
 * so callers feed and read float32 either way; the timestep sinusoids, norms and softmax stay float32 (nn/), so
 * attention is always "upcast".
 */
import { checkpoint } from "../../autodiff/marks.ts";
import { GraphBuilder } from "../../graph/builder.ts";
import type { Value } from "../../graph/ir.ts";
import { cast } from "../../graph/ops/index.ts";
import { timestepEmbedding } from "../../nn/attention.ts";
import { conv2d, groupNorm, linear, silu } from "../../nn/layers.ts";
import {
  type BuiltGraph,
  type ComputeDType,
  type LoraTargets,
  ModuleContext,
  type WeightSource,
} from "../../nn/module.ts";
import { perLevel, type UNetModelConfig, unetHeads } from "../configs.ts";
import { type BlockEnv, downBlock, midBlockCrossAttn, upBlock } from "./blocks.ts";

export interface UNetGraphOptions {
  batch: number;
  /** Latent height and width (image size / 8). */
  height: number;
  width: number;
  /** Text sequence length (77). */
  seqLen?: number;
  timestepDType?: "float32" | "int64";
  lora?: LoraTargets;
  hooks?: boolean;
  /**
   * Mark every resnet and transformer as a checkpoint() segment: a training graph built on this forward keeps
   * only the segment boundaries and recomputes the insides in the backward pass (sessions must then disable
   * ORT's CommonSubexpressionElimination, see autodiff CHECKPOINT_DISABLED_OPTIMIZERS).
   */
  gradientCheckpointing?: boolean;
  /**
   * Build into this builder instead of a new graph (a joint text-encoder + UNet training step); the caller's own
   * LoRA context of another component lives in the same builder.
   */
  builder?: GraphBuilder;
  /** The text conditioning as a value of `builder`'s graph instead of the `encoder_hidden_states` input. */
  encoderHiddenStates?: Value;
  /** Dtype the layers compute in (default "float32"); "float16" for GPU inference/training (see nn/module.ts). */
  computeDType?: ComputeDType;
}

export function buildUNetGraph(cfg: UNetModelConfig, weights: WeightSource, o: UNetGraphOptions): BuiltGraph {
  const b = o.builder ?? new GraphBuilder("unet2d_condition_model");
  const ctx = new ModuleContext(b, weights, o.lora, o.computeDType);
  const levels = cfg.block_out_channels.length;
  const ch = cfg.block_out_channels;
  const heads = unetHeads(cfg);
  const depth = perLevel(cfg.transformer_layers_per_block, levels, "transformer_layers_per_block");
  const sample = ctx.toCompute(b.input("sample", "float32", [o.batch, cfg.in_channels, o.height, o.width]));
  const tIn = b.input("timestep", o.timestepDType ?? "float32", [o.batch]);
  const context = ctx.toCompute(
    o.encoderHiddenStates ??
      b.input("encoder_hidden_states", "float32", [o.batch, o.seqLen ?? 77, cfg.cross_attention_dim]),
  );
  const hook = (v: Value, name: string) => {
    if (o.hooks) b.output(ctx.toFloat32(v), `hook.${name}`);
  };

  const tProj = timestepEmbedding(
    tIn.dtype === "float32" ? tIn : cast(tIn, "float32"),
    ch[0],
    cfg.flip_sin_to_cos,
    cfg.freq_shift,
  );
  hook(tProj, "time_proj");
  const tembC = cfg.time_embedding_dim ?? ch[0] * 4;
  const temb = b.scope("time_embedding", () => {
    const h = b.scope("linear_1", () => linear(ctx, ctx.toCompute(tProj), ch[0], tembC));
    return b.scope("linear_2", () => linear(ctx, silu(h), tembC, tembC));
  });
  hook(temb, "time_embedding");
  const segment = <T>(fn: () => T): T => (o.gradientCheckpointing ? checkpoint(b, fn) : fn());
  const env: BlockEnv = {
    temb,
    context,
    tembChannels: tembC,
    groups: cfg.norm_num_groups,
    eps: cfg.norm_eps,
    segment,
  };
  const attentionAt = (i: number, hasAttention: boolean, hs: number[], ds: number[]) =>
    hasAttention
      ? {
          heads: hs[i],
          depth: ds[i],
          crossAttentionDim: cfg.cross_attention_dim,
          linearProjection: cfg.use_linear_projection,
          groups: cfg.norm_num_groups,
        }
      : undefined;

  let h = b.scope("conv_in", () =>
    conv2d(ctx, sample, cfg.in_channels, ch[0], { kernel: cfg.conv_in_kernel }),
  );
  hook(h, "conv_in");
  const skips: Value[] = [h];
  for (let i = 0; i < levels; i++) {
    const type = cfg.down_block_types[i];
    if (type !== "CrossAttnDownBlock2D" && type !== "DownBlock2D")
      b.fail("UNet", [h], `unsupported down block ${type}`);
    const cur = h;
    const r = b.scope(`down_blocks.${i}`, () =>
      downBlock(ctx, cur, env, {
        inChannels: i === 0 ? ch[0] : ch[i - 1],
        outChannels: ch[i],
        layers: cfg.layers_per_block,
        attention: attentionAt(i, type === "CrossAttnDownBlock2D", heads, depth),
        downsample: i < levels - 1,
      }),
    );
    h = r.out;
    skips.push(...r.skips);
    hook(h, `down_blocks.${i}`);
  }

  if (cfg.mid_block_type !== null) {
    if (cfg.mid_block_type !== "UNetMidBlock2DCrossAttn")
      b.fail("UNet", [h], `unsupported mid block ${cfg.mid_block_type}`);
    const cur = h;
    const att = attentionAt(levels - 1, true, heads, depth);
    h = b.scope("mid_block", () =>
      midBlockCrossAttn(ctx, cur, env, ch[levels - 1], att as NonNullable<typeof att>),
    );
    hook(h, "mid_block");
  }

  const revCh = [...ch].reverse();
  const revHeads = [...heads].reverse();
  const revDepth = [...depth].reverse();
  for (let i = 0; i < levels; i++) {
    const type = cfg.up_block_types[i];
    if (type !== "CrossAttnUpBlock2D" && type !== "UpBlock2D")
      b.fail("UNet", [h], `unsupported up block ${type}`);
    const cur = h;
    h = b.scope(`up_blocks.${i}`, () =>
      upBlock(ctx, cur, skips, env, {
        prevChannels: i === 0 ? revCh[0] : revCh[i - 1],
        outChannels: revCh[i],
        resnets: cfg.layers_per_block + 1,
        attention: attentionAt(i, type === "CrossAttnUpBlock2D", revHeads, revDepth),
        upsample: i < levels - 1,
      }),
    );
    hook(h, `up_blocks.${i}`);
  }

  const cur = h;
  h = b.scope("conv_norm_out", () => groupNorm(ctx, cur, cfg.norm_num_groups, cfg.norm_eps));
  hook(h, "conv_norm_out");
  const act = silu(h);
  const out = b.scope("conv_out", () =>
    conv2d(ctx, act, ch[0], cfg.out_channels, { kernel: cfg.conv_out_kernel }),
  );
  b.output(ctx.toFloat32(out), "out");
  return { graph: b.build(), ctx };
}
