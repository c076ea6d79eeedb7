/**
 * Shared layers with PyTorch semantics, each opening no scope of its own: call them inside
 * `b.scope(<module path>, ...)` so their parameters ("weight", "bias") get the diffusers key of that module.
 */

import { groupNorm as groupNormOp } from "../autodiff/group-norm.ts";
import type { Value } from "../graph/ir.ts";
import { cast, conv, gemm, layerNormalization, mul, reshape, sigmoid } from "../graph/ops/index.ts";
import { withLora } from "./lora.ts";
import type { ModuleContext } from "./module.ts";

/**
 * nn.Linear on [..., in] (weight [out, in] used through Gemm transB, never transposed), LoRA-aware. `x` and the
 * parameters are in the compute dtype (fp16 Gemm in an fp16 graph).
 */
export function linear(ctx: ModuleContext, x: Value, inF: number, outF: number, bias = true): Value {
  const w = ctx.param("weight", [outF, inF]);
  const bv = bias ? ctx.param("bias", [outF]) : undefined;
  const lead = x.shape.slice(0, -1);
  const x2 = x.shape.length === 2 ? x : reshape(x, [-1, inF]);
  let y = gemm(x2, w, bv, { transB: true });
  if (x.shape.length !== 2) y = reshape(y, [...lead, outF]);
  return withLora(ctx, x, y, { kind: "linear", inFeatures: inF, outFeatures: outF });
}

export interface Conv2dOptions {
  kernel: number;
  stride?: number;
  /** ONNX pads [top, left, bottom, right]; default `kernel >> 1` on every side. */
  pads?: number[];
  bias?: boolean;
}

/** nn.Conv2d (square kernel), LoRA-aware. */
export function conv2d(ctx: ModuleContext, x: Value, inC: number, outC: number, o: Conv2dOptions): Value {
  const k = o.kernel;
  const stride = o.stride ?? 1;
  const p = k >> 1;
  const pads = o.pads ?? [p, p, p, p];
  const w = ctx.param("weight", [outC, inC, k, k]);
  const bv = o.bias === false ? undefined : ctx.param("bias", [outC]);
  const y = conv(x, w, bv, { strides: [stride, stride], pads });
  return withLora(ctx, x, y, {
    kind: "conv",
    inChannels: inC,
    outChannels: outC,
    kernel: k,
    stride,
    pads,
  });
}

/**
 * Runs a normalization in float32 and returns its result in x's dtype: in an fp16 graph, the mean and variance
 * over thousands of fp16 values lose precision (and x^2 overflows fp16 past 256), so norms are computed on a
 * float32 copy with float32 affine parameters, as torch autocast does for group_norm / layer_norm.
 */
function inFloat32(x: Value, fn: (x32: Value) => Value): Value {
  return x.dtype === "float16" ? cast(fn(cast(x, "float32")), "float16") : fn(x);
}

/**
 * nn.GroupNorm of the current module (weight/bias [C]); the computation is autodiff's groupNorm (InstanceNorm on
 * a [N, G, -1] view + per-channel affine, PyTorch semantics, differentiable). float32 inside an fp16 graph.
 */
export function groupNorm(ctx: ModuleContext, x: Value, groups: number, eps: number): Value {
  const c = x.shape[1];
  return inFloat32(x, (x32) =>
    groupNormOp(x32, groups, ctx.param("weight", [c], "float32"), ctx.param("bias", [c], "float32"), {
      epsilon: eps,
    }),
  );
}

/** nn.LayerNorm over the last axis; float32 inside an fp16 graph. */
export function layerNorm(ctx: ModuleContext, x: Value, eps: number): Value {
  const d = x.shape[x.shape.length - 1];
  return inFloat32(
    x,
    (x32) =>
      layerNormalization(x32, ctx.param("weight", [d], "float32"), ctx.param("bias", [d], "float32"), {
        axis: -1,
        epsilon: eps,
      })[0],
  );
}

export const silu = (x: Value): Value => mul(x, sigmoid(x));

/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export const quickGelu = (x: Value): Value => mul(x, sigmoid(mul(x, 1.702)));
