/**
 * Vector-Jacobian products of Conv, ConvTranspose and nearest Resize. Conventions checked on ORT 1.30 CPU (see
 * /work/shared/docs/onnxruntime-node-facts.md and test/autodiff-linalg-conv.test.ts): the input gradient of Conv
 * is ConvTranspose with the same weights (output_padding restores the input size for strides > 1); its weight
 * gradient is a Conv of the channel-transposed input with the transposed output gradient as kernel (dilations =
 * the forward strides, strides = the forward dilations) whose end pads are trimmed, so that e.g. stride 2 with
 * pads 1 uses [1,1,0,0], and the result has exactly the kernel's size. ConvTranspose is the adjoint: its input
 * gradient is a Conv and its weight gradient the same correlation with the roles of x and g swapped.
 */
import type { Node, Value } from "../graph/ir.ts";
import { attrInt, attrInts, attrString } from "../graph/ir.ts";
import { conv, convTranspose, reduceSum, reshape, slice, transpose } from "../graph/ops/index.ts";
import { AutodiffError } from "./errors.ts";

const range = (a: number, b: number): number[] => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);

interface ConvAttrs {
  strides: number[];
  pads: number[];
  dilations: number[];
  group: number;
}

function convAttrs(n: Node, sp: number): ConvAttrs {
  if (attrString(n, "auto_pad", "NOTSET") !== "NOTSET")
    throw new AutodiffError(`${n.name}: ${n.op} gradient needs explicit pads, not auto_pad`);
  return {
    strides: attrInts(n, "strides", Array(sp).fill(1)),
    pads: attrInts(n, "pads", Array(2 * sp).fill(0)),
    dilations: attrInts(n, "dilations", Array(sp).fill(1)),
    group: attrInt(n, "group", 1),
  };
}

/**
 * d/dW of a correlation out[n,m,p] = sum_{c,k} a[n, c, p*s + k*d - pad] * W[m, c, k] (grouped), given the
 * gradient `go` of `out`; returns [M, C/group, k...]. One Conv: batch = a's channels within a group, input
 * channels = group x batch, kernel = go with batch and channels swapped.
 */
function correlationWeightGrad(a: Value, go: Value, kernel: number[], at: ConvAttrs): Value {
  const [nb, c] = a.shape;
  const sp = a.shape.length - 2;
  const G = at.group;
  const spatial = range(3, 3 + sp);
  const aT = reshape(transpose(reshape(a, [nb, G, c / G, ...a.shape.slice(2)]), [2, 1, 0, ...spatial]), [
    c / G,
    G * nb,
    ...a.shape.slice(2),
  ]);
  const gT = transpose(go, [1, 0, ...range(2, 2 + sp)]);
  const pads = [...at.pads];
  const excess: number[] = [];
  for (let i = 0; i < sp; i++) {
    const padded = a.shape[2 + i] + pads[i] + pads[i + sp];
    const spare = padded - ((go.shape[2 + i] - 1) * at.strides[i] + 1) - (kernel[i] - 1) * at.dilations[i];
    const trim = Math.min(spare, pads[i + sp]);
    pads[i + sp] -= trim;
    excess.push(Math.floor((spare - trim) / at.dilations[i]));
  }
  let w = conv(aT, gT, undefined, { strides: at.dilations, dilations: at.strides, pads, group: G });
  if (excess.some((e) => e > 0)) w = slice(w, Array(sp).fill(0), kernel, range(2, 2 + sp));
  return transpose(w, [1, 0, ...range(2, 2 + sp)]);
}

const biasGrad = (g: Value): Value => reduceSum(g, [0, ...range(2, g.shape.length)], false);

export function convGrads(n: Node, g: Value, need: (v: Value | undefined) => boolean): (Value | undefined)[] {
  const [x, w, bias] = n.inputs as Value[];
  const sp = x.shape.length - 2;
  const at = convAttrs(n, sp);
  let dx: Value | undefined;
  if (need(x)) {
    const outputPadding = range(0, sp).map((i) => {
      const eff = (w.shape[2 + i] - 1) * at.dilations[i] + 1;
      return x.shape[2 + i] - (at.strides[i] * (g.shape[2 + i] - 1) + eff - at.pads[i] - at.pads[i + sp]);
    });
    dx = convTranspose(g, w, undefined, { ...at, outputPadding });
  }
  const dw = need(w) ? correlationWeightGrad(x, g, w.shape.slice(2), at) : undefined;
  return [dx, dw, bias && need(bias) ? biasGrad(g) : undefined];
}

export function convTransposeGrads(
  n: Node,
  g: Value,
  need: (v: Value | undefined) => boolean,
): (Value | undefined)[] {
  const [x, w, bias] = n.inputs as Value[];
  const sp = x.shape.length - 2;
  const at = convAttrs(n, sp);
  if (n.attributes.output_shape)
    throw new AutodiffError(`${n.name}: ConvTranspose gradient needs pads, not output_shape`);
  const dx = need(x) ? conv(g, w, undefined, at) : undefined;
  // W[c, m, k] correlates g (as the input) with x (as the output gradient): the same weight-gradient Conv.
  const dw = need(w) ? correlationWeightGrad(g, x, w.shape.slice(2), at) : undefined;
  return [dx, dw, bias && need(bias) ? biasGrad(g) : undefined];
}

/** Nearest Resize by integer scales that replicate blocks: the gradient sums each block. */
export function resizeNearestGrad(n: Node, g: Value): Value {
  const x = n.inputs[0] as Value;
  const mode = attrString(n, "mode", "nearest");
  const ctm = attrString(n, "coordinate_transformation_mode", "half_pixel");
  const nearest = attrString(n, "nearest_mode", "round_prefer_floor");
  const blockExact =
    (ctm === "asymmetric" && nearest === "floor") ||
    ((ctm === "half_pixel" || ctm === "pytorch_half_pixel") && nearest === "round_prefer_floor");
  const scales = x.shape.map((d, i) => g.shape[i] / d);
  if (mode !== "nearest" || !blockExact || !scales.every((s) => Number.isInteger(s))) {
    throw new AutodiffError(
      `${n.name}: Resize gradient supports nearest mode with integer scales (asymmetric+floor or half_pixel+round_prefer_floor); got ${mode}, ${ctm}, ${nearest}, scales [${scales.join(",")}]`,
    );
  }
  const blocks = reshape(
    g,
    x.shape.flatMap((d, i) => [d, scales[i]]),
  );
  return reshape(
    reduceSum(
      blocks,
      x.shape.map((_, i) => 2 * i + 1),
      false,
    ),
    [...x.shape],
  );
}
