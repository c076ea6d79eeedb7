/** Shared inference helpers for the op functions: NumPy broadcasting, axis normalization, dtype checks. */
import type { GraphBuilder } from "../builder.ts";
import type { DType, Value } from "../ir.ts";
import { isFloatDType } from "../ir.ts";

/** Multidirectional (NumPy) broadcast of shapes; returns an error string when they do not broadcast. */
export function broadcastShapeList(shapes: readonly (readonly number[])[]): number[] | string {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = new Array(rank).fill(1);
  for (const s of shapes) {
    const off = rank - s.length;
    for (let i = 0; i < s.length; i++) {
      const cur = out[off + i];
      const d = s[i];
      if (cur === d || d === 1) continue;
      if (cur !== 1) return `shapes are not broadcastable at axis ${off + i - rank} (${cur} vs ${d})`;
      out[off + i] = d;
    }
  }
  return out;
}

/** Multidirectional (NumPy) broadcast of the inputs' shapes; fails naming the op otherwise. */
export function broadcastShapes(b: GraphBuilder, op: string, inputs: readonly Value[]): number[] {
  const r = broadcastShapeList(inputs.map((v) => v.shape));
  return typeof r === "string" ? b.fail(op, inputs, r) : r;
}

/** Maps a possibly negative axis into [0, rank); fails naming the op when out of range. */
export function normAxis(
  b: GraphBuilder,
  op: string,
  inputs: readonly Value[],
  axis: number,
  rank: number,
): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank)
    b.fail(op, inputs, `axis ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

export function sameDType(b: GraphBuilder, op: string, inputs: readonly Value[]): DType {
  const d = inputs[0].dtype;
  for (const v of inputs)
    if (v.dtype !== d) b.fail(op, inputs, `dtypes differ (${inputs.map((x) => x.dtype).join(", ")})`);
  return d;
}

export function requireFloat(b: GraphBuilder, op: string, inputs: readonly Value[]): DType {
  const d = sameDType(b, op, inputs);
  if (!isFloatDType(d)) b.fail(op, inputs, `needs a float tensor, got ${d}`);
  return d;
}

export function requireRank(
  b: GraphBuilder,
  op: string,
  inputs: readonly Value[],
  v: Value,
  min: number,
  what: string,
): void {
  if (v.shape.length < min) b.fail(op, inputs, `${what} must have rank >= ${min}, got ${v.shape.length}`);
}
