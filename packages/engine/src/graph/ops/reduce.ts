/** Reductions (axes as an input, opset 18+) and Softmax. */
import { attr, builderOf } from "../builder.ts";
import type { Value } from "../ir.ts";
import { normAxis, requireFloat } from "./common.ts";

function reduce(op: string, x: Value, axes: number[] | undefined, keepdims: boolean): Value {
  const b = builderOf(x);
  const rank = x.shape.length;
  const ax = (axes ?? [...Array(rank).keys()]).map((a) => normAxis(b, op, [x], a, rank));
  if (new Set(ax).size !== ax.length) b.fail(op, [x], `repeated axes [${ax.join(",")}]`);
  // An empty axes input means "reduce everything" in ONNX (noop_with_empty_axes=0); an explicit empty list here
  // means "reduce nothing" (handy when reducing a broadcast gradient), so it becomes an Identity.
  if (ax.length === 0 && axes !== undefined) {
    return b.addNode("Identity", [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0];
  }
  const shape = keepdims
    ? x.shape.map((d, i) => (ax.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !ax.includes(i));
  return b.addNode(op, [x, b.constInts(ax)], { keepdims: attr.int(keepdims ? 1 : 0) }, [
    { dtype: x.dtype, shape },
  ])[0];
}

/** Mean over `axes` (all axes when omitted; an empty list reduces nothing). */
export const reduceMean = (x: Value, axes?: number[], keepdims = true): Value =>
  reduce("ReduceMean", x, axes, keepdims);
export const reduceSum = (x: Value, axes?: number[], keepdims = true): Value =>
  reduce("ReduceSum", x, axes, keepdims);
export const reduceMax = (x: Value, axes?: number[], keepdims = true): Value =>
  reduce("ReduceMax", x, axes, keepdims);

export function softmax(x: Value, axis = -1): Value {
  const b = builderOf(x);
  requireFloat(b, "Softmax", [x]);
  const a = normAxis(b, "Softmax", [x], axis, x.shape.length);
  return b.addNode("Softmax", [x], { axis: attr.int(a) }, [{ dtype: x.dtype, shape: x.shape }])[0];
}
