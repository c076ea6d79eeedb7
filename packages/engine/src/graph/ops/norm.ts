/** LayerNormalization (opset 17) and InstanceNormalization. */
import { attr, builderOf } from "../builder.ts";
import type { Value } from "../ir.ts";
import { normAxis, requireFloat } from "./common.ts";

export interface LayerNormOptions {
  axis?: number;
  epsilon?: number;
  /** Also return Mean and InvStdDev (shape of X with the normalized axes set to 1), e.g. for autodiff. */
  withStats?: boolean;
}

/**
 * Normalizes over axes [axis, rank). Scale (and bias) must broadcast to X.shape[axis:].
 * Returns [Y] or [Y, Mean, InvStdDev].
 */
export function layerNormalization(
  x: Value,
  scale: Value,
  bias?: Value,
  opts: LayerNormOptions = {},
): Value[] {
  const b = builderOf(x, scale, bias);
  const inputs = bias ? [x, scale, bias] : [x, scale];
  const dtype = requireFloat(b, "LayerNormalization", inputs);
  const a = normAxis(b, "LayerNormalization", inputs, opts.axis ?? -1, x.shape.length);
  const normShape = x.shape.slice(a);
  for (const p of bias ? [scale, bias] : [scale]) {
    const off = normShape.length - p.shape.length;
    if (off < 0 || p.shape.some((d, i) => d !== 1 && d !== normShape[off + i])) {
      b.fail("LayerNormalization", inputs, `scale/bias must broadcast to [${normShape.join(",")}]`);
    }
  }
  const statShape = x.shape.map((d, i) => (i < a ? d : 1));
  const outs = [{ dtype, shape: x.shape }];
  if (opts.withStats)
    outs.push({ dtype: "float32", shape: statShape }, { dtype: "float32", shape: statShape });
  const attrs = { axis: attr.int(a), epsilon: attr.float(opts.epsilon ?? 1e-5) };
  return b.addNode("LayerNormalization", inputs, attrs, outs);
}

/** InstanceNormalization: X [N, C, ...], scale [C], bias [C]; normalizes each (n, c) over the spatial axes. */
export function instanceNormalization(x: Value, scale: Value, bias: Value, epsilon = 1e-5): Value {
  const b = builderOf(x, scale, bias);
  const inputs = [x, scale, bias];
  const dtype = requireFloat(b, "InstanceNormalization", inputs);
  if (x.shape.length < 3) b.fail("InstanceNormalization", inputs, "X must be [N, C, spatial...]");
  const c = x.shape[1];
  if (scale.shape.length !== 1 || scale.shape[0] !== c || bias.shape.length !== 1 || bias.shape[0] !== c) {
    b.fail("InstanceNormalization", inputs, `scale and bias must be [${c}]`);
  }
  return b.addNode("InstanceNormalization", inputs, { epsilon: attr.float(epsilon) }, [
    { dtype, shape: x.shape },
  ])[0];
}
