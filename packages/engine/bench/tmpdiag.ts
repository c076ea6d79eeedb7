import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { checkpointSegments } from "../src/autodiff/marks.ts";
import { convNet, mseLoss } from "../test/support/nets.ts";
const s = { batch: 4, inChannels: 4, channels: 64, size: 64, depth: 3 };
const xShape = [s.batch, s.inChannels, s.size, s.size];
const b = new GraphBuilder("bench");
const params: Value[] = [];
const y = convNet(b, b.input("x", "float32", xShape), s, (name, shape) => { const v = b.input(`state_in.${name}`, "float32", shape); params.push(v); return v; }, true);
const loss = mseLoss(y, b.input("target", "float32", xShape));
appendTrainStep(b, { loss, params, optimizer: { kind: "adamw" } });
const g = b.build();
const segs = checkpointSegments(b);
const segNodes = new Set(segs.flatMap(s => s.nodes));
const interior = new Map<Value, string>();
for (const sg of segs) for (const n of sg.nodes) for (const o of n.outputs) interior.set(o, sg.label);
for (const n of g.nodes) {
  if (segNodes.has(n)) continue;
  for (const i of n.inputs) if (i && interior.has(i)) console.log("consumer outside segment:", n.op, n.name, "<-", i.name, i.shape.join("x"));
}
