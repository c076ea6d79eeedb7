// The packed GEMM kernels (gemm-packed.ts), both variants (relaxed-SIMD multiply-add where it compiles, and
// mul + add), against a plain float64 reference, on shapes that are not multiples of the tiles; plus the
// B panel layout checked element by element, and matmul / addProductToHalves agreeing bit for bit.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gemmPackedF32, instantiatePackedGemm, packColumnPanels } from "../src/math/gemm-packed.ts";
import { matmul, matrix } from "../src/math/matrix.ts";
import { Rng } from "../src/math/random.ts";
import { addProductToHalves, addToHalves } from "../src/math/simd-f16.ts";
import type { WasmMemory } from "../src/math/wasm-asm.ts";
import { f32ToF16 } from "../src/safetensors/dtypes.ts";

function reference(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      c[i * n + j] = s;
    }
  return c;
}

const memory = () =>
  new (
    globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => WasmMemory } }
  ).WebAssembly.Memory({ initial: 1 });

test("packed GEMM kernels (fused and mul+add) match a float64 reference on ragged shapes", () => {
  const rng = new Rng(21);
  const variants = [instantiatePackedGemm(memory(), true), instantiatePackedGemm(memory(), false)];
  assert.ok(variants[1] && !variants[1].fused, "the mul + add kernel always compiles");
  // Node 20 has relaxed SIMD behind a V8 flag, Node 22+ ships it: the fused kernel must compile on both.
  assert.ok(variants[0]?.fused, "the relaxed-SIMD kernel compiles");
  for (const g of variants) {
    assert.ok(g);
    const mem = memory();
    const kernel = instantiatePackedGemm(mem, g.fused)!;
    assert.equal(kernel.fused, g.fused);
    for (const [m, k, n] of [
      [1, 1, 1],
      [3, 5, 7],
      [5, 96, 17],
      [7, 1, 33],
      [kernel.rows, 3, kernel.cols],
      [kernel.rows + 1, 64, kernel.cols * 3 - 1],
      [33, 200, 50],
    ]) {
      const a = rng.gaussianArray(m * k);
      const b = rng.gaussianArray(k * n);
      const c = new Float32Array(m * n).fill(Number.NaN);
      gemmPackedF32(kernel, mem, a, b, m, k, n, c);
      const ref = reference(a, b, m, k, n);
      // float32 accumulation over k terms of size ~1: error well under 1e-6 * k * max|term sum|
      for (let i = 0; i < ref.length; i++) {
        assert.ok(
          Math.abs(c[i] - ref[i]) <= 2e-6 * k + 1e-6 * Math.abs(ref[i]),
          `${kernel.fused ? "fused" : "mul+add"} ${m}x${k}x${n} at ${i}: ${c[i]} vs ${ref[i]}`,
        );
      }
    }
  }
});

test("column panels are contiguous per step, the last one zero-padded", () => {
  const k = 3;
  const n = 11;
  const b = Float32Array.from({ length: k * n }, (_, i) => i + 1);
  const cols = 8;
  const packedB = new Float32Array(2 + k * 16).fill(-1);
  packColumnPanels(b, k, n, cols, packedB, 2);
  assert.deepEqual([packedB[0], packedB[1]], [-1, -1], "nothing written before the offset");
  for (let p = 0; p < k; p++)
    for (let j = 0; j < 16; j++) {
      const at = 2 + Math.floor(j / cols) * cols * k + p * cols + (j % cols);
      assert.equal(packedB[at], j < n ? b[p * n + j] : 0, `B(${p}, ${j})`);
    }
});

test("addProductToHalves in place equals addToHalves(W, matmul(up, down)) bit for bit", () => {
  const rng = new Rng(22);
  for (const [rows, r, cols] of [
    [70, 96, 32],
    [3, 7, 48],
  ]) {
    const up = rng.gaussianArray(rows * r, 0.05);
    const down = rng.gaussianArray(r * cols, 0.05);
    const h = f32ToF16(rng.gaussianArray(rows * cols, 0.05));
    for (let i = 0; i < h.length; i += 37) h[i] = i % 2 ? 0x0003 : 0xfc00; // subnormal / -Inf: scalar path
    const want = addToHalves(h, matmul(matrix(rows, r, up), matrix(r, cols, down)).data);
    const inPlace = h.slice();
    assert.equal(addProductToHalves(up, down, rows, r, cols, inPlace, inPlace), inPlace);
    assert.deepEqual(inPlace, want, `${rows}x${r}x${cols}`);
  }
});
