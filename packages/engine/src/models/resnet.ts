/**
 * diffusers ResnetBlock2D ("default" time-embedding norm, output scale 1), Downsample2D and Upsample2D, shared by
 * the UNet (with a time embedding) and the VAE (without). Call inside the block's scope
 * ("down_blocks.0.resnets.1"), so parameter keys are diffusers keys.
 */
import type { Value } from "../graph/ir.ts";
import { add, resizeNearest, unsqueeze } from "../graph/ops/index.ts";
import { conv2d, groupNorm, linear, silu } from "../nn/layers.ts";
import type { ModuleContext } from "../nn/module.ts";

export interface ResnetShape {
  inChannels: number;
  outChannels: number;
  groups: number;
  eps: number;
  /** Width of the time embedding; undefined for the VAE's blocks (no time_emb_proj). */
  tembChannels?: number;
}

export function resnetBlock2D(ctx: ModuleContext, x: Value, temb: Value | undefined, s: ResnetShape): Value {
  const b = ctx.b;
  let h = b.scope("norm1", () => groupNorm(ctx, x, s.groups, s.eps));
  h = b.scope("conv1", () => conv2d(ctx, silu(h), s.inChannels, s.outChannels, { kernel: 3 }));
  if (temb && s.tembChannels !== undefined) {
    const t = b.scope("time_emb_proj", () =>
      linear(ctx, silu(temb), s.tembChannels as number, s.outChannels),
    );
    h = add(h, unsqueeze(t, [2, 3]));
  }
  h = b.scope("norm2", () => groupNorm(ctx, h, s.groups, s.eps));
  h = b.scope("conv2", () => conv2d(ctx, silu(h), s.outChannels, s.outChannels, { kernel: 3 }));
  const shortcut =
    s.inChannels === s.outChannels
      ? x
      : b.scope("conv_shortcut", () => conv2d(ctx, x, s.inChannels, s.outChannels, { kernel: 1 }));
  return add(shortcut, h);
}

/**
 * Downsample2D with a conv: stride 2 and padding 1 (UNet), or padding 0 after F.pad(0, 1, 0, 1) (VAE encoder),
 * which is the asymmetric ONNX padding [0, 0, 1, 1].
 */
export function downsample2D(ctx: ModuleContext, x: Value, channels: number, padding: 0 | 1): Value {
  const pads = padding === 1 ? [1, 1, 1, 1] : [0, 0, 1, 1];
  return ctx.b.scope("conv", () => conv2d(ctx, x, channels, channels, { kernel: 3, stride: 2, pads }));
}

/** Upsample2D: nearest 2x then a 3x3 conv. */
export function upsample2D(ctx: ModuleContext, x: Value, channels: number): Value {
  const up = resizeNearest(x, [1, 1, 2, 2]);
  return ctx.b.scope("conv", () => conv2d(ctx, up, channels, channels, { kernel: 3 }));
}
