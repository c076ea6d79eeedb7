// End-to-end learning: whole training steps (forward + our backward + in-graph AdamW) in one ORT session per
// step. Data and targets are synthetic, built here: a teacher network of the same architecture with other random
// weights produces the targets, so they are reachable, and the loss must fall at least 10x.
import assert from "node:assert/strict";
import { test } from "node:test";
import ort from "onnxruntime-node";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import * as op from "../src/graph/ops/index.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { type ConvNetSize, convNet, convNetShapes, initConvNet, mseLoss } from "./support/nets.ts";
import { randn, rng } from "./support/numeric.ts";
import { createTrainer, type Feed } from "./support/train-harness.ts";

function mlp(x: Value, p: (name: string, shape: number[]) => Value, sizes: number[]): Value {
  let h = x;
  for (let i = 0; i + 1 < sizes.length; i++) {
    h = op.add(op.matmul(h, p(`l${i}.weight`, [sizes[i], sizes[i + 1]])), p(`l${i}.bias`, [sizes[i + 1]]));
    if (i + 2 < sizes.length) h = op.tanh(h);
  }
  return h;
}

async function forwardOnce(
  build: (b: GraphBuilder) => Value,
  feeds: Record<string, ort.Tensor>,
): Promise<Float32Array> {
  const b = new GraphBuilder("teacher");
  b.output(build(b), "y");
  const s = await ort.InferenceSession.create(encodeModel(b.build()), { intraOpNumThreads: 1 });
  return (await s.run(feeds)).y.data as Float32Array;
}

test("an MLP (8-32-32-2, tanh) trained with AdamW: loss falls >= 10x", async () => {
  const sizes = [8, 32, 32, 2];
  const n = 64;
  const rand = rng(1);
  const x = Float32Array.from(randn(rand, n * 8));
  const teacherW = (shape: number[]) => {
    const fan = shape.length === 2 ? shape[0] : 1;
    return Float32Array.from(
      randn(
        rand,
        shape.reduce((a, c) => a * c),
        1.5 / Math.sqrt(fan),
      ),
    );
  };
  const target = await forwardOnce(
    (b) =>
      mlp(
        b.input("x", "float32", [n, 8]),
        (name, shape) => b.initializer(name, { dtype: "float32", shape, data: teacherW(shape) }),
        sizes,
      ),
    { x: new ort.Tensor("float32", x, [n, 8]) },
  );
  const b = new GraphBuilder("mlp");
  const init: Record<string, Float32Array> = {};
  const params: Value[] = [];
  const y = mlp(
    b.input("x", "float32", [n, 8]),
    (name, shape) => {
      init[name] = Float32Array.from(
        randn(
          rand,
          shape.reduce((a, c) => a * c),
          shape.length === 2 ? 1 / Math.sqrt(shape[0]) : 0,
        ),
      );
      const v = b.input(`state_in.${name}`, "float32", shape);
      params.push(v);
      return v;
    },
    sizes,
  );
  const loss = mseLoss(y, b.input("target", "float32", [n, 2]));
  const graph = appendTrainStep(b, { loss, params, optimizer: { kind: "adamw", weightDecay: 0 } });
  const trainer = await createTrainer(encodeModel(b.build()), graph, init);
  const batch: Record<string, Feed> = {
    x: { dtype: "float32", shape: [n, 8], data: x },
    target: { dtype: "float32", shape: [n, 2], data: target },
  };
  const losses: number[] = [];
  for (let i = 0; i < 300; i++) losses.push((await trainer.step(0.01, batch)).loss.data[0] as number);
  assert.ok(losses[0] / losses[299] >= 10, `loss ${losses[0]} -> ${losses[299]}`);
});

test("a conv net with GroupNorm, self-attention and nearest upsampling: loss falls >= 10x", async () => {
  const s: ConvNetSize = { batch: 4, inChannels: 3, channels: 8, size: 8 };
  const xShape = [s.batch, s.inChannels, s.size, s.size];
  const rand = rng(2);
  const x = Float32Array.from(
    randn(
      rand,
      xShape.reduce((a, c) => a * c),
    ),
  );
  const teacher = initConvNet(s, 100, 2);
  const target = await forwardOnce(
    (b) =>
      convNet(b, b.input("x", "float32", xShape), s, (name, shape) =>
        b.initializer(name, { dtype: "float32", shape, data: teacher[name] }),
      ),
    { x: new ort.Tensor("float32", x, xShape) },
  );
  const b = new GraphBuilder("convnet");
  const params: Value[] = [];
  const y = convNet(b, b.input("x", "float32", xShape), s, (name, shape) => {
    const v = b.input(`state_in.${name}`, "float32", shape);
    params.push(v);
    return v;
  });
  assert.equal(params.length, convNetShapes(s).length);
  const loss = mseLoss(y, b.input("target", "float32", xShape));
  const graph = appendTrainStep(b, {
    loss,
    params,
    optimizer: { kind: "adamw", weightDecay: 0 },
    maxGradNorm: 10,
  });
  const trainer = await createTrainer(encodeModel(b.build()), graph, initConvNet(s, 7));
  const batch: Record<string, Feed> = {
    x: { dtype: "float32", shape: xShape, data: x },
    target: { dtype: "float32", shape: xShape, data: target },
  };
  const losses: number[] = [];
  for (let i = 0; i < 400; i++)
    losses.push((await trainer.step(i < 300 ? 0.01 : 0.003, batch)).loss.data[0] as number);
  assert.ok(losses[0] / losses[399] >= 10, `loss ${losses[0]} -> ${losses[399]}`);
});
