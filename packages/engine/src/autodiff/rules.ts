/**
 * The vector-Jacobian product of every differentiable op, one entry per ONNX op type. A rule receives the forward
 * node `n` (inputs n.inputs, outputs n.outputs; for checkpointed segments these are the recomputed values), the
 * gradient `g` of its first output and a context, and returns one gradient per input (undefined = none).
 * Broadcasting ops return gradients already summed back to their inputs' shapes. Longer rules live in
 * vjp-helpers.ts and vjp-conv.ts; everything here is meant to be read like a table of formulas.
 */
import type { Node, Value } from "../graph/ir.ts";
import { attrInt, attrInts, attrString } from "../graph/ir.ts";
import {
  add,
  cast,
  div,
  erf,
  exp,
  greater,
  mul,
  neg,
  pow,
  reduceSum,
  reshape,
  sub,
  tanh,
  transpose,
  where,
} from "../graph/ops/index.ts";
import { AutodiffError } from "./errors.ts";
import { convGrads, convTransposeGrads, resizeNearestGrad } from "./vjp-conv.ts";
import {
  concatGrads,
  gatherGrad,
  gemmGrads,
  instanceNormGrads,
  inversePerm,
  layerNormGrads,
  matmulGrads,
  reduceGrad,
  sliceGrad,
  splitGrad,
  unbroadcast as unb,
} from "./vjp-helpers.ts";

export interface RuleContext {
  /** Whether an input needs a gradient (skip work for frozen weights and constants). */
  needs(v: Value | undefined): boolean;
  /** Gradient of output i (zeros when that output does not reach the loss). */
  out(i: number): Value;
}

export type Grads = (Value | undefined)[];
export type VjpRule = (n: Node, g: Value, ctx: RuleContext) => Grads;

const x0 = (n: Node): Value => n.inputs[0] as Value;
const x1 = (n: Node): Value => n.inputs[1] as Value;
const y0 = (n: Node): Value => n.outputs[0];
const shapeOf = (n: Node, i: number): readonly number[] => (n.inputs[i] as Value).shape;
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** d/dx Gelu: exact Phi(x) + x phi(x); tanh form 0.5(1+t) + 0.5x(1-t^2) sqrt(2/pi)(1+3c x^2). */
function geluDerivative(x: Value, approximate: string): Value {
  if (approximate === "tanh") {
    const t = tanh(mul(add(x, mul(pow(x, 3), 0.044715)), SQRT_2_OVER_PI));
    const dInner = mul(add(mul(mul(x, x), 3 * 0.044715), 1), SQRT_2_OVER_PI);
    return add(mul(add(t, 1), 0.5), mul(mul(mul(x, 0.5), sub(1, mul(t, t))), dInner));
  }
  const cdf = mul(add(erf(mul(x, Math.SQRT1_2)), 1), 0.5);
  const pdf = mul(exp(mul(mul(x, x), -0.5)), 1 / Math.sqrt(2 * Math.PI));
  return add(cdf, mul(x, pdf));
}

function powRule(n: Node, g: Value, ctx: RuleContext): Grads {
  if (ctx.needs(n.inputs[1]))
    throw new AutodiffError(`${n.name}: Pow gradient w.r.t. the exponent is not supported`);
  const e = cast(x1(n), x0(n).dtype);
  return [unb(mul(mul(g, e), pow(x0(n), sub(e, 1))), shapeOf(n, 0))];
}

export const VJP_RULES: Record<string, VjpRule> = {
  Identity: (_n, g) => [g],
  Add: (n, g) => [unb(g, shapeOf(n, 0)), unb(g, shapeOf(n, 1))],
  Sum: (n, g) => n.inputs.map((_, i) => unb(g, shapeOf(n, i))),
  Sub: (n, g) => [unb(g, shapeOf(n, 0)), unb(neg(g), shapeOf(n, 1))],
  Mul: (n, g) => [unb(mul(g, x1(n)), shapeOf(n, 0)), unb(mul(g, x0(n)), shapeOf(n, 1))],
  Div: (n, g) => [unb(div(g, x1(n)), shapeOf(n, 0)), unb(neg(div(mul(g, y0(n)), x1(n))), shapeOf(n, 1))],
  Neg: (_n, g) => [neg(g)],
  Pow: powRule,
  Sqrt: (n, g) => [div(mul(g, 0.5), y0(n))],
  Exp: (n, g) => [mul(g, y0(n))],
  Log: (n, g) => [div(g, x0(n))],
  Tanh: (n, g) => [mul(g, sub(1, mul(y0(n), y0(n))))],
  Sigmoid: (n, g) => [mul(g, mul(y0(n), sub(1, y0(n))))],
  Erf: (n, g) => [mul(g, mul(exp(neg(mul(x0(n), x0(n)))), 2 / Math.sqrt(Math.PI)))],
  Gelu: (n, g) => [mul(g, geluDerivative(x0(n), attrString(n, "approximate", "none")))],
  Relu: (n, g) => [where(greater(x0(n), 0), g, 0)],
  Softmax: (n, g) => {
    const y = y0(n);
    const axis = attrInt(n, "axis", -1);
    return [mul(y, sub(g, reduceSum(mul(g, y), [axis])))];
  },
  MatMul: (n, g, ctx) => matmulGrads(x0(n), x1(n), g, ctx.needs(n.inputs[0]), ctx.needs(n.inputs[1])),
  Gemm: (n, g, ctx) => gemmGrads(n, g, ctx.needs),
  Conv: (n, g, ctx) => convGrads(n, g, ctx.needs),
  ConvTranspose: (n, g, ctx) => convTransposeGrads(n, g, ctx.needs),
  Resize: (n, g) => [resizeNearestGrad(n, g)],
  Reshape: (n, g) => [reshape(g, [...shapeOf(n, 0)])],
  Squeeze: (n, g) => [reshape(g, [...shapeOf(n, 0)])],
  Unsqueeze: (n, g) => [reshape(g, [...shapeOf(n, 0)])],
  Transpose: (n, g) => [transpose(g, inversePerm(attrInts(n, "perm", [...shapeOf(n, 0).keys()].reverse())))],
  Expand: (n, g) => [unb(g, shapeOf(n, 0))],
  Concat: (n, g) => concatGrads(n, g),
  Split: (n, _g, ctx) => [splitGrad(n, ctx.out)],
  Slice: (n, g) => [sliceGrad(n, g)],
  Gather: (n, g) => [gatherGrad(n, g)],
  ReduceSum: (n, g) => [reduceGrad(n, g, false)],
  ReduceMean: (n, g) => [reduceGrad(n, g, true)],
  LayerNormalization: (n, g, ctx) => layerNormGrads(n, g, ctx.needs),
  InstanceNormalization: (n, g, ctx) => instanceNormGrads(n, g, ctx.needs),
  Where: (n, g) => [
    undefined,
    unb(where(x0(n), g, 0), shapeOf(n, 1)),
    unb(where(x0(n), 0, g), shapeOf(n, 2)),
  ],
  Cast: (n, g) => [cast(g, x0(n).dtype)],
};
