/**
 * Shape ops. Every shape-like operand (Reshape's shape, Slice bounds, axes, split sizes) is a constant resolved at
 * build time, so all output shapes are static; resolved values are what gets serialized (no 0/-1 left in Reshape).
 */
import { attr, builderOf, typedArrayFor } from "../builder.ts";
import type { DType, Value } from "../ir.ts";
import { numel } from "../ir.ts";
import { broadcastShapeList, normAxis, sameDType } from "./common.ts";

export function reshape(x: Value, shape: readonly number[]): Value {
  const b = builderOf(x);
  const out = shape.map((d, i) => (d === 0 ? x.shape[i] : d));
  if (out.some((d) => d === undefined))
    b.fail("Reshape", [x], `0 in target [${shape.join(",")}] has no input dim to copy`);
  const unknown = out.filter((d) => d === -1).length;
  if (unknown > 1 || out.some((d) => d < -1))
    b.fail("Reshape", [x], `invalid target shape [${shape.join(",")}]`);
  const known = out.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const total = numel(x.shape);
  if (unknown === 1) {
    if (known === 0 || total % known !== 0)
      b.fail("Reshape", [x], `cannot infer -1 in [${shape.join(",")}] from ${total} elements`);
    out[out.indexOf(-1)] = total / known;
  } else if (known !== total) {
    b.fail("Reshape", [x], `target [${shape.join(",")}] has ${known} elements, input has ${total}`);
  }
  return b.addNode("Reshape", [x, b.constInts(out)], {}, [{ dtype: x.dtype, shape: out }])[0];
}

/**
 * Transpose. Refuses initializers and expressions computed from initializers only (Reshape(w), Cast(w), ...):
 * ORT constant folding would store a second, transposed copy of the weight in memory.
 */
export function transpose(x: Value, perm?: number[]): Value {
  const b = builderOf(x);
  const rank = x.shape.length;
  const p = perm ?? [...Array(rank).keys()].reverse();
  if (b.isWeightExpression(x)) {
    b.fail(
      "Transpose",
      [x],
      `refusing to transpose ${x.kind === "initializer" ? "initializer" : "an expression of initializers,"} ${x.name}: ` +
        "ORT constant folding would store a second, transposed copy of the weight; " +
        "use gemm(x, w, b, { transB: true }) or a MatMul against a transposed activation instead",
    );
  }
  const sorted = [...p].sort((a, c) => a - c);
  if (p.length !== rank || sorted.some((v, i) => v !== i))
    b.fail("Transpose", [x], `perm [${p.join(",")}] is not a permutation of ${rank} axes`);
  return b.addNode("Transpose", [x], { perm: attr.ints(p) }, [
    { dtype: x.dtype, shape: p.map((i) => x.shape[i]) },
  ])[0];
}

export function concat(xs: Value[], axis: number): Value {
  const b = builderOf(...xs);
  const dtype = sameDType(b, "Concat", xs);
  const rank = xs[0].shape.length;
  const a = normAxis(b, "Concat", xs, axis, rank);
  for (const v of xs) {
    if (v.shape.length !== rank || v.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      b.fail("Concat", xs, `all inputs must match except on axis ${a}`);
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((s, v) => s + v.shape[a], 0);
  return b.addNode("Concat", xs, { axis: attr.int(a) }, [{ dtype, shape }])[0];
}

/** Split along `axis` into pieces of the given sizes (which must sum to the axis length). */
export function split(x: Value, axis: number, sizes: number[]): Value[] {
  const b = builderOf(x);
  const a = normAxis(b, "Split", [x], axis, x.shape.length);
  const total = sizes.reduce((s, v) => s + v, 0);
  if (total !== x.shape[a] || sizes.some((s) => !Number.isInteger(s) || s < 0)) {
    b.fail("Split", [x], `sizes [${sizes.join(",")}] must be non-negative and sum to ${x.shape[a]}`);
  }
  const outs = sizes.map((s) => {
    const shape = [...x.shape];
    shape[a] = s;
    return { dtype: x.dtype, shape };
  });
  return b.addNode("Split", [x, b.constInts(sizes)], { axis: attr.int(a) }, outs);
}

/**
 * Slice with ONNX semantics (negative indices count from the end, out-of-range bounds clamp; use Infinity /
 * -Infinity for "to the end"). Bounds are resolved and clamped at build time.
 */
export function slice(x: Value, starts: number[], ends: number[], axes?: number[], steps?: number[]): Value {
  const b = builderOf(x);
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(b, "Slice", [x], a, x.shape.length));
  const st = steps ?? starts.map(() => 1);
  if (ends.length !== starts.length || ax.length !== starts.length || st.length !== starts.length) {
    b.fail("Slice", [x], "starts, ends, axes and steps must have equal lengths");
  }
  if (new Set(ax).size !== ax.length) b.fail("Slice", [x], `repeated axes [${ax.join(",")}]`);
  const shape = [...x.shape];
  const rs: number[] = [];
  const re: number[] = [];
  ax.forEach((a, i) => {
    const dim = x.shape[a];
    const step = st[i];
    if (!Number.isInteger(step) || step === 0)
      b.fail("Slice", [x], `step ${step} must be a non-zero integer`);
    let s = starts[i] < 0 ? starts[i] + dim : starts[i];
    let e = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (step > 0) {
      s = Math.min(Math.max(s, 0), dim);
      e = Math.min(Math.max(e, 0), dim);
    } else {
      s = Math.min(Math.max(s, 0), dim - 1);
      e = Math.min(Math.max(e, -1), dim - 1);
    }
    shape[a] = Math.max(0, Math.ceil((e - s) / step));
    rs.push(s);
    // A resolved end of -1 (before index 0, negative step) would be re-read as "last"; -dim-1 clamps to -1.
    re.push(e === -1 ? -dim - 1 : e);
  });
  const inputs = [x, b.constInts(rs), b.constInts(re), b.constInts(ax), b.constInts(st)];
  return b.addNode("Slice", inputs, {}, [{ dtype: x.dtype, shape }])[0];
}

/** Gather along `axis`; `indices` may be a Value (int32/int64) or numbers (become an int64 constant). */
export function gather(data: Value, indices: Value | number[], axis = 0): Value {
  const b = builderOf(data);
  const idx = Array.isArray(indices) ? b.constInts(indices) : indices;
  const a = normAxis(b, "Gather", [data, idx], axis, data.shape.length);
  if (idx.dtype !== "int64" && idx.dtype !== "int32")
    b.fail("Gather", [data, idx], `indices must be int32/int64, got ${idx.dtype}`);
  if (Array.isArray(indices) && indices.some((i) => i < -data.shape[a] || i >= data.shape[a])) {
    b.fail("Gather", [data, idx], `index out of range for axis length ${data.shape[a]}`);
  }
  const shape = [...data.shape.slice(0, a), ...idx.shape, ...data.shape.slice(a + 1)];
  return b.addNode("Gather", [data, idx], { axis: attr.int(a) }, [{ dtype: data.dtype, shape }])[0];
}

/** Expand: bidirectional broadcast of x to `shape`. */
export function expand(x: Value, shape: number[]): Value {
  const b = builderOf(x);
  const out = broadcastShapeList([x.shape, shape]);
  if (typeof out === "string") b.fail("Expand", [x], `to [${shape.join(",")}]: ${out}`);
  return b.addNode("Expand", [x, b.constInts(shape)], {}, [{ dtype: x.dtype, shape: out as number[] }])[0];
}

/** Squeeze the given axes (all size-1 axes when omitted). */
export function squeeze(x: Value, axes?: number[]): Value {
  const b = builderOf(x);
  const ax = axes
    ? axes.map((a) => normAxis(b, "Squeeze", [x], a, x.shape.length))
    : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  for (const a of ax) if (x.shape[a] !== 1) b.fail("Squeeze", [x], `axis ${a} has size ${x.shape[a]}, not 1`);
  if (ax.length === 0) return b.addNode("Identity", [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0];
  const shape = x.shape.filter((_, i) => !ax.includes(i));
  return b.addNode("Squeeze", [x, b.constInts(ax)], {}, [{ dtype: x.dtype, shape }])[0];
}

/** Unsqueeze: axes index the output's dimensions. */
export function unsqueeze(x: Value, axes: number[]): Value {
  const b = builderOf(x);
  const rank = x.shape.length + axes.length;
  const ax = axes.map((a) => normAxis(b, "Unsqueeze", [x], a, rank));
  if (new Set(ax).size !== ax.length) b.fail("Unsqueeze", [x], `repeated axes [${axes.join(",")}]`);
  if (ax.length === 0) return b.addNode("Identity", [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0];
  const shape: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : x.shape[j++]);
  return b.addNode("Unsqueeze", [x, b.constInts(ax)], {}, [{ dtype: x.dtype, shape }])[0];
}

/** ConstantOfShape: a tensor of `shape` filled with `value`. Needs a Value of the graph to find its builder. */
export function constantOfShape(like: Value, shape: number[], value = 0, dtype: DType = "float32"): Value {
  const b = builderOf(like);
  const t = { dtype, shape: [1], data: typedArrayFor(dtype, [value]) };
  return b.addNode("ConstantOfShape", [b.constInts(shape)], { value: attr.tensor(t) }, [{ dtype, shape }])[0];
}
