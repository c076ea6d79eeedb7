/**
 * The UNet's blocks as diffusers builds them: CrossAttnDownBlock2D / DownBlock2D (resnets [+ attentions],
 * optional downsampler), UNetMidBlock2DCrossAttn (resnet, attention, resnet), UpBlock2D / CrossAttnUpBlock2D
 * (each resnet takes the running sample concatenated with the matching skip, optional upsampler).
 */
import type { Value } from "../../graph/ir.ts";
import { concat } from "../../graph/ops/index.ts";
import type { ModuleContext } from "../../nn/module.ts";
import { downsample2D, resnetBlock2D, upsample2D } from "../resnet.ts";
import { type Transformer2DShape, transformer2D } from "./transformer.ts";

export interface BlockEnv {
  temb: Value;
  context: Value;
  tembChannels: number;
  groups: number;
  eps: number;
  /** Wraps each resnet / transformer (gradient checkpointing: autodiff recomputes it in the backward pass). */
  segment: <T>(fn: () => T) => T;
}

/** `resnets.{j}` of a block, then its `attentions.{j}` when the block has cross-attention. */
function resnetThenAttention(
  ctx: ModuleContext,
  x: Value,
  env: BlockEnv,
  j: number,
  inChannels: number,
  outChannels: number,
  attention: Omit<Transformer2DShape, "channels"> | undefined,
): Value {
  const b = ctx.b;
  const h = b.scope(`resnets.${j}`, () =>
    env.segment(() =>
      resnetBlock2D(ctx, x, env.temb, {
        inChannels,
        outChannels,
        groups: env.groups,
        eps: env.eps,
        tembChannels: env.tembChannels,
      }),
    ),
  );
  if (!attention) return h;
  const att = { ...attention, channels: outChannels };
  return b.scope(`attentions.${j}`, () => env.segment(() => transformer2D(ctx, h, env.context, att)));
}

export interface DownBlockShape {
  inChannels: number;
  outChannels: number;
  layers: number;
  /** Present for CrossAttnDownBlock2D. */
  attention?: Omit<Transformer2DShape, "channels">;
  downsample: boolean;
}

/** Returns the block output and the skip tensors it contributes (one per resnet, plus the downsampled one). */
export function downBlock(
  ctx: ModuleContext,
  x: Value,
  env: BlockEnv,
  s: DownBlockShape,
): { out: Value; skips: Value[] } {
  const b = ctx.b;
  const skips: Value[] = [];
  let h = x;
  for (let j = 0; j < s.layers; j++) {
    const inC = j === 0 ? s.inChannels : s.outChannels;
    h = resnetThenAttention(ctx, h, env, j, inC, s.outChannels, s.attention);
    skips.push(h);
  }
  if (s.downsample) {
    const cur = h;
    h = b.scope("downsamplers.0", () => downsample2D(ctx, cur, s.outChannels, 1));
    skips.push(h);
  }
  return { out: h, skips };
}

export function midBlockCrossAttn(
  ctx: ModuleContext,
  x: Value,
  env: BlockEnv,
  channels: number,
  attention: Omit<Transformer2DShape, "channels">,
): Value {
  const b = ctx.b;
  const rs = {
    inChannels: channels,
    outChannels: channels,
    groups: env.groups,
    eps: env.eps,
    tembChannels: env.tembChannels,
  };
  let h = b.scope("resnets.0", () => env.segment(() => resnetBlock2D(ctx, x, env.temb, rs)));
  const h1 = h;
  h = b.scope("attentions.0", () =>
    env.segment(() => transformer2D(ctx, h1, env.context, { ...attention, channels })),
  );
  const h2 = h;
  return b.scope("resnets.1", () => env.segment(() => resnetBlock2D(ctx, h2, env.temb, rs)));
}

export interface UpBlockShape {
  /** Channels of the running sample entering the block (the previous up block's output). */
  prevChannels: number;
  outChannels: number;
  /** Resnets in the block (layers_per_block + 1); each consumes one skip, whose width is read off the tensor. */
  resnets: number;
  attention?: Omit<Transformer2DShape, "channels">;
  upsample: boolean;
}

/** `skips` are consumed from the end, one per resnet, like diffusers' res_hidden_states_tuple. */
export function upBlock(ctx: ModuleContext, x: Value, skips: Value[], env: BlockEnv, s: UpBlockShape): Value {
  const b = ctx.b;
  let h = x;
  for (let j = 0; j < s.resnets; j++) {
    const skip = skips.pop();
    if (!skip) return b.fail("UpBlock", [h], "ran out of skip connections");
    const inC = (j === 0 ? s.prevChannels : s.outChannels) + skip.shape[1];
    h = resnetThenAttention(ctx, concat([h, skip], 1), env, j, inC, s.outChannels, s.attention);
  }
  if (s.upsample) {
    const cur = h;
    h = b.scope("upsamplers.0", () => upsample2D(ctx, cur, s.outChannels));
  }
  return h;
}
