import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { InlineTensor } from "../src/graph/ir.ts";
import * as op from "../src/graph/ops/index.ts";
import {
  assertClose,
  at,
  coordsOf,
  type Fed,
  randTensor,
  rng,
  runChecked,
  size,
  strides,
} from "./graph-ops.helpers.ts";

const rand = rng(11);
const f32 = (f: Fed) => f.data as Float32Array;

/** NumPy matmul reference (1-D promotion, broadcast batch dims). */
function refMatmul(a: Fed, b: Fed, outShape: number[]): number[] {
  const as = a.shape.length === 1 ? [1, a.shape[0]] : a.shape;
  const bs = b.shape.length === 1 ? [b.shape[0], 1] : b.shape;
  const k = as[as.length - 1];
  const full = [...outShape];
  if (a.shape.length === 1) full.splice(full.length - (b.shape.length === 1 ? 0 : 1), 0, 1);
  if (b.shape.length === 1) full.push(1);
  return Array.from({ length: size(full) }, (_, i) => {
    const co = coordsOf(i, full);
    const r = co[co.length - 2];
    const c = co[co.length - 1];
    let s = 0;
    for (let j = 0; j < k; j++) {
      s += at(f32(a), as, [...co.slice(0, -2), r, j]) * at(f32(b), bs, [...co.slice(0, -2), j, c]);
    }
    return s;
  });
}

test("MatMul: plain, batched, broadcast batch dims and 1-D operands match NumPy semantics", async () => {
  const cases: [number[], number[], number[]][] = [
    [
      [3, 4],
      [4, 5],
      [3, 5],
    ],
    [
      [2, 3, 4],
      [4, 5],
      [2, 3, 5],
    ],
    [
      [2, 1, 3, 4],
      [5, 4, 2],
      [2, 5, 3, 2],
    ],
    [[4], [4, 5], [5]],
    [[3, 4], [4], [3]],
    [[4], [4], []],
  ];
  for (const [sa, sb, so] of cases) {
    const b = new GraphBuilder();
    const y = op.matmul(b.input("a", "float32", sa), b.input("b", "float32", sb));
    assert.deepEqual(y.shape, so, `${sa} x ${sb}`);
    b.output(y, "y");
    const fa = randTensor(sa, () => rand());
    const fb = randTensor(sb, () => rand());
    const out = await runChecked(b, { a: fa, b: fb });
    assertClose(out.y.data as Float32Array, refMatmul(fa, fb, so), 1e-5, `matmul ${sa}x${sb}`);
  }
});

test("Gemm with transA/transB, alpha/beta and a broadcast C", async () => {
  const b = new GraphBuilder();
  const a = b.input("a", "float32", [4, 3]); // transA: op(A) = [3, 4]
  const w = b.initializer("w", {
    dtype: "float32",
    shape: [5, 4],
    data: Float32Array.from({ length: 20 }, () => rand()),
  });
  const c = b.input("c", "float32", [5]);
  const y = op.gemm(a, w, c, { transA: true, transB: true, alpha: 0.5, beta: 2 });
  assert.deepEqual(y.shape, [3, 5]);
  b.output(y, "y");
  const fa = randTensor([4, 3], () => rand());
  const fc = randTensor([5], () => rand());
  const out = await runChecked(b, { a: fa, c: fc });
  const wd = (w.tensor as InlineTensor).data as Float32Array;
  const exp: number[] = [];
  for (let m = 0; m < 3; m++) {
    for (let n = 0; n < 5; n++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += f32(fa)[k * 3 + m] * wd[n * 4 + k];
      exp.push(0.5 * s + 2 * f32(fc)[n]);
    }
  }
  assertClose(out.y.data as Float32Array, exp, 1e-5, "gemm");
});

/** Direct 2-D convolution reference (NCHW, OIHW, pads [t, l, b, r]). */
function refConv(
  x: Fed,
  w: Fed,
  bias: Fed | undefined,
  s: number[],
  p: number[],
  d: number[],
  g: number,
  outShape: number[],
) {
  const [, C, H, W] = x.shape;
  const [, Cg, KH, KW] = w.shape;
  const M = outShape[1];
  const xs = strides(x.shape);
  const ws = strides(w.shape);
  return Array.from({ length: size(outShape) }, (_, i) => {
    const [n, m, oh, ow] = coordsOf(i, outShape);
    const grp = Math.floor(m / (M / g));
    let acc = bias ? f32(bias)[m] : 0;
    for (let cg = 0; cg < Cg; cg++) {
      const c = grp * Cg + cg;
      if (c >= C) continue;
      for (let kh = 0; kh < KH; kh++) {
        for (let kw = 0; kw < KW; kw++) {
          const ih = oh * s[0] - p[0] + kh * d[0];
          const iw = ow * s[1] - p[1] + kw * d[1];
          if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
          acc +=
            f32(x)[n * xs[0] + c * xs[1] + ih * xs[2] + iw] *
            f32(w)[m * ws[0] + cg * ws[1] + kh * ws[2] + kw];
        }
      }
    }
    return acc;
  });
}

test("Conv: pads, strides, dilations and groups (shapes and values)", async () => {
  const cases = [
    { x: [2, 4, 7, 6], w: [6, 2, 3, 3], s: [2, 2], p: [1, 1, 1, 1], d: [1, 1], g: 2, out: [2, 6, 4, 3] },
    { x: [1, 3, 9, 8], w: [4, 3, 3, 2], s: [1, 2], p: [0, 1, 2, 0], d: [2, 1], g: 1, out: [1, 4, 7, 4] },
    { x: [1, 2, 5, 5], w: [3, 2, 1, 1], s: [1, 1], p: [0, 0, 0, 0], d: [1, 1], g: 1, out: [1, 3, 5, 5] },
  ];
  for (const cs of cases) {
    const b = new GraphBuilder();
    const y = op.conv(
      b.input("x", "float32", cs.x),
      b.input("w", "float32", cs.w),
      b.input("bias", "float32", [cs.w[0]]),
      {
        strides: cs.s,
        pads: cs.p,
        dilations: cs.d,
        group: cs.g,
      },
    );
    assert.deepEqual(y.shape, cs.out);
    b.output(y, "y");
    const fx = randTensor(cs.x, () => rand());
    const fw = randTensor(cs.w, () => rand());
    const fb = randTensor([cs.w[0]], () => rand());
    const out = await runChecked(b, { x: fx, w: fw, bias: fb });
    assertClose(
      out.y.data as Float32Array,
      refConv(fx, fw, fb, cs.s, cs.p, cs.d, cs.g, cs.out),
      1e-5,
      "conv",
    );
  }
});

test("ConvTranspose: stride 2 with output_padding and pads (scatter reference)", async () => {
  const xs = [1, 3, 4, 5];
  const ws = [3, 2, 3, 3];
  const b = new GraphBuilder();
  const y = op.convTranspose(b.input("x", "float32", xs), b.input("w", "float32", ws), undefined, {
    strides: [2, 2],
    pads: [1, 1, 1, 1],
    outputPadding: [1, 1],
  });
  assert.deepEqual(y.shape, [1, 2, 8, 10]);
  b.output(y, "y");
  const fx = randTensor(xs, () => rand());
  const fw = randTensor(ws, () => rand());
  const out = await runChecked(b, { x: fx, w: fw });
  const exp = new Array(size(y.shape)).fill(0);
  const os = strides(y.shape);
  for (let c = 0; c < 3; c++)
    for (let ih = 0; ih < 4; ih++)
      for (let iw = 0; iw < 5; iw++)
        for (let m = 0; m < 2; m++)
          for (let kh = 0; kh < 3; kh++)
            for (let kw = 0; kw < 3; kw++) {
              const oh = ih * 2 - 1 + kh;
              const ow = iw * 2 - 1 + kw;
              if (oh < 0 || ow < 0 || oh >= 8 || ow >= 10) continue;
              exp[m * os[1] + oh * os[2] + ow] +=
                f32(fx)[c * 20 + ih * 5 + iw] * f32(fw)[c * 18 + m * 9 + kh * 3 + kw];
            }
  assertClose(out.y.data as Float32Array, exp, 1e-5, "convTranspose");
});

test("Resize nearest by scales: out = in[floor(i / scale)] (PyTorch nearest), incl. a non-integer scale", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [1, 2, 3, 4]);
  const y2 = op.resizeNearest(x, [1, 1, 2, 2]);
  const y15 = op.resizeNearest(x, [1, 1, 1.5, 2.5]);
  assert.deepEqual(y2.shape, [1, 2, 6, 8]);
  assert.deepEqual(y15.shape, [1, 2, 4, 10]);
  b.output(y2, "y2");
  b.output(y15, "y15");
  const fx = randTensor([1, 2, 3, 4], () => rand());
  const out = await runChecked(b, { x: fx });
  for (const [name, sc, shape] of [
    ["y2", [2, 2], y2.shape],
    ["y15", [1.5, 2.5], y15.shape],
  ] as const) {
    const exp = Array.from({ length: size(shape) }, (_, i) => {
      const [n, c, h, w] = coordsOf(i, shape);
      return at(f32(fx), fx.shape, [n, c, Math.floor(h / sc[0]), Math.floor(w / sc[1])]);
    });
    assertClose(out[name].data as Float32Array, exp, 0, name);
  }
});

test("Softmax, LayerNormalization (with stats), InstanceNormalization and reductions match JS", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 3, 4]);
  const g = b.input("g", "float32", [4]);
  const be = b.input("be", "float32", [4]);
  b.output(op.softmax(x, 1), "sm");
  const [ln, mean, inv] = op.layerNormalization(x, g, be, { epsilon: 1e-5, withStats: true });
  assert.deepEqual(mean.shape, [2, 3, 1]);
  b.output(ln, "ln");
  b.output(mean, "mean");
  b.output(inv, "inv");
  const sc = b.input("sc", "float32", [3]);
  b.output(op.instanceNormalization(x, sc, op.mul(sc, 0.5), 1e-5), "in");
  b.output(op.reduceMean(x, [-1], false), "rmean");
  b.output(op.reduceSum(x, [0, 2], true), "rsum");
  b.output(op.reduceMax(x), "rmax");
  const none = op.reduceSum(x, [], true);
  assert.deepEqual(none.shape, [2, 3, 4]);
  b.output(none, "rnone");
  const fx = randTensor([2, 3, 4], () => rand(-2, 2));
  const fg = randTensor([4], () => rand());
  const fbe = randTensor([4], () => rand());
  const fsc = randTensor([3], () => rand());
  const out = await runChecked(b, { x: fx, g: fg, be: fbe, sc: fsc });
  const X = (n: number, c: number, k: number) => f32(fx)[n * 12 + c * 4 + k];
  const sm: number[] = [];
  const lnE: number[] = [];
  const inE: number[] = [];
  for (let n = 0; n < 2; n++)
    for (let c = 0; c < 3; c++)
      for (let k = 0; k < 4; k++) {
        let z = 0;
        for (let cc = 0; cc < 3; cc++) z += Math.exp(X(n, cc, k));
        sm.push(Math.exp(X(n, c, k)) / z);
        const row = [0, 1, 2, 3].map((kk) => X(n, c, kk));
        const mu = row.reduce((a, v) => a + v, 0) / 4;
        const vr = row.reduce((a, v) => a + (v - mu) ** 2, 0) / 4;
        lnE.push(((X(n, c, k) - mu) / Math.sqrt(vr + 1e-5)) * f32(fg)[k] + f32(fbe)[k]);
        inE.push(((X(n, c, k) - mu) / Math.sqrt(vr + 1e-5)) * f32(fsc)[c] + 0.5 * f32(fsc)[c]);
      }
  assertClose(out.sm.data as Float32Array, sm, 1e-5, "softmax");
  assertClose(out.ln.data as Float32Array, lnE, 1e-4, "layernorm");
  assertClose(out.in.data as Float32Array, inE, 1e-4, "instancenorm");
  const means = [0, 1, 2, 3, 4, 5].map((r) => [0, 1, 2, 3].reduce((a, k) => a + f32(fx)[r * 4 + k], 0) / 4);
  assertClose(out.mean.data as Float32Array, means, 1e-5, "ln mean");
  assertClose(out.rmean.data as Float32Array, means, 1e-5, "reduceMean");
  assert.deepEqual([...out.rsum.dims], [1, 3, 1]);
  const sums = [0, 1, 2].map((c) =>
    [0, 1].reduce((a, n) => a + [0, 1, 2, 3].reduce((s, k) => s + X(n, c, k), 0), 0),
  );
  assertClose(out.rsum.data as Float32Array, sums, 1e-5, "reduceSum");
  assertClose(out.rmax.data as Float32Array, [Math.max(...f32(fx))], 0, "reduceMax");
  assertClose(out.rnone.data as Float32Array, f32(fx), 0, "reduceSum over no axes");
});
