// Gradient checkpointing: the conv + GroupNorm + attention + upsampling net with every block in a checkpoint()
// segment must give the same gradients (1e-5 relative to each gradient's scale) as the plain backward pass,
// while the graph really contains a second, recomputed copy of the forward nodes (run with ORT's CSE disabled,
// which would otherwise merge the copies back). Peak-memory figures: bench/train-step.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import ort from "onnxruntime-node";
import { CHECKPOINT_SESSION_OPTIONS, grad } from "../src/autodiff/grad.ts";
import { checkpointSegments } from "../src/autodiff/marks.ts";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { convNet, type ConvNetSize, initConvNet, mseLoss } from "./support/nets.ts";
import { maxAbs, maxAbsDiff, randn, rng } from "./support/numeric.ts";

const S: ConvNetSize = { batch: 2, inChannels: 3, channels: 8, size: 8 };
const X_SHAPE = [S.batch, S.inChannels, S.size, S.size];

function build(checkpointed: boolean) {
  const b = new GraphBuilder(checkpointed ? "checkpointed" : "plain");
  const x = b.input("x", "float32", X_SHAPE);
  const params: Value[] = [];
  const y = convNet(b, x, S, (name, shape) => {
    const v = b.input(name, "float32", shape);
    params.push(v);
    return v;
  }, checkpointed);
  const loss = mseLoss(y, b.input("target", "float32", X_SHAPE));
  const grads = grad(b, loss, [...params, x]);
  grads.forEach((g, i) => b.output(g, `grad.${i < params.length ? params[i].name : "x"}`));
  return { b, params };
}

test("checkpointed segments give the same gradients (1e-5) as the plain backward pass", async () => {
  const plain = build(false);
  const ckpt = build(true);
  assert.equal(checkpointSegments(ckpt.b).length, 3);
  const count = (b: GraphBuilder, opName: string) => b.build().nodes.filter((n) => n.op === opName).length;
  // The recomputed copies the rules read are live in the final graph: conv1 (GroupNorm's input), the softmax
  // (its VJP reads the output) and the upsampling (conv2's weight gradient reads it). conv2 itself is not
  // recomputed: no rule reads its output, so dead-node elimination drops that copy.
  assert.equal(count(ckpt.b, "Conv") - count(plain.b, "Conv"), 1);
  assert.equal(count(ckpt.b, "Softmax") - count(plain.b, "Softmax"), 1);
  assert.equal(count(ckpt.b, "Resize") - count(plain.b, "Resize"), 1);
  assert.ok(ckpt.b.build().nodes.some((n) => n.name.includes("recompute.attention0")));

  const rand = rng(9);
  const init = initConvNet(S, 4);
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor("float32", Float32Array.from(randn(rand, 2 * 3 * 64)), X_SHAPE),
    target: new ort.Tensor("float32", Float32Array.from(randn(rand, 2 * 3 * 64)), X_SHAPE),
  };
  for (const p of plain.params) feeds[p.name] = new ort.Tensor("float32", init[p.name], [...p.shape]);
  const runWith = async (b: GraphBuilder, opts: ort.InferenceSession.SessionOptions) =>
    (await ort.InferenceSession.create(encodeModel(b.build()), { intraOpNumThreads: 1, ...opts })).run(feeds);
  const a = await runWith(plain.b, {});
  const c = await runWith(ckpt.b, CHECKPOINT_SESSION_OPTIONS);
  for (const name of Object.keys(a)) {
    const ga = a[name].data as Float32Array;
    const gc = c[name].data as Float32Array;
    assert.ok(maxAbs(ga) > 0, `${name} is all zero`);
    assert.ok(maxAbsDiff(ga, gc) <= 1e-5 * maxAbs(ga), `${name}: max diff ${maxAbsDiff(ga, gc)} (scale ${maxAbs(ga)})`);
  }
});
