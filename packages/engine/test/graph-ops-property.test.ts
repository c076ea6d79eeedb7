/**
 * Property tests: for random shapes, the builder accepts exactly the graphs ORT accepts, and its inferred shapes
 * equal ORT's. Rejected cases are rebuilt with the low-level addNode (no inference) to confirm ORT refuses them.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import ort from "onnxruntime-node";
import { GraphBuildError, GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { add, matmul } from "../src/graph/ops/index.ts";
import { encodeModel } from "../src/onnx/encode.ts";

const dim = fc.constantFrom(1, 1, 2, 3);
const shape = (maxRank: number) => fc.array(dim, { minLength: 0, maxLength: maxRank });

/** Runs a two-input graph on ORT with zero inputs; returns output dims or undefined when ORT refuses it. */
async function ortDims(
  op: string,
  a: number[],
  b: number[],
  build?: (x: Value, y: Value) => Value,
): Promise<number[] | undefined> {
  const g = new GraphBuilder();
  const x = g.input("a", "float32", a);
  const y = g.input("b", "float32", b);
  const out = build ? build(x, y) : g.addNode(op, [x, y], {}, [{ dtype: "float32", shape: [] }])[0];
  g.output(out, "y");
  try {
    const s = await ort.InferenceSession.create(encodeModel(g.build()), {
      graphOptimizationLevel: "disabled",
    });
    const feeds = {
      a: new ort.Tensor("float32", new Float32Array(a.reduce((p, d) => p * d, 1)), a),
      b: new ort.Tensor("float32", new Float32Array(b.reduce((p, d) => p * d, 1)), b),
    };
    const r = await s.run(feeds);
    await s.release();
    return [...r.y.dims];
  } catch {
    return undefined;
  }
}

function inferred(
  fn: (g: GraphBuilder, x: Value, y: Value) => Value,
  a: number[],
  b: number[],
): number[] | "error" {
  const g = new GraphBuilder();
  try {
    return [...fn(g, g.input("a", "float32", a), g.input("b", "float32", b)).shape];
  } catch (e) {
    assert.ok(e instanceof GraphBuildError, String(e));
    return "error";
  }
}

test("Add: builder broadcasting agrees with ORT on random shapes (accept/reject and result shape)", async () => {
  const seen = { accepted: 0, rejected: 0 };
  await fc.assert(
    fc.asyncProperty(shape(4), shape(4), async (a, b) => {
      const mine = inferred((_, x, y) => add(x, y), a, b);
      seen[mine === "error" ? "rejected" : "accepted"]++;
      if (mine === "error") {
        assert.equal(await ortDims("Add", a, b), undefined, `ORT accepts Add ${a} + ${b}`);
      } else {
        assert.deepEqual(await ortDims("Add", a, b, (x, y) => add(x, y)), mine);
      }
    }),
    { numRuns: 40, seed: 1 },
  );
  assert.ok(seen.accepted >= 3 && seen.rejected >= 3, JSON.stringify(seen));
});

test("MatMul: builder agrees with ORT on random ranks 1-4 (1-D promotion, batch broadcast, K mismatch)", async () => {
  const seen = { accepted: 0, rejected: 0 };
  await fc.assert(
    fc.asyncProperty(
      fc.array(dim, { minLength: 1, maxLength: 4 }),
      fc.array(dim, { minLength: 1, maxLength: 4 }),
      async (a, b) => {
        const mine = inferred((_, x, y) => matmul(x, y), a, b);
        seen[mine === "error" ? "rejected" : "accepted"]++;
        if (mine === "error") {
          assert.equal(await ortDims("MatMul", a, b), undefined, `ORT accepts MatMul ${a} x ${b}`);
        } else {
          assert.deepEqual(await ortDims("MatMul", a, b, (x, y) => matmul(x, y)), mine);
        }
      },
    ),
    { numRuns: 40, seed: 2 },
  );
  assert.ok(seen.accepted >= 3 && seen.rejected >= 3, JSON.stringify(seen));
});
