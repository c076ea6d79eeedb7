/**
 * Session creation time against graph size, at graph optimization levels "disabled" and "all".
 * Graph: a residual stack of small blocks (MatMul 16x16, Add, Tanh, Mul) so node count scales linearly and
 * ORT's optimizers have real work (fusions, constant sharing); the 1 KiB weights go to the sidecar .data file.
 * Prints graph build, proto encode, model-file write and ORT session-creation times.
 *
 *   npx tsx packages/engine/bench/session-creation.ts [sizes...]   (default 1000 5000 20000)
 */
import { GraphBuilder } from "../src/graph/builder.ts";
import { add, matmul, mul, tanh } from "../src/graph/ops/index.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { writeModelFile } from "../src/onnx/model-file.ts";
import { Session } from "../src/runtime/session.ts";

function buildGraph(targetNodes: number) {
  const b = new GraphBuilder("bench");
  const x = b.input("x", "float32", [4, 16]);
  let h = x;
  let i = 0;
  while (b.nodes.length + 4 <= targetNodes) {
    const w = b.initializer(`w${i}`, {
      dtype: "float32",
      shape: [16, 16],
      data: Float32Array.from({ length: 256 }, (_, k) => Math.sin(k + i) * 0.1),
    });
    h = b.scope(`blocks.${i}`, () => add(h, mul(tanh(matmul(h, w)), 0.5)));
    i++;
  }
  b.output(h, "y");
  return b.build();
}

const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
const rows: string[] = [];
for (const n of sizes.length > 0 ? sizes : [1000, 5000, 20000]) {
  let t = performance.now();
  const g = buildGraph(n);
  const buildMs = performance.now() - t;
  t = performance.now();
  const bytes = encodeModel(g).byteLength;
  const encodeMs = performance.now() - t;
  for (const level of ["disabled", "all"] as const) {
    t = performance.now();
    const file = await writeModelFile(g);
    const writeMs = performance.now() - t;
    t = performance.now();
    const s = await Session.create(file.modelPath, { graphOptimizationLevel: level, intraOpThreads: 2 });
    const createMs = performance.now() - t;
    await file.cleanup();
    await s.release();
    rows.push(
      `${String(g.nodes.length).padStart(6)} nodes  ${level.padEnd(8)}  build ${buildMs.toFixed(0).padStart(5)} ms  ` +
        `encode ${encodeMs.toFixed(0).padStart(4)} ms (${(bytes / 1024).toFixed(0)} KiB)  ` +
        `write .onnx+.data ${writeMs.toFixed(0).padStart(4)} ms  ORT session ${createMs.toFixed(0).padStart(6)} ms`,
    );
    console.log(rows[rows.length - 1]);
  }
}
