/** moduleDelta of every kind against independent, deliberately naive index-formula computations. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { moduleDelta, truncateRank } from "../src/adapters/delta.ts";
import type { AdapterModule, Tensor } from "../src/adapters/types.ts";

/** Deterministic pseudo-random tensors (LCG), so failures reproduce. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}
function rand(shape: number[], r: () => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, r) };
}
/** Element of a row-major tensor by multi-index. */
function at(t: Tensor, ...idx: number[]): number {
  let off = 0;
  for (let d = 0; d < idx.length; d++) off = off * t.shape[d] + idx[d];
  return t.data[off];
}
function assertClose(actual: Tensor, expected: number[], shape: number[], tol = 1e-5) {
  assert.deepEqual(actual.shape, shape);
  assert.equal(actual.data.length, expected.length);
  const scale = Math.max(1e-6, ...expected.map(Math.abs));
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual.data[i] - expected[i]) <= tol * scale,
      `element ${i}: ${actual.data[i]} vs ${expected[i]}`,
    );
  }
}
const mod = (
  kind: AdapterModule["kind"],
  tensors: Record<string, Tensor>,
  extra: Partial<AdapterModule> = {},
): AdapterModule => ({
  component: "unet",
  path: "x",
  kind,
  layer: "linear",
  tensors,
  ...extra,
});

test("lora linear: up @ down x alpha/rank x multiplier equals a naive triple loop", () => {
  const r = rng(1);
  const [out, rank, inn] = [7, 3, 5];
  const down = rand([rank, inn], r);
  const up = rand([out, rank], r);
  const got = moduleDelta(mod("lora", { down, up }, { alpha: 2 }), 0.7);
  const want: number[] = [];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += at(up, o, k) * at(down, k, i);
      want.push(s * (2 / rank) * 0.7);
    }
  assertClose(got, want, [out, inn]);
  // No alpha: scale 1.
  const plain = moduleDelta(mod("lora", { down, up }));
  assert.ok(Math.abs(plain.data[0] - want[0] / ((2 / rank) * 0.7)) < 1e-5);
});

test("lora conv: k x k down, 1 x 1 up; and CP with lora_mid", () => {
  const r = rng(2);
  const [out, rank, inn, k] = [4, 2, 3, 3];
  const down = rand([rank, inn, k, k], r);
  const up = rand([out, rank, 1, 1], r);
  const got = moduleDelta(mod("lora", { down, up }, { alpha: 1, layer: "conv" }));
  const want: number[] = [];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++)
      for (let y = 0; y < k; y++)
        for (let x = 0; x < k; x++) {
          let s = 0;
          for (let q = 0; q < rank; q++) s += at(up, o, q, 0, 0) * at(down, q, i, y, x);
          want.push(s / rank);
        }
  assertClose(got, want, [out, inn, k, k]);

  const down1 = rand([rank, inn, 1, 1], r);
  const mid = rand([rank, rank, k, k], r);
  const cp = moduleDelta(mod("lora", { down: down1, up, mid }, { alpha: 4, layer: "conv" }), 0.5);
  const wantCp: number[] = [];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++)
      for (let y = 0; y < k; y++)
        for (let x = 0; x < k; x++) {
          let s = 0;
          for (let a = 0; a < rank; a++)
            for (let b = 0; b < rank; b++)
              s += at(up, o, a, 0, 0) * at(mid, a, b, y, x) * at(down1, b, i, 0, 0);
          wantCp.push(s * (4 / rank) * 0.5);
        }
  assertClose(cp, wantCp, [out, inn, k, k]);
});

test("loha: Hadamard of two products, scale alpha / rows of w1_b; conv target shape", () => {
  const r = rng(3);
  const [out, rank, inn] = [6, 2, 4];
  const t = {
    hada_w1_a: rand([out, rank], r),
    hada_w1_b: rand([rank, inn], r),
    hada_w2_a: rand([out, rank], r),
    hada_w2_b: rand([rank, inn], r),
  };
  const got = moduleDelta(mod("loha", t, { alpha: 1 }), 2);
  const want: number[] = [];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) {
      let a = 0;
      let b = 0;
      for (let k = 0; k < rank; k++) {
        a += at(t.hada_w1_a, o, k) * at(t.hada_w1_b, k, i);
        b += at(t.hada_w2_a, o, k) * at(t.hada_w2_b, k, i);
      }
      want.push(a * b * (1 / rank) * 2);
    }
  assertClose(got, want, [out, inn]);
  const asConv = moduleDelta(mod("loha", t, { alpha: 1, layer: "conv", targetShape: [out, 1, 2, 2] }), 2);
  assertClose(asConv, want, [out, 1, 2, 2]);
});

test("loha with Tucker cores hada_t1/t2", () => {
  const r = rng(4);
  const [out, rank, inn, k] = [3, 2, 4, 3];
  const t = {
    hada_w1_a: rand([rank, out], r),
    hada_w1_b: rand([rank, inn], r),
    hada_w2_a: rand([rank, out], r),
    hada_w2_b: rand([rank, inn], r),
    hada_t1: rand([rank, rank, k, k], r),
    hada_t2: rand([rank, rank, k, k], r),
  };
  const got = moduleDelta(mod("loha", t, { alpha: 3, layer: "conv" }));
  const factor = (ta: Tensor, a: Tensor, b: Tensor, o: number, i: number, y: number, x: number) => {
    let s = 0;
    for (let p = 0; p < rank; p++)
      for (let q = 0; q < rank; q++) s += at(ta, p, q, y, x) * at(a, p, o) * at(b, q, i);
    return s;
  };
  const want: number[] = [];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++)
      for (let y = 0; y < k; y++)
        for (let x = 0; x < k; x++)
          want.push(
            factor(t.hada_t1, t.hada_w1_a, t.hada_w1_b, o, i, y, x) *
              factor(t.hada_t2, t.hada_w2_a, t.hada_w2_b, o, i, y, x) *
              (3 / rank),
          );
  assertClose(got, want, [out, inn, k, k]);
});

/** Kronecker product by its definition: K[i*p + a, j*q + b] = A[i, j] * B[a, b]. */
function kron(A: number[][], B: number[][]): number[][] {
  const K: number[][] = [];
  for (let i = 0; i < A.length; i++)
    for (let a = 0; a < B.length; a++) {
      const row: number[] = [];
      for (let j = 0; j < A[0].length; j++) for (let b = 0; b < B[0].length; b++) row.push(A[i][j] * B[a][b]);
      K.push(row);
    }
  return K;
}
const rows = (t: Tensor): number[][] => {
  const [m, n] = [t.shape[0], t.data.length / t.shape[0]];
  return Array.from({ length: m }, (_, i) => Array.from(t.data.subarray(i * n, (i + 1) * n)));
};
const mm = (A: number[][], B: number[][]) =>
  A.map((r) => B[0].map((_, j) => r.reduce((s, v, k) => s + v * B[k][j], 0)));

test("lokr: kron(w1, w2_a @ w2_b) x alpha / rank; undecomposed factors ignore alpha", () => {
  const r = rng(5);
  const w1 = rand([2, 3], r);
  const w2a = rand([4, 2], r);
  const w2b = rand([2, 5], r);
  const got = moduleDelta(mod("lokr", { lokr_w1: w1, lokr_w2_a: w2a, lokr_w2_b: w2b }, { alpha: 1 }), 0.5);
  const want = kron(rows(w1), mm(rows(w2a), rows(w2b)))
    .flat()
    .map((v) => v * (1 / 2) * 0.5);
  assertClose(got, want, [8, 15]);

  // Both decomposed with different ranks: A1111 divides by the rows of w2_b.
  const w1a = rand([2, 1], r);
  const w1b = rand([1, 3], r);
  const both = moduleDelta(
    mod("lokr", { lokr_w1_a: w1a, lokr_w1_b: w1b, lokr_w2_a: w2a, lokr_w2_b: w2b }, { alpha: 3 }),
  );
  assertClose(
    both,
    kron(mm(rows(w1a), rows(w1b)), mm(rows(w2a), rows(w2b)))
      .flat()
      .map((v) => v * (3 / 2)),
    [8, 15],
  );

  const w2 = rand([4, 5], r);
  const full = moduleDelta(mod("lokr", { lokr_w1: w1, lokr_w2: w2 }, { alpha: 123 }));
  assertClose(full, kron(rows(w1), rows(w2)).flat(), [8, 15]);
});

test("lokr conv: 4-D w2 gives [o1*o2, i1*i2, k, k]", () => {
  const r = rng(6);
  const w1 = rand([2, 2], r);
  const w2 = rand([3, 2, 3, 3], r);
  const got = moduleDelta(mod("lokr", { lokr_w1: w1, lokr_w2: w2 }, { layer: "conv" }));
  const want: number[] = [];
  for (let o1 = 0; o1 < 2; o1++)
    for (let o2 = 0; o2 < 3; o2++)
      for (let i1 = 0; i1 < 2; i1++)
        for (let i2 = 0; i2 < 2; i2++)
          for (let s = 0; s < 9; s++) want.push(at(w1, o1, i1) * at(w2, o2, i2, Math.floor(s / 3), s % 3));
  assertClose(got, want, [6, 4, 3, 3]);
});

test("full: diff x multiplier, alpha ignored", () => {
  const diff = rand([3, 4], rng(7));
  const got = moduleDelta(mod("full", { diff }, { alpha: 9 }), -1.5);
  assertClose(
    got,
    Array.from(diff.data, (v) => v * -1.5),
    [3, 4],
  );
});

test("dora_scale: A1111 decomposition per input column, then scale x multiplier; needs the base weight", () => {
  const r = rng(8);
  const [out, rank, inn] = [4, 2, 3];
  const down = rand([rank, inn], r);
  const up = rand([out, rank], r);
  const W = rand([out, inn], r);
  const dora = { shape: [1, inn], data: Float32Array.from([0.9, 1.1, 1.3]) };
  const m = mod("lora", { down, up }, { alpha: 1, doraScale: dora });
  assert.throws(() => moduleDelta(m), { name: "AdapterError", code: "NEEDS_BASE_WEIGHT" });
  const got = moduleDelta(m, 0.8, W);
  const merged = (o: number, i: number) => {
    let s = 0;
    for (let k = 0; k < rank; k++) s += at(up, o, k) * at(down, k, i);
    return at(W, o, i) + s;
  };
  const want: number[] = [];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) {
      let n = 0;
      for (let oo = 0; oo < out; oo++) n += merged(oo, i) ** 2;
      want.push((dora.data[i] * merged(o, i)) / Math.sqrt(n) - at(W, o, i));
    }
  assertClose(
    got,
    want.map((v) => v * (1 / rank) * 0.8),
    [out, inn],
  );
});

test("dyn keeps the first ranks and the full-rank scale (A1111 semantics)", () => {
  const r = rng(9);
  const [out, rank, inn, dyn] = [5, 4, 3, 2];
  const down = rand([rank, inn], r);
  const up = rand([out, rank], r);
  for (const alpha of [8, undefined]) {
    const extra = alpha === undefined ? {} : { alpha };
    const got = moduleDelta(truncateRank(mod("lora", { down, up }, extra), dyn), 0.5);
    const want: number[] = [];
    for (let o = 0; o < out; o++)
      for (let i = 0; i < inn; i++) {
        let s = 0;
        for (let k = 0; k < dyn; k++) s += at(up, o, k) * at(down, k, i);
        want.push(s * (alpha === undefined ? 1 : alpha / rank) * 0.5);
      }
    assertClose(got, want, [out, inn]);
  }
  const conv = truncateRank(
    mod("lora", { down: rand([rank, inn, 3, 3], r), up: rand([out, rank, 1, 1], r) }),
    1,
  );
  assert.deepEqual(conv.tensors.up.shape, [out, 1, 1, 1]);
  assert.deepEqual(conv.tensors.down.shape, [1, inn, 3, 3]);
});
