/**
 * The LoRA injection point. Every Linear and Conv2d of the models goes through `withLora`: when the module is in
 * the context's LoRA targets it adds `scale * up(down(x))`, where down, up and scale are GRAPH INPUTS
 *   lora.<component>.<module path>.down   Linear [r, in]        Conv [r, in, kh, kw]  (kohya lora_down)
 *   lora.<component>.<module path>.up     Linear [out, r]       Conv [out, r, 1, 1]   (kohya lora_up)
 *   lora.<component>.<module path>.scale  float32 []            (alpha / rank x multiplier)
 * so one graph trains an adapter (down/up are the trainable inputs) and, at inference, runs any stack of adapters
 * concatenated along the rank axis (scales folded into `up` by the caller, scale = 1) without a rebuild.
 * A module outside the targets gets no inputs and no nodes. For training graphs (`trainable`), down/up are named
 * `state_in.lora.<component>.<path>.down|up` (see loraInputNames).
 */
import type { Value } from "../graph/ir.ts";
import { add, cast, conv, matmul, mul, transpose } from "../graph/ops/index.ts";
import type { ModuleContext } from "./module.ts";

export interface LoraInputNames {
  down: string;
  up: string;
  scale: string;
}

/**
 * Graph input names of one module's LoRA. With `trainable`, down/up follow the training-step state convention
 * (runtime/train-step.ts): inputs `state_in.lora.<component>.<path>.down|up`, so optim/appendTrainStep can update
 * them as state "lora.<component>.<path>.down|up"; the scale stays a plain input.
 */
export function loraInputNames(component: string, path: string, trainable = false): LoraInputNames {
  const base = `lora.${component}.${path}`;
  const state = trainable ? "state_in." : "";
  return { down: `${state}${base}.down`, up: `${state}${base}.up`, scale: `${base}.scale` };
}

export type LoraLayer =
  | { kind: "linear"; inFeatures: number; outFeatures: number }
  | {
      kind: "conv";
      inChannels: number;
      outChannels: number;
      kernel: number;
      stride: number;
      pads: number[];
    };

/**
 * `y` plus the module's LoRA branch applied to `x` (the layer's input), or `y` unchanged without a LoRA.
 *
 * In an fp16 graph the float32 down/up inputs (master weights) are cast to fp16 inside the graph, so gradients
 * come back through the Cast as float32. The scale is folded into `up` in float32 before that cast
 * (up * scale is a tiny [out, r] tensor) rather than multiplied onto the fp16 branch output: the scale costs no
 * per-activation kernel and no extra fp16 rounding, and the gradient of `up` is scaled in float32 too.
 */
export function withLora(ctx: ModuleContext, x: Value, y: Value, layer: LoraLayer): Value {
  const rank = ctx.loraRank();
  if (rank <= 0 || !ctx.lora) return y;
  const names = loraInputNames(ctx.lora.component, ctx.path, ctx.lora.trainable);
  const b = ctx.b;
  const scale = b.input(names.scale, "float32", []);
  const half = x.dtype === "float16";
  let branch: Value;
  let down: Value;
  let up: Value;
  if (layer.kind === "linear") {
    down = b.input(names.down, "float32", [rank, layer.inFeatures]);
    up = b.input(names.up, "float32", [layer.outFeatures, rank]);
  } else {
    down = b.input(names.down, "float32", [rank, layer.inChannels, layer.kernel, layer.kernel]);
    up = b.input(names.up, "float32", [layer.outChannels, rank, 1, 1]);
  }
  ctx.loraInputs.push({ path: ctx.path, down, up, scale });
  const downC = half ? cast(down, "float16") : down;
  const upC = half ? cast(mul(up, scale), "float16") : up;
  if (layer.kind === "linear") {
    // Inputs (not initializers) may be transposed: x [.., in] @ down^T [in, r] @ up^T [r, out].
    branch = matmul(matmul(x, transpose(downC, [1, 0])), transpose(upC, [1, 0]));
  } else {
    const s = layer.stride;
    branch = conv(conv(x, downC, undefined, { strides: [s, s], pads: layer.pads }), upC);
  }
  return add(y, half ? branch : mul(branch, scale));
}
