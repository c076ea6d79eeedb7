/**
 * diffusers Transformer2DModel (continuous input) with BasicTransformerBlocks:
 * GroupNorm (eps 1e-6) -> proj_in (1x1 conv, or Linear with use_linear_projection) -> blocks of
 * [norm1 + self-attention attn1, norm2 + cross-attention attn2, norm3 + GEGLU feed-forward], each residual ->
 * proj_out -> + input.
 */
import type { Value } from "../../graph/ir.ts";
import { add, reshape, transpose } from "../../graph/ops/index.ts";
import { attention, gegluFeedForward } from "../../nn/attention.ts";
import { conv2d, groupNorm, layerNorm, linear } from "../../nn/layers.ts";
import type { ModuleContext } from "../../nn/module.ts";

export interface Transformer2DShape {
  channels: number;
  heads: number;
  depth: number;
  crossAttentionDim: number;
  linearProjection: boolean;
  groups: number;
}

function basicTransformerBlock(
  ctx: ModuleContext,
  h: Value,
  context: Value,
  inner: number,
  s: Transformer2DShape,
): Value {
  const b = ctx.b;
  const self = { queryDim: inner, contextDim: inner, heads: s.heads, inner, qkvBias: false };
  const cross = { ...self, contextDim: s.crossAttentionDim };
  let x = h;
  const n1 = b.scope("norm1", () => layerNorm(ctx, x, 1e-5));
  x = add(
    b.scope("attn1", () => attention(ctx, n1, undefined, self)),
    x,
  );
  const n2 = b.scope("norm2", () => layerNorm(ctx, x, 1e-5));
  x = add(
    b.scope("attn2", () => attention(ctx, n2, context, cross)),
    x,
  );
  const n3 = b.scope("norm3", () => layerNorm(ctx, x, 1e-5));
  return add(
    b.scope("ff", () => gegluFeedForward(ctx, n3, inner)),
    x,
  );
}

export function transformer2D(ctx: ModuleContext, x: Value, context: Value, s: Transformer2DShape): Value {
  const b = ctx.b;
  const [n, c, hgt, wid] = x.shape;
  const inner = s.heads * Math.floor(c / s.heads);
  const normed = b.scope("norm", () => groupNorm(ctx, x, s.groups, 1e-6));
  const toTokens = (v: Value, ch: number) => reshape(transpose(v, [0, 2, 3, 1]), [n, hgt * wid, ch]);
  const toImage = (v: Value, ch: number) => transpose(reshape(v, [n, hgt, wid, ch]), [0, 3, 1, 2]);
  let h: Value;
  if (s.linearProjection) {
    h = b.scope("proj_in", () => linear(ctx, toTokens(normed, c), c, inner));
  } else {
    h = toTokens(
      b.scope("proj_in", () => conv2d(ctx, normed, c, inner, { kernel: 1 })),
      inner,
    );
  }
  for (let d = 0; d < s.depth; d++) {
    const cur = h;
    h = b.scope(`transformer_blocks.${d}`, () => basicTransformerBlock(ctx, cur, context, inner, s));
  }
  const out = s.linearProjection
    ? toImage(
        b.scope("proj_out", () => linear(ctx, h, inner, c)),
        c,
      )
    : b.scope("proj_out", () => conv2d(ctx, toImage(h, inner), inner, c, { kernel: 1 }));
  return add(out, x);
}
