/**
 * Op builders the backward pass and the optimizers need that graph/ops does not provide (yet): Pad,
 * ScatterND with reduction "add" (embedding gradients), IsNaN/IsInf/Not/Or/And (the non-finite guard), Mod and
 * the variadic Sum (fan-out gradient sums). Same conventions as graph/ops: output shape and dtype inferred here,
 * build-time failures name the op, the shapes and the scope. Kept in autodiff/ so engine-core's files stay theirs;
 * they can move to graph/ops unchanged.
 */
import { attr, builderOf } from "../graph/builder.ts";
import type { Value } from "../graph/ir.ts";
import { broadcastShapes, sameDType } from "../graph/ops/common.ts";

/** Zero padding: `pads` = [begin_0, ..., begin_{r-1}, end_0, ..., end_{r-1}], all non-negative. */
export function pad(x: Value, pads: number[]): Value {
  const b = builderOf(x);
  const r = x.shape.length;
  if (pads.length !== 2 * r || pads.some((p) => !Number.isInteger(p) || p < 0)) {
    b.fail("Pad", [x], `pads [${pads.join(",")}] must be ${2 * r} non-negative integers`);
  }
  if (pads.every((p) => p === 0)) return x;
  const shape = x.shape.map((d, i) => d + pads[i] + pads[i + r]);
  return b.addNode("Pad", [x, b.constInts(pads)], { mode: attr.string("constant") }, [
    { dtype: x.dtype, shape },
  ])[0];
}

/**
 * ScatterND(data, indices, updates) with reduction "add": duplicate indices accumulate (checked on ORT 1.30 CPU
 * for float32 and float64). indices must be int64 [..., k] with k <= rank(data).
 */
export function scatterNDAdd(data: Value, indices: Value, updates: Value): Value {
  const b = builderOf(data, indices, updates);
  const inputs = [data, indices, updates];
  if (indices.dtype !== "int64") b.fail("ScatterND", inputs, `indices must be int64, got ${indices.dtype}`);
  const k = indices.shape[indices.shape.length - 1];
  const expected = [...indices.shape.slice(0, -1), ...data.shape.slice(k)];
  if (expected.length !== updates.shape.length || expected.some((d, i) => d !== updates.shape[i])) {
    b.fail("ScatterND", inputs, `updates must have shape [${expected.join(",")}]`);
  }
  sameDType(b, "ScatterND", [data, updates]);
  return b.addNode("ScatterND", inputs, { reduction: attr.string("add") }, [
    { dtype: data.dtype, shape: data.shape },
  ])[0];
}

function predicate(op: string, x: Value): Value {
  return builderOf(x).addNode(op, [x], {}, [{ dtype: "bool", shape: x.shape }])[0];
}
export const isNaNOp = (x: Value): Value => predicate("IsNaN", x);
export const isInfOp = (x: Value): Value => predicate("IsInf", x);

export function not(x: Value): Value {
  const b = builderOf(x);
  if (x.dtype !== "bool") b.fail("Not", [x], `needs bool, got ${x.dtype}`);
  return b.addNode("Not", [x], {}, [{ dtype: "bool", shape: x.shape }])[0];
}

function logical(op: string, x: Value, y: Value): Value {
  const b = builderOf(x, y);
  if (x.dtype !== "bool" || y.dtype !== "bool") b.fail(op, [x, y], "needs bool operands");
  return b.addNode(op, [x, y], {}, [{ dtype: "bool", shape: broadcastShapes(b, op, [x, y]) }])[0];
}
export const or = (x: Value, y: Value): Value => logical("Or", x, y);
export const and = (x: Value, y: Value): Value => logical("And", x, y);

/** Integer Mod (fmod = 0): x mod y for non-negative counters. */
export function mod(x: Value, y: Value): Value {
  const b = builderOf(x, y);
  const dtype = sameDType(b, "Mod", [x, y]);
  return b.addNode("Mod", [x, y], {}, [{ dtype, shape: broadcastShapes(b, "Mod", [x, y]) }])[0];
}

/** Variadic Sum with broadcasting; one operand is returned as is. */
export function sum(xs: Value[]): Value {
  if (xs.length === 0) throw new Error("Sum needs at least one operand");
  if (xs.length === 1) return xs[0];
  const b = builderOf(...xs);
  const dtype = sameDType(b, "Sum", xs);
  return b.addNode("Sum", xs, {}, [{ dtype, shape: broadcastShapes(b, "Sum", xs) }])[0];
}
