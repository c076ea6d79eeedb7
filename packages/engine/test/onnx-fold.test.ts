import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { cast, matmul, mul, reshape } from "../src/graph/ops/index.ts";
import { foldedWeightNodes } from "../src/onnx/fold-check.ts";
import { Session } from "../src/runtime/session.ts";

const W = () => ({ dtype: "float32" as const, shape: [256, 256], data: new Float32Array(65536).fill(0.25) });

function graphWith(useWeight: (w: Value) => Value) {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [1, 256]);
  const w = b.scope("proj", () => b.initializer("weight", W()));
  b.output(
    matmul(
      x,
      b.scope("proj", () => useWeight(w)),
    ),
    "y",
  );
  return b.build();
}

test("ops computed from weights only are reported, and ORT really folds them into in-memory copies", async () => {
  const dir = await mkdtemp(join(tmpdir(), "engine-fold-"));
  try {
    const cases: [string, (w: Value) => Value, number][] = [
      ["direct", (w) => w, 0],
      ["reshape", (w) => reshape(reshape(w, [-1]), [256, 256]), 2],
      ["cast", (w) => cast(cast(w, "float16"), "float32"), 2],
      ["scale", (w) => mul(w, 2), 1],
    ];
    for (const [name, use, expected] of cases) {
      const g = graphWith(use);
      const found = foldedWeightNodes(g);
      assert.equal(found.length, expected, name);
      const messages: string[] = [];
      const optimized = join(dir, `${name}.onnx`);
      const s = await Session.create(g, {
        optimizedModelFilePath: optimized,
        onMessage: (m) => messages.push(m),
      });
      await s.release();
      const size = (await stat(optimized)).size;
      if (expected === 0) {
        assert.deepEqual(messages, []);
        assert.ok(size < 4096, `${name}: weight stays external (${size} bytes)`);
      } else {
        assert.equal(messages.length, 1);
        assert.match(messages[0], /constant-folded .*proj\/\w+_\d+ \(\w+, 0\.25 MiB weight\)/);
        assert.ok(size > 65536 * 4 * 0.9, `${name}: ORT stored a folded copy (${size} bytes)`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
