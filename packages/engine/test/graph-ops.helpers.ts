/**
 * Test helpers for the op tests: run a built graph on ORT (CPU) and check every output's runtime shape against
 * the builder's inferred shape; a tiny strided-tensor toolkit for the independent JS reference computations.
 */
import assert from "node:assert/strict";
import ort from "onnxruntime-node";
import type { GraphBuilder } from "../src/graph/builder.ts";
import type { DType } from "../src/graph/ir.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { toOrt } from "../src/runtime/tensor.ts";

export interface Fed {
  dtype: DType;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
}

/** Deterministic pseudo-random numbers in [lo, hi). */
export function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return (lo = -1, hi = 1) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return lo + ((s >>> 0) / 2 ** 32) * (hi - lo);
  };
}

export function randTensor(shape: number[], rand: () => number): Fed {
  return { dtype: "float32", shape, data: Float32Array.from({ length: size(shape) }, () => rand()) };
}

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

export function coordsOf(index: number, shape: readonly number[]): number[] {
  const st = strides(shape);
  return shape.map((_, i) => Math.floor(index / st[i]) % shape[i]);
}

/** Reads element at (possibly broadcast, right-aligned) coords of a tensor with `shape`. */
export function at(data: ArrayLike<number>, shape: readonly number[], coords: readonly number[]): number {
  const off = coords.length - shape.length;
  const st = strides(shape);
  let idx = 0;
  for (let i = 0; i < shape.length; i++) idx += (shape[i] === 1 ? 0 : coords[off + i]) * st[i];
  return data[idx];
}

/** Runs the builder's graph on ORT CPU; asserts each output's dims and dtype equal the inferred ones. */
export async function runChecked(
  b: GraphBuilder,
  feeds: Record<string, Fed>,
): Promise<Record<string, ort.Tensor>> {
  const g = b.build();
  const session = await ort.InferenceSession.create(encodeModel(g), { graphOptimizationLevel: "disabled" });
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [k, f] of Object.entries(feeds)) ortFeeds[k] = toOrt(k, f);
  const out = (await session.run(ortFeeds)) as Record<string, ort.Tensor>;
  for (const v of g.outputs) {
    assert.deepEqual([...out[v.name].dims], [...v.shape], `shape of output ${v.name}`);
    assert.equal(out[v.name].type, v.dtype, `dtype of output ${v.name}`);
  }
  await session.release();
  return out;
}

export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol = 1e-5,
  what = "",
): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) assert.fail(`${what}[${i}]: got ${a}, expected ${e}`);
  }
}

/** Abramowitz–Stegun 7.1.26 is too coarse; this series/continued-fraction erf is accurate to ~1e-12. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = 0;
    let term = ax;
    for (let n = 0; n < 80; n++) {
      sum += term / (2 * n + 1);
      term *= (-ax * ax) / (n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|.
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}
