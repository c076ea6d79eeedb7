/**
 * The longer vector-Jacobian products, kept out of rules.ts so the table stays one line per op. Every function
 * takes the forward node's values and the output gradient and returns input gradients in the inputs' shapes.
 * Weights are never transposed (ORT's constant folding would store a transposed copy of an initializer): frozen
 * 2-D weights go through Gemm's trans flags. Conv/ConvTranspose/Resize live in vjp-conv.ts.
 */
import type { Node, Value } from "../graph/ir.ts";
import { attrFloat, attrInt, attrInts, constantInts } from "../graph/ir.ts";
import {
  add,
  cast,
  concat,
  constantOfShape,
  expand,
  gemm,
  matmul,
  mul,
  pow,
  reduceMean,
  reduceSum,
  reshape,
  slice,
  sub,
  transpose,
  unsqueeze,
} from "../graph/ops/index.ts";
import { AutodiffError } from "./errors.ts";
import { pad, scatterNDAdd } from "./extra-ops.ts";

const range = (a: number, b: number): number[] => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);

/** Sums a broadcast gradient back to `shape` (leading axes and axes where the input had size 1). */
export function unbroadcast(g: Value, shape: readonly number[]): Value {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.shape.length - shape.length;
  const axes = range(0, lead);
  shape.forEach((d, i) => {
    if (d === 1 && g.shape[i + lead] !== 1) axes.push(i + lead);
  });
  const reduced = axes.length > 0 ? reduceSum(g, axes, true) : g;
  return reshape(reduced, [...shape]);
}

export function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return inv;
}

const swapLast = (v: Value): Value => {
  const r = v.shape.length;
  return transpose(v, [...range(0, r - 2), r - 1, r - 2]);
};

/**
 * a @ b^T (or a^T @ b) without transposing an initializer: 2-D weights go through Gemm's trans flags, other
 * initializers through (b @ a^T)^T, activations through a plain Transpose.
 */
function matmulT(a: Value, b: Value, which: "a" | "b"): Value {
  const t = which === "a" ? a : b;
  if (t.kind !== "initializer") return which === "a" ? matmul(swapLast(a), b) : matmul(a, swapLast(b));
  if (t.shape.length === 2) {
    const other = which === "a" ? b : a;
    const lead = other.shape.slice(0, -2);
    if (lead.length === 0)
      return which === "a"
        ? gemm(a, b, undefined, { transA: true })
        : gemm(a, b, undefined, { transB: true });
    if (which === "b") {
      const flat = reshape(a, [-1, a.shape[a.shape.length - 1]]);
      return reshape(gemm(flat, b, undefined, { transB: true }), [
        ...lead,
        a.shape[a.shape.length - 2],
        b.shape[0],
      ]);
    }
  }
  // (a^T b) = (b^T a)^T and (a b^T) = (b a^T)^T: only the activation is transposed.
  return which === "a" ? swapLast(matmul(swapLast(b), a)) : swapLast(matmul(b, swapLast(a)));
}

/** MatMul with NumPy semantics (1-D operands promoted, batch dims broadcast). */
export function matmulGrads(
  a: Value,
  b: Value,
  g: Value,
  needA: boolean,
  needB: boolean,
): (Value | undefined)[] {
  const a2 = a.shape.length === 1 ? reshape(a, [1, a.shape[0]]) : a;
  const b2 = b.shape.length === 1 ? reshape(b, [b.shape[0], 1]) : b;
  const gShape = [...g.shape];
  if (a.shape.length === 1) gShape.splice(gShape.length - (b.shape.length === 1 ? 0 : 1), 0, 1);
  if (b.shape.length === 1) gShape.push(1);
  const g2 = reshape(g, gShape);
  const da = needA ? reshape(unbroadcast(matmulT(g2, b2, "b"), a2.shape), [...a.shape]) : undefined;
  const db = needB ? reshape(unbroadcast(matmulT(a2, g2, "a"), b2.shape), [...b.shape]) : undefined;
  return [da, db];
}

/** Gemm: Y = alpha op(A) op(B) + beta C, gradients again as Gemms (no Transpose of B). */
export function gemmGrads(n: Node, g: Value, need: (v: Value | undefined) => boolean): (Value | undefined)[] {
  const [a, b, c] = n.inputs as Value[];
  const alpha = attrFloat(n, "alpha", 1);
  const beta = attrFloat(n, "beta", 1);
  const tA = attrInt(n, "transA", 0) === 1;
  const tB = attrInt(n, "transB", 0) === 1;
  let da: Value | undefined;
  let db: Value | undefined;
  if (need(a))
    da = tA
      ? gemm(b, g, undefined, { alpha, transA: tB, transB: true })
      : gemm(g, b, undefined, { alpha, transB: !tB });
  if (need(b))
    db = tB
      ? gemm(g, a, undefined, { alpha, transA: true, transB: tA })
      : gemm(a, g, undefined, { alpha, transA: !tA });
  const dc = c && need(c) ? unbroadcast(beta === 1 ? g : mul(g, beta), c.shape) : undefined;
  return [da, db, dc];
}

/** Slice (any non-zero steps): place the gradient back with zero padding, axis by axis. */
export function sliceGrad(n: Node, g: Value): Value {
  const x = n.inputs[0] as Value;
  const starts = constantInts(n.inputs[1]);
  const axes = constantInts(n.inputs[3]) ?? starts?.map((_, i) => i);
  const steps = constantInts(n.inputs[4]) ?? starts?.map(() => 1);
  if (!starts || !axes || !steps)
    throw new AutodiffError(`${n.name}: Slice gradient needs constant starts/axes/steps`);
  let t = g;
  axes.forEach((axis, i) => {
    const a = axis < 0 ? axis + x.shape.length : axis;
    const dim = x.shape[a];
    const count = g.shape[a];
    if (count === 0) return;
    let step = steps[i];
    let start = starts[i] < 0 ? starts[i] + dim : starts[i];
    if (step < 0) {
      t = slice(t, [count - 1], [-Infinity], [a], [-1]);
      start -= (count - 1) * -step;
      step = -step;
    }
    if (step > 1) {
      const spread = pad(unsqueeze(t, [a + 1]), padsFor(t.shape.length + 1, a + 1, 0, step - 1));
      t = reshape(spread, [...t.shape.slice(0, a), count * step, ...t.shape.slice(a + 1)]);
      if (start + count * step > dim) t = slice(t, [0], [dim - start], [a]);
    }
    t = pad(t, padsFor(t.shape.length, a, start, dim - start - t.shape[a]));
  });
  return t;
}

function padsFor(rank: number, axis: number, begin: number, end: number): number[] {
  const p = Array(2 * rank).fill(0);
  p[axis] = begin;
  p[axis + rank] = end;
  return p;
}

/** Gather: scatter-add the gradient rows back (duplicate indices accumulate). */
export function gatherGrad(n: Node, g: Value): Value {
  const [data, indices] = n.inputs as Value[];
  const axis = attrInt(n, "axis", 0);
  const ir = indices.shape.length;
  const rest = [...range(0, axis), ...range(axis + 1, data.shape.length)];
  // Bring the gathered axis of data (and the index axes of g) to the front, scatter along axis 0, move back.
  const gFront =
    axis === 0
      ? g
      : transpose(g, [...range(axis, axis + ir), ...range(0, axis), ...range(axis + ir, g.shape.length)]);
  const zeros = constantOfShape(g, [data.shape[axis], ...rest.map((i) => data.shape[i])], 0, g.dtype);
  const idx = unsqueeze(indices.dtype === "int64" ? indices : cast(indices, "int64"), [ir]);
  const scattered = scatterNDAdd(zeros, idx, gFront);
  return axis === 0 ? scattered : transpose(scattered, inversePerm([axis, ...rest]));
}

/** ReduceSum / ReduceMean: broadcast the gradient back over the reduced axes. */
export function reduceGrad(n: Node, g: Value, mean: boolean): Value {
  const x = n.inputs[0] as Value;
  const r = x.shape.length;
  const axesIn = constantInts(n.inputs[1]) ?? attrInts(n, "axes", []);
  const noop = attrInt(n, "noop_with_empty_axes", 0) === 1;
  if (axesIn.length === 0 && noop) return g;
  const axes = axesIn.length === 0 ? range(0, r) : axesIn.map((a) => (a < 0 ? a + r : a));
  const kept = reshape(
    g,
    x.shape.map((d, i) => (axes.includes(i) ? 1 : d)),
  );
  const count = axes.reduce((p, a) => p * x.shape[a], 1);
  const spread = expand(kept, [...x.shape]);
  return mean ? mul(spread, 1 / count) : spread;
}

/**
 * Normalization over `axes` with an affine transform: y = xhat * scale + bias. xhat and 1/std are recomputed
 * (cheap reductions) because LayerNormalization/InstanceNormalization need not expose them.
 * dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * scale.
 */
export function normalizationGrads(
  x: Value,
  scale: Value,
  g: Value,
  axes: number[],
  eps: number,
): { dx: Value; dScaleFull: Value; xhat: Value } {
  const mu = reduceMean(x, axes);
  const xc = sub(x, mu);
  const variance = reduceMean(mul(xc, xc), axes);
  const rstd = pow(add(variance, x.dtype === "float32" ? Math.fround(eps) : eps), -0.5);
  const xhat = mul(xc, rstd);
  const dxhat = mul(g, scale);
  const inner = sub(sub(dxhat, reduceMean(dxhat, axes)), mul(xhat, reduceMean(mul(dxhat, xhat), axes)));
  return { dx: mul(rstd, inner), dScaleFull: mul(g, xhat), xhat };
}

export function layerNormGrads(
  n: Node,
  g: Value,
  need: (v: Value | undefined) => boolean,
): (Value | undefined)[] {
  const [x, scale, bias] = n.inputs as Value[];
  const r = x.shape.length;
  const a0 = attrInt(n, "axis", -1);
  const axes = range(a0 < 0 ? a0 + r : a0, r);
  const { dx, dScaleFull } = normalizationGrads(x, scale, g, axes, attrFloat(n, "epsilon", 1e-5));
  return [
    need(x) ? dx : undefined,
    need(scale) ? unbroadcast(dScaleFull, scale.shape) : undefined,
    bias && need(bias) ? unbroadcast(g, bias.shape) : undefined,
  ];
}

export function instanceNormGrads(
  n: Node,
  g: Value,
  need: (v: Value | undefined) => boolean,
): (Value | undefined)[] {
  const [x, scale, bias] = n.inputs as Value[];
  const r = x.shape.length;
  const perChannel = (v: Value) => reshape(v, [v.shape[0], ...Array(r - 2).fill(1)]);
  const spatial = range(2, r);
  const { dx, dScaleFull } = normalizationGrads(
    x,
    perChannel(scale),
    g,
    spatial,
    attrFloat(n, "epsilon", 1e-5),
  );
  return [
    need(x) ? dx : undefined,
    need(scale) ? reduceSum(dScaleFull, [0, ...spatial], false) : undefined,
    need(bias) ? reduceSum(g, [0, ...spatial], false) : undefined,
  ];
}

/** Concat: each input gets its slice of the gradient. */
export function concatGrads(n: Node, g: Value): Value[] {
  const axis = attrInt(n, "axis", 0);
  let at = 0;
  return (n.inputs as Value[]).map((x) => {
    const piece = slice(g, [at], [at + x.shape[axis]], [axis]);
    at += x.shape[axis];
    return piece;
  });
}

/** Split: concatenate the outputs' gradients (zeros where an output got none). */
export function splitGrad(n: Node, out: (i: number) => Value): Value {
  return n.outputs.length === 1
    ? out(0)
    : concat(
        n.outputs.map((_, i) => out(i)),
        attrInt(n, "axis", 0),
      );
}
