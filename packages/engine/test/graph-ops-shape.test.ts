import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { at, coordsOf, type Fed, runChecked, size } from "./graph-ops.helpers.ts";

/** x[i] = i, so every output element names the input element it came from. */
function iota(shape: number[]): Fed {
  return { dtype: "float32", shape, data: Float32Array.from({ length: size(shape) }, (_, i) => i) };
}
const vals = (t: { data: unknown }) => [...(t.data as Float32Array)];

test("Reshape resolves 0 and -1 at build time; Transpose permutes; Expand, Squeeze, Unsqueeze", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 3, 4]);
  const r = op.reshape(x, [0, -1, 2]);
  assert.deepEqual(r.shape, [2, 6, 2]);
  const t = op.transpose(x, [2, 0, 1]);
  assert.deepEqual(t.shape, [4, 2, 3]);
  const tDefault = op.transpose(x);
  assert.deepEqual(tDefault.shape, [4, 3, 2]);
  const u = op.unsqueeze(x, [0, -1]);
  assert.deepEqual(u.shape, [1, 2, 3, 4, 1]);
  const s = op.squeeze(u);
  assert.deepEqual(s.shape, [2, 3, 4]);
  const s0 = op.squeeze(u, [0]);
  assert.deepEqual(s0.shape, [2, 3, 4, 1]);
  const e = op.expand(op.reshape(x, [2, 1, 12]), [3, 1]);
  assert.deepEqual(e.shape, [2, 3, 12]);
  for (const [n, v] of Object.entries({ r, t, tDefault, u, s, s0, e })) b.output(v, n);
  const out = await runChecked(b, { x: iota([2, 3, 4]) });
  assert.deepEqual(vals(out.r), [...Array(24).keys()]);
  assert.deepEqual(
    vals(out.t),
    Array.from({ length: 24 }, (_, i) => {
      const [k, n, c] = coordsOf(i, [4, 2, 3]);
      return n * 12 + c * 4 + k;
    }),
  );
  assert.deepEqual(vals(out.s), [...Array(24).keys()]);
  assert.deepEqual(
    vals(out.e),
    Array.from({ length: 72 }, (_, i) => {
      const [n, , k] = coordsOf(i, [2, 3, 12]);
      return n * 12 + k;
    }),
  );
});

test("Concat, Split, Slice (negative indices, clamping, negative step), Gather, ConstantOfShape", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [3, 5]);
  const y = b.input("y", "float32", [3, 2]);
  const c = op.concat([x, y], -1);
  assert.deepEqual(c.shape, [3, 7]);
  const [p1, p2, p3] = op.split(c, 1, [1, 4, 2]);
  assert.deepEqual(
    [p1.shape, p2.shape, p3.shape],
    [
      [3, 1],
      [3, 4],
      [3, 2],
    ],
  );
  const sl = op.slice(x, [1, -4], [100, -1], [0, 1]);
  assert.deepEqual(sl.shape, [2, 3]);
  const rev = op.slice(x, [-1, Number.POSITIVE_INFINITY], [Number.NEGATIVE_INFINITY, 0], [0, 1], [-1, -2]);
  assert.deepEqual(rev.shape, [3, 2]);
  const step = op.slice(x, [0], [5], [1], [2]);
  assert.deepEqual(step.shape, [3, 3]);
  const idx = b.input("idx", "int64", [2, 2]);
  const g = op.gather(x, idx, 1);
  assert.deepEqual(g.shape, [3, 2, 2]);
  const gRows = op.gather(x, [2, -3], 0);
  assert.deepEqual(gRows.shape, [2, 5]);
  const k = op.constantOfShape(x, [2, 2], 3.5);
  for (const [n, v] of Object.entries({ c, p1, p2, p3, sl, rev, step, g, gRows, k })) b.output(v, n);
  const fx = iota([3, 5]);
  const fy: Fed = {
    dtype: "float32",
    shape: [3, 2],
    data: Float32Array.from([100, 101, 102, 103, 104, 105]),
  };
  const fi: Fed = { dtype: "int64", shape: [2, 2], data: BigInt64Array.from([4n, 0n, -1n, 2n]) };
  const out = await runChecked(b, { x: fx, y: fy, idx: fi });
  assert.deepEqual(vals(out.c).slice(0, 7), [0, 1, 2, 3, 4, 100, 101]);
  assert.deepEqual(vals(out.p1), [0, 5, 10]);
  assert.deepEqual(vals(out.p3), [100, 101, 102, 103, 104, 105]);
  assert.deepEqual(vals(out.sl), [6, 7, 8, 11, 12, 13]);
  assert.deepEqual(vals(out.rev), [14, 12, 9, 7, 4, 2]);
  assert.deepEqual(vals(out.step), [0, 2, 4, 5, 7, 9, 10, 12, 14]);
  const idxs = [4, 0, 4, 2]; // -1 wraps to 4
  assert.deepEqual(
    vals(out.g),
    Array.from({ length: 12 }, (_, i) => {
      const [r, a, bb] = coordsOf(i, [3, 2, 2]);
      return at(fx.data as Float32Array, [3, 5], [r, idxs[a * 2 + bb]]);
    }),
  );
  assert.deepEqual(vals(out.gRows), [10, 11, 12, 13, 14, 0, 1, 2, 3, 4]);
  assert.deepEqual(vals(out.k), [3.5, 3.5, 3.5, 3.5]);
});
