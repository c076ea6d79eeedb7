import ort from "onnxruntime-node";
import { readFileSync } from "node:fs";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { convNet, mseLoss, initConvNet } from "../test/support/nets.ts";
const s = { batch: 1, inChannels: 4, channels: 8, size: 8, depth: 3 };
const xShape = [s.batch, s.inChannels, s.size, s.size];
const b = new GraphBuilder("bench");
const params: Value[] = [];
const y = convNet(b, b.input("x", "float32", xShape), s, (name, shape) => { const v = b.input(`state_in.${name}`, "float32", shape); params.push(v); return v; }, true);
const loss = mseLoss(y, b.input("target", "float32", xShape));
const graph = appendTrainStep(b, { loss, params, optimizer: { kind: "adamw" } });
const g = b.build();
const sess = await ort.InferenceSession.create(encodeModel(g), { enableProfiling: true, profileFilePrefix: "/tmp/prof", graphOptimizationLevel: "basic",
  extra: { optimization: { disable_specified_optimizers: "CommonSubexpressionElimination" } } });
const init = initConvNet(s, 1);
const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor("float32", new Float32Array(64*4), xShape), target: new ort.Tensor("float32", new Float32Array(64*4), xShape), lr: new ort.Tensor("float32", Float32Array.of(1e-3), []) };
for (const st of graph.state) feeds[`state_in.${st.name}`] = new ort.Tensor("float32", st.init === "param" ? init[st.name] : new Float32Array(st.shape.reduce((a, c) => a * c, 1)), st.shape);
await sess.run(feeds);
const file = sess.endProfiling();
const events = JSON.parse(readFileSync(file, "utf8")) as { name: string; cat: string; ts: number }[];
const nodes = events.filter(e => e.cat === "Node" && e.name.endsWith("_kernel_time")).map(e => e.name.replace("_kernel_time", ""));
let last = "";
const compact: string[] = [];
for (const n of nodes) {
  const tag = n.includes("recompute") ? "R:" + n.split("/")[0].replace("grad.recompute.", "") : n.startsWith("grad/") ? "B" : n.startsWith("optimizer") ? "O" : "F";
  if (tag !== last) compact.push(tag + "(" + n.split("/").pop() + ")");
  last = tag;
}
console.log(compact.join(" -> "));
