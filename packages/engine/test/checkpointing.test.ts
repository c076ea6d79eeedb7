// Gradient checkpointing: the conv + GroupNorm + attention + upsampling net with every block in a checkpoint()
// segment must give the same gradients (1e-5 relative to each gradient's scale) as the plain backward pass,
// while the graph really contains a second, recomputed copy of the forward nodes (run with ORT's CSE disabled,
// which would otherwise merge the copies back), and ORT must run each segment's recompute only after the backward
// work of the segment after it is finished (else nothing is saved). Peak-memory figures: bench/train-step.ts.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import ort from "onnxruntime-node";
import { CHECKPOINT_SESSION_OPTIONS, grad } from "../src/autodiff/grad.ts";
import { checkpointSegments } from "../src/autodiff/marks.ts";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { type ConvNetSize, convNet, initConvNet, mseLoss } from "./support/nets.ts";
import { maxAbs, maxAbsDiff, randn, rng } from "./support/numeric.ts";
import { createTrainer, type Feed } from "./support/train-harness.ts";

const S: ConvNetSize = { batch: 2, inChannels: 3, channels: 8, size: 8 };
const X_SHAPE = [S.batch, S.inChannels, S.size, S.size];

function build(checkpointed: boolean) {
  const b = new GraphBuilder(checkpointed ? "checkpointed" : "plain");
  const x = b.input("x", "float32", X_SHAPE);
  const params: Value[] = [];
  const y = convNet(
    b,
    x,
    S,
    (name, shape) => {
      const v = b.input(name, "float32", shape);
      params.push(v);
      return v;
    },
    checkpointed,
  );
  const loss = mseLoss(y, b.input("target", "float32", X_SHAPE));
  const grads = grad(b, loss, [...params, x]);
  grads.forEach((g, i) => {
    b.output(g, `grad.${i < params.length ? params[i].name : "x"}`);
  });
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
    assert.ok(
      maxAbsDiff(ga, gc) <= 1e-5 * maxAbs(ga),
      `${name}: max diff ${maxAbsDiff(ga, gc)} (scale ${maxAbs(ga)})`,
    );
  }
});

test("ORT executes segment by segment: a recompute starts only after the later segment's recomputed values are dead", async () => {
  const { b } = build(true);
  const g = b.build();
  const segmentOfValue = new Map<string, string>();
  for (const n of g.nodes) {
    const m = /recompute\.([^/]+)\//.exec(n.name);
    if (m) for (const o of n.outputs) segmentOfValue.set(o.name, m[1]);
  }
  const dir = mkdtempSync(join(tmpdir(), "ckpt-profile-"));
  try {
    const session = await ort.InferenceSession.create(encodeModel(g), {
      ...CHECKPOINT_SESSION_OPTIONS,
      graphOptimizationLevel: "disabled", // keep node names 1:1 with the graph for the profile
      enableProfiling: true,
      profileFilePrefix: join(dir, "p"),
      intraOpNumThreads: 1,
    });
    const feeds: Record<string, ort.Tensor> = {};
    for (const v of g.inputs)
      feeds[v.name] = new ort.Tensor(
        "float32",
        new Float32Array(v.shape.reduce((p, d) => p * d, 1)).fill(0.1),
        [...v.shape],
      );
    await session.run(feeds);
    session.endProfiling();
    const file = (await import("node:fs")).readdirSync(dir).find((f) => f.endsWith(".json"))!;
    const events = JSON.parse(readFileSync(join(dir, file), "utf8")) as { cat: string; name: string }[];
    const order = new Map<string, number>();
    for (const e of events)
      if (e.cat === "Node" && e.name.endsWith("_kernel_time")) order.set(e.name.slice(0, -12), order.size);
    // For each segment: when its recompute starts, and the last step that reads one of its recomputed values.
    const start = new Map<string, number>();
    const lastUse = new Map<string, number>();
    for (const n of g.nodes) {
      const at = order.get(n.name);
      if (at === undefined) continue;
      const own = /recompute\.([^/]+)\//.exec(n.name)?.[1];
      if (own) start.set(own, Math.min(start.get(own) ?? Infinity, at));
      for (const i of n.inputs) {
        const seg = i && segmentOfValue.get(i.name);
        if (seg) lastUse.set(seg, Math.max(lastUse.get(seg) ?? -1, at));
      }
    }
    const backwardOrder = ["up", "attention0", "down"];
    for (let k = 0; k + 1 < backwardOrder.length; k++) {
      const [later, earlier] = [backwardOrder[k], backwardOrder[k + 1]];
      assert.ok(
        lastUse.get(later)! < start.get(earlier)!,
        `recompute of ${earlier} starts at ${start.get(earlier)} while ${later}'s recomputed values are used until ${lastUse.get(later)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("training steps with checkpointing follow the same trajectory as without (3 AdamW steps, 1e-5)", async () => {
  const rand = rng(21);
  const batch: Record<string, Feed> = {
    x: { dtype: "float32", shape: X_SHAPE, data: randn(rand, 2 * 3 * 64) },
    target: { dtype: "float32", shape: X_SHAPE, data: randn(rand, 2 * 3 * 64) },
  };
  const run = async (checkpointed: boolean) => {
    const b = new GraphBuilder("step");
    const params: Value[] = [];
    const y = convNet(
      b,
      b.input("x", "float32", X_SHAPE),
      S,
      (name, shape) => {
        const v = b.input(`state_in.${name}`, "float32", shape);
        params.push(v);
        return v;
      },
      checkpointed,
    );
    const graph = appendTrainStep(b, {
      loss: mseLoss(y, b.input("target", "float32", X_SHAPE)),
      params,
      optimizer: { kind: "adamw" },
    });
    assert.deepEqual(graph.disabledOptimizers, checkpointed ? ["CommonSubexpressionElimination"] : []);
    const trainer = await createTrainer(encodeModel(b.build()), graph, initConvNet(S, 3));
    for (let i = 0; i < 3; i++) await trainer.step(1e-2, batch);
    return trainer;
  };
  const [plain, ckpt] = [await run(false), await run(true)];
  for (const name of plain.state.keys()) {
    const a = plain.value(name);
    assert.ok(maxAbsDiff(a, ckpt.value(name)) <= 1e-5 * Math.max(1, maxAbs(a)), name);
  }
});
