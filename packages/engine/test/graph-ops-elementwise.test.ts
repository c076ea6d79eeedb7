import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import {
  assertClose,
  at,
  coordsOf,
  erf,
  type Fed,
  randTensor,
  rng,
  runChecked,
  size,
} from "./graph-ops.helpers.ts";

const rand = rng(7);

test("binary arithmetic broadcasts like NumPy; values match a JS broadcast loop", async () => {
  const cases: [number[], number[], number[]][] = [
    [
      [2, 1, 4],
      [3, 1],
      [2, 3, 4],
    ],
    [[5], [2, 3, 5], [2, 3, 5]],
    [[1], [4, 1], [4, 1]],
    [[], [3, 2], [3, 2]],
  ];
  const fns: [
    string,
    (a: op.Operand, b: op.Operand) => ReturnType<typeof op.add>,
    (x: number, y: number) => number,
  ][] = [
    ["add", op.add, (x, y) => x + y],
    ["sub", op.sub, (x, y) => x - y],
    ["mul", op.mul, (x, y) => x * y],
    ["div", op.div, (x, y) => x / y],
  ];
  for (const [sa, sb, expectShape] of cases) {
    const b = new GraphBuilder();
    const a = b.input("a", "float32", sa);
    const c = b.input("c", "float32", sb);
    for (const [name, f] of fns) {
      const y = f(a, c);
      assert.deepEqual(y.shape, expectShape);
      b.output(y, name);
    }
    const fa = randTensor(sa, () => rand());
    const fc = randTensor(sb, () => rand(0.5, 2));
    const out = await runChecked(b, { a: fa, c: fc });
    for (const [name, , ref] of fns) {
      const exp = Array.from({ length: size(expectShape) }, (_, i) => {
        const co = coordsOf(i, expectShape);
        return ref(at(fa.data as Float32Array, sa, co), at(fc.data as Float32Array, sb, co));
      });
      assertClose(out[name].data as Float32Array, exp, 1e-6, `${name} ${sa}|${sb}`);
    }
  }
});

test("unary math and activations match JS references (Gelu exact and tanh)", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [3, 7]);
  const pos = b.input("pos", "float32", [3, 7]);
  const refs: [string, ReturnType<typeof op.add>, (v: number, p: number) => number][] = [
    ["neg", op.neg(x), (v) => -v],
    ["abs", op.abs(x), (v) => Math.abs(v)],
    ["sign", op.sign(x), (v) => Math.sign(v)],
    ["sqrt", op.sqrt(pos), (_, p) => Math.sqrt(p)],
    ["exp", op.exp(x), (v) => Math.exp(v)],
    ["log", op.log(pos), (_, p) => Math.log(p)],
    ["tanh", op.tanh(x), (v) => Math.tanh(v)],
    ["sigmoid", op.sigmoid(x), (v) => 1 / (1 + Math.exp(-v))],
    ["erf", op.erf(x), (v) => erf(v)],
    ["relu", op.relu(x), (v) => Math.max(0, v)],
    ["sin", op.sin(x), (v) => Math.sin(v)],
    ["cos", op.cos(x), (v) => Math.cos(v)],
    ["identity", op.identity(x), (v) => v],
    ["gelu", op.gelu(x), (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))],
    [
      "gelu_tanh",
      op.gelu(x, "tanh"),
      (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
    ],
    ["pow2", op.pow(x, 2), (v) => v * v],
    ["powt", op.pow(pos, x), (v, p) => p ** v],
  ];
  for (const [name, v] of refs) {
    assert.deepEqual(v.shape, [3, 7]);
    b.output(v, name);
  }
  const fx = randTensor([3, 7], () => rand(-3, 3));
  const fp = randTensor([3, 7], () => rand(0.1, 4));
  const out = await runChecked(b, { x: fx, pos: fp });
  for (const [name, , ref] of refs) {
    const exp = Array.from(fx.data as Float32Array, (v, i) => ref(v, (fp.data as Float32Array)[i]));
    assertClose(out[name].data as Float32Array, exp, 2e-6, name);
  }
});

test("comparisons give bool, Where/Max/Min broadcast three ways, Cast converts", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 3]);
  const y = b.input("y", "float32", [3]);
  const z = b.input("z", "float32", [2, 1]);
  const lt = op.less(x, y);
  assert.equal(lt.dtype, "bool");
  b.output(lt, "lt");
  b.output(op.greater(x, y), "gt");
  b.output(op.equal(x, x), "eq");
  b.output(op.where(lt, x, z), "where");
  b.output(op.where(lt, 7, y), "where7");
  b.output(op.max(x, y, z), "max");
  b.output(op.min(x, y, z), "min");
  const ci = op.cast(op.mul(x, 10), "int32");
  assert.equal(ci.dtype, "int32");
  b.output(ci, "cast");
  b.output(op.cast(x, "float16"), "half");
  const fx: Fed = { dtype: "float32", shape: [2, 3], data: Float32Array.from([1, -2, 3, 0.5, 5, -6]) };
  const fy: Fed = { dtype: "float32", shape: [3], data: Float32Array.from([0, 0, 4]) };
  const fz: Fed = { dtype: "float32", shape: [2, 1], data: Float32Array.from([9, -9]) };
  const out = await runChecked(b, { x: fx, y: fy, z: fz });
  assert.deepEqual([...(out.lt.data as Uint8Array)].map(Boolean), [false, true, true, false, false, true]);
  assert.deepEqual([...(out.gt.data as Uint8Array)].map(Boolean), [true, false, false, true, true, false]);
  assert.ok([...(out.eq.data as Uint8Array)].every(Boolean));
  assert.deepEqual([...(out.where.data as Float32Array)], [9, -2, 3, -9, -9, -6]);
  assert.deepEqual([...(out.where7.data as Float32Array)], [0, 7, 7, 0, 0, 7]);
  assert.deepEqual([...(out.max.data as Float32Array)], [9, 9, 9, 0.5, 5, 4]);
  assert.deepEqual([...(out.min.data as Float32Array)], [0, -2, 3, -9, -9, -9]);
  assert.deepEqual([...(out.cast.data as Int32Array)], [10, -20, 30, 5, 50, -60]);
  assert.deepEqual([...(out.half.data as Uint16Array)].slice(0, 2), [0x3c00, 0xc000]);
});

test("numbers mixed with float16 values become float16 constants", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float16", [2]);
  const y = op.mul(x, 0.5);
  assert.equal(y.dtype, "float16");
  b.output(y, "y");
  const out = await runChecked(b, {
    x: { dtype: "float16", shape: [2], data: Uint16Array.from([0x4000, 0xc400]) as never },
  });
  assert.deepEqual([...(out.y.data as Uint16Array)], [0x3c00, 0xc000]); // 2*0.5 = 1, -4*0.5 = -2
});
