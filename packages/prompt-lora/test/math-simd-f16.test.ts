// The fused SIMD half+delta kernel against the scalar route (decode, float32 add, encode), which
// safetensors-dtypes.test.ts checks exhaustively against IEEE formulas. Every half meets deltas that keep it
// normal, push it to subnormal / zero / overflow, and NaN/Inf; the kernel must agree bit for bit.
import assert from "node:assert/strict";
import { test } from "node:test";
import { matmul, matrix } from "../src/math/matrix.ts";
import { Rng } from "../src/math/random.ts";
import { addProductToHalves, addToHalves } from "../src/math/simd-f16.ts";
import { f16ToF32, f32ToF16 } from "../src/safetensors/dtypes.ts";

function reference(h: Uint16Array, d: Float32Array): Uint16Array {
  const w = f16ToF32(h);
  const sum = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) sum[i] = Math.fround(w[i] + d[i]);
  return f32ToF16(sum);
}

function assertSameHalves(got: Uint16Array, want: Uint16Array, h: Uint16Array, d: Float32Array): void {
  for (let i = 0; i < want.length; i++) {
    const nanWant = (want[i] & 0x7c00) === 0x7c00 && (want[i] & 0x3ff) !== 0;
    if (nanWant) {
      assert.ok((got[i] & 0x7c00) === 0x7c00 && (got[i] & 0x3ff) !== 0, `NaN at ${i}`);
      continue;
    }
    if (got[i] !== want[i])
      assert.fail(
        `half 0x${h[i].toString(16)} + ${d[i]}: got 0x${got[i].toString(16)}, want 0x${want[i].toString(16)}`,
      );
  }
}

test("addToHalves equals decode + float32 add + encode for every half and edge deltas", () => {
  const deltas = [
    0,
    -0,
    1e-3,
    -1e-3,
    6e-5,
    -6.1e-5,
    3e-8,
    1,
    -1,
    65504,
    -65504,
    70000,
    1e-30,
    Number.NaN,
    Number.POSITIVE_INFINITY,
  ];
  const n = 65536 * deltas.length + 5; // not a multiple of 8: the tail takes the scalar path
  const h = new Uint16Array(n);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    h[i] = i & 0xffff;
    d[i] = deltas[Math.floor(i / 65536) % deltas.length];
  }
  assertSameHalves(addToHalves(h, d), reference(h, d), h, d);
});

test("addToHalves on weight-like data (random halves and deltas, mostly in the fast path)", () => {
  const rng = new Rng(11);
  const n = 300_003;
  const h = f32ToF16(rng.gaussianArray(n, 0.05));
  const d = rng.gaussianArray(n, 0.01);
  for (let i = 0; i < n; i += 997) d[i] = -f16ToF32(h.subarray(i, i + 1))[0]; // exact cancellations to zero
  assertSameHalves(addToHalves(h, d), reference(h, d), h, d);
});

test("addProductToHalves equals addToHalves(W, up @ down) bit for bit (odd row counts, flagged groups)", () => {
  const rng = new Rng(5);
  for (const [rows, r, cols] of [
    [67, 24, 48],
    [32, 96, 320],
    [5, 1, 16],
  ]) {
    const up = rng.gaussianArray(rows * r, 0.05);
    const down = rng.gaussianArray(r * cols, 0.05);
    const h = f32ToF16(rng.gaussianArray(rows * cols, 0.05));
    for (let i = 0; i < h.length; i += 101) h[i] = i % 2 ? 0x0001 : 0x7c00; // subnormal / Inf inputs
    const fused = addProductToHalves(up, down, rows, r, cols, h);
    assert.ok(fused, `fused path taken for ${rows}x${r}x${cols}`);
    const delta = matmul(matrix(rows, r, up), matrix(r, cols, down)).data;
    const want = addToHalves(h, delta);
    assert.deepEqual(fused, want, `${rows}x${r}x${cols}`);
    assert.deepEqual(want, reference(h, delta));
  }
  assert.equal(
    addProductToHalves(new Float32Array(4), new Float32Array(20), 2, 2, 10, new Uint16Array(20)),
    undefined,
  );
});
