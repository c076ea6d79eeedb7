/**
 * Small networks for the learning, checkpointing tests and the bench: an MLP and a conv net with GroupNorm, SiLU,
 * single-head self-attention softmax(QK^T/sqrt d)V over the spatial positions, and nearest 2x upsampling.
 * Parameters are created by a callback so the same forward serves as teacher (initializers/inputs) and student
 * (state_in.* inputs), and optionally each block is wrapped in checkpoint().
 */

import { groupNorm } from "../../src/autodiff/group-norm.ts";
import { checkpoint } from "../../src/autodiff/marks.ts";
import type { GraphBuilder } from "../../src/graph/builder.ts";
import type { Value } from "../../src/graph/ir.ts";
import * as op from "../../src/graph/ops/index.ts";
import { randn, rng } from "./numeric.ts";

export type ParamFactory = (name: string, shape: number[]) => Value;

export interface ConvNetSize {
  batch: number;
  inChannels: number;
  channels: number;
  /** Input height = width (even). */
  size: number;
  /** Number of attention blocks (default 1). */
  depth?: number;
}

/** Parameter shapes of convNet, in creation order, with a fan-in based init scale. */
export function convNetShapes(s: ConvNetSize): [string, number[], number][] {
  const c = s.channels;
  return [
    ["conv1.weight", [c, s.inChannels, 3, 3], 1 / Math.sqrt(9 * s.inChannels)],
    ["conv1.bias", [c], 0],
    ["norm.gamma", [c], -1],
    ["norm.beta", [c], 0],
    ...Array.from({ length: s.depth ?? 1 }, (_, i) =>
      ["q", "k", "v", "out"].map((m): [string, number[], number] => [
        `attn${i}.${m}`,
        [c, c],
        1 / Math.sqrt(c),
      ]),
    ).flat(),
    ["conv2.weight", [s.inChannels, c, 3, 3], 1 / Math.sqrt(9 * c)],
    ["conv2.bias", [s.inChannels], 0],
  ];
}

/** Random initial values for convNetShapes (gamma = 1 + noise, biases small). */
export function initConvNet(s: ConvNetSize, seed: number, gain = 1): Record<string, Float32Array> {
  const rand = rng(seed);
  const out: Record<string, Float32Array> = {};
  for (const [name, shape, scale] of convNetShapes(s)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const noise = randn(rand, n, 0.1);
    out[name] = Float32Array.from(randn(rand, n, scale * gain), (v, i) =>
      scale === -1 ? 1 + noise[i] : scale === 0 ? noise[i] : v,
    );
  }
  return out;
}

/** conv 3x3 stride 2 -> GroupNorm -> SiLU -> `depth` x self-attention (+ residual) -> nearest 2x -> conv 3x3. */
export function convNet(
  b: GraphBuilder,
  x: Value,
  s: ConvNetSize,
  param: ParamFactory,
  checkpointed = false,
): Value {
  const P = Object.fromEntries(convNetShapes(s).map(([name, shape]) => [name, param(name, shape)]));
  const seg = <T>(label: string, fn: () => T): T => (checkpointed ? checkpoint(b, fn, label) : fn());
  const c = s.channels;
  const h = s.size / 2;
  const tokens = seg("down", () => {
    const y = op.conv(x, P["conv1.weight"], P["conv1.bias"], { strides: [2, 2], pads: [1, 1, 1, 1] });
    const n = groupNorm(y, 2, P["norm.gamma"], P["norm.beta"]);
    const act = op.mul(n, op.sigmoid(n));
    return op.transpose(op.reshape(act, [s.batch, c, h * h]), [0, 2, 1]);
  });
  let attended = tokens;
  for (let i = 0; i < (s.depth ?? 1); i++) {
    const t = attended;
    attended = seg(`attention${i}`, () => {
      const q = op.matmul(t, P[`attn${i}.q`]);
      const k = op.matmul(t, P[`attn${i}.k`]);
      const v = op.matmul(t, P[`attn${i}.v`]);
      const scores = op.div(op.matmul(q, op.transpose(k, [0, 2, 1])), Math.sqrt(c));
      return op.add(t, op.matmul(op.matmul(op.softmax(scores, -1), v), P[`attn${i}.out`]));
    });
  }
  return seg("up", () => {
    const grid = op.reshape(op.transpose(attended, [0, 2, 1]), [s.batch, c, h, h]);
    const up = op.resizeNearest(grid, [1, 1, 2, 2]);
    return op.conv(up, P["conv2.weight"], P["conv2.bias"], { pads: [1, 1, 1, 1] });
  });
}

export function mseLoss(y: Value, target: Value): Value {
  const d = op.sub(y, target);
  return op.reduceMean(op.mul(d, d), undefined, false);
}
