import ort from "onnxruntime-node";
import { readFileSync } from "node:fs";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { convNet, mseLoss } from "../test/support/nets.ts";
const s = { batch: 2, inChannels: 4, channels: 32, size: 64, depth: 8 };
const xShape = [s.batch, s.inChannels, s.size, s.size];
const b = new GraphBuilder("bench");
const params: Value[] = [];
const y = convNet(b, b.input("x", "float32", xShape), s, (name, shape) => { const v = b.input(`state_in.${name}`, "float32", shape); params.push(v); return v; }, true);
const loss = mseLoss(y, b.input("target", "float32", xShape));
const graph = appendTrainStep(b, { loss, params, optimizer: { kind: "adamw" } });
const g = b.build();
console.log("softmax in our graph", g.nodes.filter(n => n.op === "Softmax").length);
for (const cse of [false, true]) {
  const path = `/tmp/opt-${cse}.onnx`;
  const opts: ort.InferenceSession.SessionOptions = { optimizedModelFilePath: path, graphOptimizationLevel: "all" };
  if (!cse) opts.extra = { optimization: { disable_specified_optimizers: "CommonSubexpressionElimination" } };
  await ort.InferenceSession.create(encodeModel(g), opts);
  const txt = readFileSync(path).toString("latin1");
  console.log("cse enabled:", cse, "Softmax count in optimized:", (txt.match(/\x22\x07Softmax/g) ?? []).length, "anchors", (txt.match(/recompute/g) ?? []).length);
}
