/**
 * Attention and feed-forward pieces shared by the UNet, the VAE mid block and the CLIP text encoder.
 */
import { builderOf } from "../graph/builder.ts";
import type { Value } from "../graph/ir.ts";
import {
  add,
  cast,
  concat,
  cos,
  exp,
  gelu,
  matmul,
  mul,
  reshape,
  sin,
  softmax,
  split,
  transpose,
  unsqueeze,
} from "../graph/ops/index.ts";
import { linear } from "./layers.ts";
import type { ModuleContext } from "./module.ts";

/** [B, S, H*D] -> [B, H, S, D] */
function splitHeads(x: Value, heads: number): Value {
  const [bsz, s, inner] = x.shape;
  return transpose(reshape(x, [bsz, s, heads, inner / heads]), [0, 2, 1, 3]);
}

/**
 * softmax(q k^T * scale + mask) v over heads; q [B, Sq, H*D], k/v [B, Sk, H*D]; returns [B, Sq, H*D].
 * `mask` (additive, float32) broadcasts to [B, H, Sq, Sk].
 *
 * fp16 q/k/v: q is scaled BEFORE the fp16 matmul (scores then stay sqrt(D) times smaller, far from fp16's 65504
 * limit), and the scores are cast to float32 for the mask and the softmax (exp and the row sums are where fp16
 * loses most; the float32 mask's -3.4e38 would also be -inf in fp16); the probabilities go back to fp16 for the
 * matmul with v. float32 inputs keep the original order of operations (bit-identical to before).
 */
export function scaledDotProductAttention(q: Value, k: Value, v: Value, heads: number, mask?: Value): Value {
  const [bsz, sq, inner] = q.shape;
  const scale = 1 / Math.sqrt(inner / heads);
  const [, sk] = k.shape;
  const kT = transpose(reshape(k, [bsz, sk, heads, inner / heads]), [0, 2, 3, 1]);
  let probs: Value;
  if (q.dtype === "float16") {
    let scores = cast(matmul(mul(splitHeads(q, heads), scale), kT), "float32");
    if (mask) scores = add(scores, mask);
    probs = cast(softmax(scores, -1), "float16");
  } else {
    let scores = mul(matmul(splitHeads(q, heads), kT), scale);
    if (mask) scores = add(scores, mask);
    probs = softmax(scores, -1);
  }
  const out = matmul(probs, splitHeads(v, heads));
  return reshape(transpose(out, [0, 2, 1, 3]), [bsz, sq, inner]);
}

export interface AttentionShape {
  queryDim: number;
  /** Width of the key/value source (cross-attention context); = queryDim for self-attention. */
  contextDim: number;
  heads: number;
  /** heads * head_dim. */
  inner: number;
  /** to_q/to_k/to_v biases (diffusers Attention `bias`): false in the UNet, true in the VAE. */
  qkvBias: boolean;
}

/** diffusers Attention (to_q, to_k, to_v, to_out.0) on token sequences [B, S, queryDim]. */
export function attention(
  ctx: ModuleContext,
  x: Value,
  context: Value | undefined,
  s: AttentionShape,
): Value {
  const b = ctx.b;
  const ctxv = context ?? x;
  const q = b.scope("to_q", () => linear(ctx, x, s.queryDim, s.inner, s.qkvBias));
  const k = b.scope("to_k", () => linear(ctx, ctxv, s.contextDim, s.inner, s.qkvBias));
  const v = b.scope("to_v", () => linear(ctx, ctxv, s.contextDim, s.inner, s.qkvBias));
  const o = scaledDotProductAttention(q, k, v, s.heads);
  return b.scope("to_out.0", () => linear(ctx, o, s.inner, s.queryDim, true));
}

/** diffusers FeedForward with GEGLU: net.0.proj -> (hidden, gate) halves -> hidden * gelu(gate) -> net.2. */
export function gegluFeedForward(ctx: ModuleContext, x: Value, dim: number, mult = 4): Value {
  const b = ctx.b;
  const hiddenDim = dim * mult;
  const proj = b.scope("net.0.proj", () => linear(ctx, x, dim, hiddenDim * 2));
  const [hidden, gate] = split(proj, -1, [hiddenDim, hiddenDim]);
  const h = mul(hidden, gelu(gate, "none"));
  return b.scope("net.2", () => linear(ctx, h, hiddenDim, dim));
}

/**
 * diffusers get_timestep_embedding: [B] timesteps -> [B, dim] sinusoids. The frequencies are computed the way
 * torch does in float32 (exponent = -ln(max_period) * i / (half - shift), rounded to float32 at each step) and
 * exponentiated inside the graph, so the embedding matches the reference to float32 rounding. Always float32
 * (timesteps up to 1000 times frequencies need more than fp16's 11 bits); an fp16 model casts the result.
 */
export function timestepEmbedding(
  t: Value,
  dim: number,
  flipSinToCos: boolean,
  freqShift: number,
  maxPeriod = 10000,
): Value {
  const half = Math.floor(dim / 2);
  const f = Math.fround;
  const c = f(-Math.log(maxPeriod));
  const exponents = Array.from({ length: half }, (_, i) => f(f(c * i) / f(half - freqShift)));
  const b = builderOf(t);
  const freqs = exp(b.constant(exponents, "float32", [1, half]));
  const args = mul(unsqueeze(t, [1]), freqs);
  const parts = flipSinToCos ? [cos(args), sin(args)] : [sin(args), cos(args)];
  if (dim % 2 !== 0) b.fail("TimestepEmbedding", [t], `odd embedding width ${dim} is not supported`);
  return concat(parts, 1);
}
