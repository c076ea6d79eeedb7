/** MatMul (NumPy semantics: batched, broadcast batch dims, 1-D promotion) and Gemm (2-D, transA/transB). */
import { attr, builderOf } from "../builder.ts";
import type { Value } from "../ir.ts";
import { broadcastShapeList, requireFloat } from "./common.ts";

export function matmul(a: Value, c: Value): Value {
  const b = builderOf(a, c);
  const inputs = [a, c];
  const dtype = requireFloat(b, "MatMul", inputs);
  if (a.shape.length === 0 || c.shape.length === 0) b.fail("MatMul", inputs, "operands must have rank >= 1");
  const as = a.shape.length === 1 ? [1, a.shape[0]] : [...a.shape];
  const cs = c.shape.length === 1 ? [c.shape[0], 1] : [...c.shape];
  const k1 = as[as.length - 1];
  const k2 = cs[cs.length - 2];
  if (k1 !== k2) b.fail("MatMul", inputs, `inner dimensions differ (${k1} vs ${k2})`);
  const bb = broadcastShapeList([as.slice(0, -2), cs.slice(0, -2)]);
  const batch = typeof bb === "string" ? b.fail("MatMul", inputs, `batch dimensions: ${bb}`) : bb;
  const shape = [...batch];
  if (a.shape.length > 1) shape.push(as[as.length - 2]);
  if (c.shape.length > 1) shape.push(cs[cs.length - 1]);
  return b.addNode("MatMul", inputs, {}, [{ dtype, shape }])[0];
}

export interface GemmOptions {
  alpha?: number;
  beta?: number;
  transA?: boolean;
  transB?: boolean;
}

/** Y = alpha * op(A) op(B) + beta * C. With transB a weight stored [out, in] is used without a Transpose. */
export function gemm(a: Value, w: Value, c?: Value, opts: GemmOptions = {}): Value {
  const b = builderOf(a, w, c);
  const inputs = c ? [a, w, c] : [a, w];
  const dtype = requireFloat(b, "Gemm", inputs);
  if (a.shape.length !== 2 || w.shape.length !== 2) b.fail("Gemm", inputs, "A and B must be 2-D");
  const [m, ka] = opts.transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [kb, n] = opts.transB ? [w.shape[1], w.shape[0]] : [w.shape[0], w.shape[1]];
  if (ka !== kb)
    b.fail(
      "Gemm",
      inputs,
      `inner dimensions differ (${ka} vs ${kb}; transA=${!!opts.transA}, transB=${!!opts.transB})`,
    );
  if (c) {
    const cs = c.shape;
    const ok =
      cs.length <= 2 &&
      cs.every((d, i) => {
        const target = [m, n][2 - cs.length + i];
        return d === 1 || d === target;
      });
    if (!ok) b.fail("Gemm", inputs, `C must broadcast to [${m},${n}]`);
  }
  const attrs: Record<string, ReturnType<typeof attr.int>> = {};
  if (opts.alpha !== undefined) attrs.alpha = attr.float(opts.alpha);
  if (opts.beta !== undefined) attrs.beta = attr.float(opts.beta);
  if (opts.transA) attrs.transA = attr.int(1);
  if (opts.transB) attrs.transB = attr.int(1);
  return b.addNode("Gemm", inputs, attrs, [{ dtype, shape: [m, n] }])[0];
}
