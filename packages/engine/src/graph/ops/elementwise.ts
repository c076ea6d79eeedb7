/** Element-wise ops with NumPy broadcasting: arithmetic, unary math, activations, comparisons, Where, Cast. */
import { asValue, attr, builderOf } from "../builder.ts";
import type { DType, Value } from "../ir.ts";
import { ONNX_DTYPE_CODE } from "../ir.ts";
import { broadcastShapes, requireFloat, sameDType } from "./common.ts";

/** A Value or a JS number (becomes a scalar constant of the other operand's dtype). */
export type Operand = Value | number;

function firstValue(a: Operand, b: Operand): Value {
  if (typeof a !== "number") return a;
  if (typeof b !== "number") return b;
  throw new Error("binary op needs at least one Value operand");
}

function binary(op: string, a: Operand, c: Operand, resultDType?: DType): Value {
  const b = builderOf(a, c);
  const like = firstValue(a, c);
  const x = asValue(b, a, like);
  const y = asValue(b, c, like);
  const dtype = sameDType(b, op, [x, y]);
  const shape = broadcastShapes(b, op, [x, y]);
  return b.addNode(op, [x, y], {}, [{ dtype: resultDType ?? dtype, shape }])[0];
}

function unary(op: string, x: Value, floatOnly = true): Value {
  const b = builderOf(x);
  if (floatOnly) requireFloat(b, op, [x]);
  return b.addNode(op, [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0];
}

export const add = (a: Operand, c: Operand): Value => binary("Add", a, c);
export const sub = (a: Operand, c: Operand): Value => binary("Sub", a, c);
export const mul = (a: Operand, c: Operand): Value => binary("Mul", a, c);
export const div = (a: Operand, c: Operand): Value => binary("Div", a, c);
export const equal = (a: Operand, c: Operand): Value => binary("Equal", a, c, "bool");
export const less = (a: Operand, c: Operand): Value => binary("Less", a, c, "bool");
export const greater = (a: Operand, c: Operand): Value => binary("Greater", a, c, "bool");

/** Pow: the exponent may have another numeric type; a number exponent becomes a constant of x's dtype. */
export function pow(x: Value, exponent: Operand): Value {
  const b = builderOf(x, exponent);
  const e = asValue(b, exponent, x);
  requireFloat(b, "Pow", [x]);
  const shape = broadcastShapes(b, "Pow", [x, e]);
  return b.addNode("Pow", [x, e], {}, [{ dtype: x.dtype, shape }])[0];
}

function variadic(op: string, xs: Value[]): Value {
  const b = builderOf(...xs);
  const dtype = sameDType(b, op, xs);
  return b.addNode(op, xs, {}, [{ dtype, shape: broadcastShapes(b, op, xs) }])[0];
}
export const max = (...xs: Value[]): Value => variadic("Max", xs);
export const min = (...xs: Value[]): Value => variadic("Min", xs);

export const neg = (x: Value): Value => unary("Neg", x, false);
export const abs = (x: Value): Value => unary("Abs", x, false);
export const sign = (x: Value): Value => unary("Sign", x, false);
export const sqrt = (x: Value): Value => unary("Sqrt", x);
export const exp = (x: Value): Value => unary("Exp", x);
export const log = (x: Value): Value => unary("Log", x);
export const tanh = (x: Value): Value => unary("Tanh", x);
export const sigmoid = (x: Value): Value => unary("Sigmoid", x);
export const erf = (x: Value): Value => unary("Erf", x);
export const relu = (x: Value): Value => unary("Relu", x);
export const sin = (x: Value): Value => unary("Sin", x);
export const cos = (x: Value): Value => unary("Cos", x);
export const identity = (x: Value): Value => unary("Identity", x, false);

/** Gelu (opset 20): approximate "none" (erf form) or "tanh". */
export function gelu(x: Value, approximate: "none" | "tanh" = "none"): Value {
  const b = builderOf(x);
  requireFloat(b, "Gelu", [x]);
  return b.addNode("Gelu", [x], { approximate: attr.string(approximate) }, [
    { dtype: x.dtype, shape: x.shape },
  ])[0];
}

/** Where(cond, x, y): cond must be bool; three-way broadcasting. */
export function where(cond: Value, x: Operand, y: Operand): Value {
  const b = builderOf(cond, x, y);
  const like = firstValue(x, y);
  const xv = asValue(b, x, like);
  const yv = asValue(b, y, like);
  if (cond.dtype !== "bool") b.fail("Where", [cond, xv, yv], `condition must be bool, got ${cond.dtype}`);
  const dtype = sameDType(b, "Where", [xv, yv]);
  const shape = broadcastShapes(b, "Where", [cond, xv, yv]);
  return b.addNode("Where", [cond, xv, yv], {}, [{ dtype, shape }])[0];
}

export function cast(x: Value, to: DType): Value {
  const b = builderOf(x);
  return b.addNode("Cast", [x], { to: attr.int(ONNX_DTYPE_CODE[to]) }, [{ dtype: to, shape: x.shape }])[0];
}
