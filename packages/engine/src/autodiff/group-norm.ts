/**
 * GroupNorm as PyTorch's nn.GroupNorm computes it: x [N, C, ...] split into `groups` groups of C/groups
 * channels, each (sample, group) normalized over its channels and spatial positions (biased variance, eps inside
 * the square root), then a per-channel affine gamma/beta [C].
 *
 * ORT has no GroupNormalization kernel (its function body is expanded) and opset 18's version applies a per-group
 * scale, unlike PyTorch; so it is built from InstanceNormalization on the [N, groups, C/groups * spatial] view with
 * unit scale and zero bias, followed by the per-channel affine. Every node has a VJP rule, so its gradient works.
 * InstanceNormalization has no float64 kernel: `viaReductions` builds the same function from ReduceMean/Pow
 * (any float dtype, a little slower), which the float64 gradient tests use.
 */
import { builderOf } from "../graph/builder.ts";
import type { Value } from "../graph/ir.ts";
import { add, instanceNormalization, mul, pow, reduceMean, reshape, sub } from "../graph/ops/index.ts";

export interface GroupNormOptions {
  epsilon?: number;
  /** Build from reductions instead of InstanceNormalization (float64 graphs). */
  viaReductions?: boolean;
}

export function groupNorm(
  x: Value,
  groups: number,
  gamma: Value,
  beta: Value,
  opts: GroupNormOptions = {},
): Value {
  const b = builderOf(x, gamma, beta);
  const [n, c] = x.shape;
  const eps = opts.epsilon ?? 1e-5;
  if (x.shape.length < 3 || c % groups !== 0) {
    b.fail("GroupNorm", [x, gamma, beta], `needs [N, C, spatial...] with C divisible by ${groups} groups`);
  }
  if (gamma.shape.length !== 1 || gamma.shape[0] !== c || beta.shape.length !== 1 || beta.shape[0] !== c) {
    b.fail("GroupNorm", [x, gamma, beta], `gamma and beta must be [${c}]`);
  }
  const grouped = reshape(x, [n, groups, -1]);
  let normalized: Value;
  if (opts.viaReductions) {
    const centered = sub(grouped, reduceMean(grouped, [2]));
    const variance = reduceMean(mul(centered, centered), [2]);
    normalized = mul(centered, pow(add(variance, eps), -0.5));
  } else {
    const ones = b.constant(Array(groups).fill(1), x.dtype, [groups]);
    const zeros = b.constant(Array(groups).fill(0), x.dtype, [groups]);
    normalized = instanceNormalization(grouped, ones, zeros, eps);
  }
  const perChannel = [c, ...Array(x.shape.length - 2).fill(1)];
  return add(mul(reshape(normalized, [...x.shape]), reshape(gamma, perChannel)), reshape(beta, perChannel));
}
