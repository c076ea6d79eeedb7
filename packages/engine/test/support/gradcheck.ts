/**
 * Gradient checks for the autodiff tests. For y = f(x_1..x_k) built by the test, the graph computes y and,
 * through grad() seeded with a random cotangent w (a graph input), the vector-Jacobian products J_i^T w. Then:
 * - finite differences: for random directions v, the central difference of <f(x + e v), w> must equal
 *   sum_i <v_i, J_i^T w> (relative error, floored at 1% of sum_i |v_i| |J_i^T w| so a direction nearly
 *   orthogonal to the gradient cannot blow it up);
 * - adjoint (dot-product) test, for inputs f is linear in (others fixed): <f(x), w> = <x_i, J_i^T w>, which
 *   is <J v, w> = <v, J^T w> with v = x_i.
 * The forward values come from ORT as well, but the check compares two different computations (forward
 * differences vs the backward graph), so a wrong rule fails.
 */
import assert from "node:assert/strict";
import ort from "onnxruntime-node";
import { grad } from "../../src/autodiff/grad.ts";
import { GraphBuilder } from "../../src/graph/builder.ts";
import type { DType, Value } from "../../src/graph/ir.ts";
import { encodeModel } from "../../src/onnx/encode.ts";
import { dot, norm, numel, randn, rng, uniform } from "./numeric.ts";

export interface InputSpec {
  name: string;
  shape: number[];
  /** Default: the check's float dtype. int64 inputs are never differentiated. */
  dtype?: "int64";
  /** Explicit data; otherwise N(0,1) (or uniform in `range`). */
  data?: readonly number[];
  range?: [number, number];
  /** Not differentiated (and not perturbed). */
  fixed?: boolean;
}

export interface GradCheckSpec {
  dtype: "float32" | "float64";
  inputs: InputSpec[];
  build: (xs: Value[], b: GraphBuilder) => Value;
  seed?: number;
  directions?: number;
  /** Finite-difference step (default 1e-5 for float64, 1e-2 for float32). */
  eps?: number;
  /** Tolerance of the finite-difference check (default 1e-6 float64, 5e-3 float32). */
  tol?: number;
  /** Names of inputs f is homogeneous-linear in: run the adjoint identity for each. */
  linearIn?: string[];
  adjointTol?: number;
}

type Arr = Float64Array | Float32Array;

export interface GradCheckReport {
  fdErrors: number[];
  adjointErrors: Record<string, number>;
  grads: Record<string, Float64Array>;
}

function toOrt(dtype: DType, shape: number[], data: ArrayLike<number>): ort.Tensor {
  if (dtype === "int64")
    return new ort.Tensor(
      "int64",
      BigInt64Array.from(Array.from(data), (x) => BigInt(x)),
      shape,
    );
  if (dtype === "float64") return new ort.Tensor("float64", Float64Array.from(data), shape);
  return new ort.Tensor("float32", Float32Array.from(data), shape);
}

export async function sessionFor(b: GraphBuilder, options: ort.InferenceSession.SessionOptions = {}) {
  return ort.InferenceSession.create(encodeModel(b.build()), { intraOpNumThreads: 1, ...options });
}

export async function gradCheck(spec: GradCheckSpec): Promise<GradCheckReport> {
  const dtype = spec.dtype;
  const rand = rng(spec.seed ?? 1);
  const b = new GraphBuilder("gradcheck");
  const xs = spec.inputs.map((i) => b.input(i.name, i.dtype ?? dtype, i.shape));
  const y = spec.build(xs, b);
  const w = b.input("cotangent", y.dtype, y.shape);
  const diff = spec.inputs
    .map((s, i) => ({ s, v: xs[i] }))
    .filter(({ s }) => !s.fixed && s.dtype !== "int64");
  const grads = grad(
    b,
    y,
    diff.map((d) => d.v),
    { seed: w },
  );
  b.output(y, "y");
  grads.forEach((g, i) => {
    b.output(g, `grad.${diff[i].s.name}`);
  });
  const session = await sessionFor(b);

  const data = new Map<string, Float64Array>();
  for (const s of spec.inputs) {
    const n = numel(s.shape);
    data.set(
      s.name,
      s.data ? Float64Array.from(s.data) : s.range ? uniform(rand, n, ...s.range) : randn(rand, n),
    );
  }
  const wData = randn(rand, numel(y.shape));
  const run = async (over: Map<string, Float64Array>) => {
    const feeds: Record<string, ort.Tensor> = { cotangent: toOrt(dtype, [...y.shape], wData) };
    for (const s of spec.inputs)
      feeds[s.name] = toOrt(s.dtype ?? dtype, s.shape, over.get(s.name) ?? data.get(s.name)!);
    return session.run(feeds);
  };
  const base = await run(new Map());
  const g = Object.fromEntries(
    diff.map(({ s }) => [s.name, Float64Array.from(base[`grad.${s.name}`].data as Arr)]),
  );
  const yBase = Float64Array.from(base.y.data as Arr);
  for (const [name, arr] of Object.entries(g)) {
    assert.ok(arr.every(Number.isFinite), `gradient of ${name} has non-finite entries`);
  }

  const eps = spec.eps ?? (dtype === "float64" ? 1e-5 : 1e-2);
  const tol = spec.tol ?? (dtype === "float64" ? 1e-6 : 5e-3);
  const fdErrors: number[] = [];
  for (let k = 0; k < (spec.directions ?? 2); k++) {
    const dirs = new Map(diff.map(({ s }) => [s.name, randn(rand, numel(s.shape))]));
    const shifted = (sign: number) =>
      new Map([...dirs].map(([name, v]) => [name, data.get(name)!.map((x, i) => x + sign * eps * v[i])]));
    const fPlus = dot((await run(shifted(1))).y.data as Arr, wData);
    const fMinus = dot((await run(shifted(-1))).y.data as Arr, wData);
    const fd = (fPlus - fMinus) / (2 * eps);
    let analytic = 0;
    let scale = 0;
    for (const [name, v] of dirs) {
      analytic += dot(v, g[name]);
      scale += norm(v) * norm(g[name]);
    }
    // Relative error of the directional derivative; the floor (1% of the Cauchy-Schwarz bound) only matters when
    // the random direction happens to be nearly orthogonal to the gradient.
    const err = Math.abs(fd - analytic) / Math.max(Math.abs(fd), Math.abs(analytic), 1e-2 * scale, 1e-30);
    fdErrors.push(err);
    assert.ok(
      err <= tol,
      `finite differences: fd ${fd} vs backward ${analytic} (relative error ${err.toExponential(2)} > ${tol})`,
    );
  }

  const adjointErrors: Record<string, number> = {};
  for (const name of spec.linearIn ?? []) {
    const lhs = dot(yBase, wData);
    const rhs = dot(data.get(name)!, g[name]);
    const scale = norm(yBase) * norm(wData) + norm(data.get(name)!) * norm(g[name]);
    const err = Math.abs(lhs - rhs) / scale;
    adjointErrors[name] = err;
    const at = spec.adjointTol ?? (dtype === "float64" ? 1e-12 : 1e-5);
    assert.ok(
      err <= at,
      `adjoint test for ${name}: <Jv,w> ${lhs} vs <v,J^T w> ${rhs} (error ${err.toExponential(2)} > ${at})`,
    );
  }
  return { fdErrors, adjointErrors, grads: g };
}
