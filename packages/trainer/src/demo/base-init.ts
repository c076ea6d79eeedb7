/**
 * Deterministic initial weights for the demo base model, from the parameter list a model graph asked for
 * (graphInputWeights().shapes). The rules follow PyTorch's / transformers' defaults, which is what the SD
 * models were trained from: Linear and Conv weights and biases uniform in +-1/sqrt(fan_in) (kaiming_uniform with
 * a = sqrt(5)), GroupNorm / LayerNorm weight 1 and bias 0. Embeddings use PyTorch's nn.Embedding default N(0, 1)
 * for tokens (not transformers' 0.02): the demo text encoder stays frozen at its initial weights, and unit-size
 * token vectors dominate the residual stream of the random layers, so different captions give clearly different
 * embeddings; positions get N(0, 0.1) so they shift but do not drown the tokens.
 */
import { TorchCpuGenerator } from "@lora-studio/engine";
import { deriveSeed, Rng } from "../dataset/rng.ts";

export type StateMap = Map<string, { shape: number[]; data: Float32Array }>;

function isNorm(path: string): boolean {
  const last = path.slice(path.lastIndexOf(".") + 1);
  return /norm/.test(last);
}

/** Initial values for every key of `shapes`; `seed` and the key's position make each tensor reproducible. */
/**
 * The last layer of every residual branch (resnet conv2, attention output projection, transformer proj_out),
 * zero-initialised when `zeroResiduals` is set: each block then starts as the identity, so a deep network
 * trains from scratch like a shallow one first ("zero-init residual", Goyal et al. 2017), which is what lets
 * the demo build reach a usable model in a few hundred CPU steps.
 */
const RESIDUAL_OUTPUT =
  /(resnets\.\d+\.conv2|attentions\.\d+\.to_out\.0|attentions\.\d+\.proj_out)\.(weight|bias)$/;

export function initialWeights(
  shapes: ReadonlyMap<string, readonly number[]>,
  seed: number,
  o: { zeroResiduals?: boolean } = {},
): StateMap {
  const out: StateMap = new Map();
  let index = 0;
  for (const [key, shapeRO] of shapes) {
    const shape = [...shapeRO];
    const n = shape.reduce((a, d) => a * d, 1);
    const dot = key.lastIndexOf(".");
    const path = key.slice(0, dot);
    const name = key.slice(dot + 1);
    const data = new Float32Array(n);
    const tensorSeed = deriveSeed(seed, index++, 7);
    if (o.zeroResiduals && RESIDUAL_OUTPUT.test(key)) {
      // stays zero
    } else if (isNorm(path)) {
      if (name === "weight") data.fill(1);
    } else if (/embedding$/.test(path)) {
      const normals = new TorchCpuGenerator(tensorSeed).randn(n);
      const std = path.endsWith("token_embedding") ? 1 : 0.1;
      for (let i = 0; i < n; i++) data[i] = std * normals[i];
    } else {
      const weightShape = shapes.get(`${path}.weight`);
      if (!weightShape) throw new Error(`${key}: no ${path}.weight to take the fan-in from`);
      const fanIn = weightShape.slice(1).reduce((a, d) => a * d, 1);
      const bound = 1 / Math.sqrt(fanIn);
      const rng = new Rng(tensorSeed);
      for (let i = 0; i < n; i++) data[i] = (2 * rng.next() - 1) * bound;
    }
    out.set(key, { shape, data });
  }
  return out;
}
