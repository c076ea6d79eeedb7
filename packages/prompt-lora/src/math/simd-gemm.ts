/**
 * A float32 GEMM micro-kernel in WebAssembly SIMD, assembled here from a readable instruction list.
 *
 * Why hand-assembled: plain JS typed-array loops reach ~0.3-0.4 GMAC/s on the target machine (V8 does not
 * vectorise them), while baking a 3-LoRA stack into SD1.5 needs ~12 GMAC and compressing five rank-64 stacks
 * several tens. 128-bit wasm SIMD with a register-blocked kernel is an order of magnitude faster, runs in every
 * Node >= 16 without native code, and there is no toolchain here to compile C/WAT. The kernel is small enough
 * to read: see `kernelBody` below.
 *
 * Two kernels: products (gemmF32) run on the packed-B kernel of gemm-packed.ts (relaxed-SIMD multiply-add
 * where the engine has it); the strided kernel below serves accumulateGramTN, which reads A^T in place.
 * Contract of the strided kernel: C[m x n] = A[m x k] * B[k x n] (row-major float32, products accumulated in
 * float32 over k; callers chunk k and sum chunks in float64 when k is large). m must be even and n a multiple
 * of 16 (callers pad).
 */

import { gemmPackedF32, instantiatePackedGemm, type PackedGemm } from "./gemm-packed.ts";
import {
  add32,
  f32load,
  f32x4add,
  f32x4mul,
  f32x4splat,
  forLoop,
  get,
  I32,
  i32c,
  mul32,
  set,
  singleFunctionModule,
  V128,
  v128load,
  v128store,
  v128zero,
  type WasmMemory,
  wasmApi,
} from "./wasm-asm.ts";

export type { WasmMemory } from "./wasm-asm.ts";

// Params: 0..5 = aPtr, bPtr, cPtr, m, k, n; 6..9 = byte strides: A row (i -> i+1), A step (p -> p+1), B row,
// C row. A plain row-major A has (k*4, 4); a transposed view of a row-major k x m array has (4, m*4), which
// lets Gram products read A^T without transposing it. Then i32 scratch, then v128 accumulators.
const [A, B, C, M, K, N, AROW, ASTEP, LDB, LDC] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const [Ii, Jj, P, AR0, AR1, BP, CR] = [10, 11, 12, 13, 14, 15, 16];
const ACC = 17; // 8 accumulators: rows 0/1 x 4 vectors of 4 columns
const AV0 = 25;
const AV1 = 26;
const BV = 27;

function kernelBody(): number[] {
  // Inner loop over p: two rows of A (splatted) times 16 columns of B, 8 multiply-adds of 4 lanes.
  const inner: number[] = [
    ...get(AR0),
    ...f32load,
    ...f32x4splat,
    ...set(AV0),
    ...get(AR1),
    ...f32load,
    ...f32x4splat,
    ...set(AV1),
  ];
  for (let q = 0; q < 4; q++) {
    inner.push(...get(BP), ...v128load(16 * q), ...set(BV));
    for (const [row, av] of [
      [0, AV0],
      [1, AV1],
    ]) {
      const acc = ACC + row * 4 + q;
      inner.push(...get(acc), ...get(av), ...get(BV), ...f32x4mul, ...f32x4add, ...set(acc));
    }
  }
  inner.push(...get(AR0), ...get(ASTEP), ...add32, ...set(AR0));
  inner.push(...get(AR1), ...get(ASTEP), ...add32, ...set(AR1));
  inner.push(...get(BP), ...get(LDB), ...add32, ...set(BP));

  const tile: number[] = [];
  for (let a = 0; a < 8; a++) tile.push(...v128zero, ...set(ACC + a));
  // aRow0 = aPtr + i * aRowStride; aRow1 = aRow0 + aRowStride; bp = bPtr + j * 4
  tile.push(...get(A), ...get(Ii), ...get(AROW), ...mul32, ...add32, ...set(AR0));
  tile.push(...get(AR0), ...get(AROW), ...add32, ...set(AR1));
  tile.push(...get(B), ...get(Jj), ...i32c(4), ...mul32, ...add32, ...set(BP));
  tile.push(...forLoop(P, K, 1, inner));
  // cRow = cPtr + i * cRowStride + j * 4; store row 0 then row 1 (cRow + cRowStride)
  tile.push(
    ...get(C),
    ...get(Ii),
    ...get(LDC),
    ...mul32,
    ...add32,
    ...get(Jj),
    ...i32c(4),
    ...mul32,
    ...add32,
  );
  tile.push(...set(CR));
  for (let row = 0; row < 2; row++) {
    for (let q = 0; q < 4; q++) tile.push(...get(CR), ...get(ACC + row * 4 + q), ...v128store(16 * q));
    if (row === 0) tile.push(...get(CR), ...get(LDC), ...add32, ...set(CR));
  }

  return forLoop(Ii, M, 2, forLoop(Jj, N, 16, tile));
}

function assemble(): Uint8Array {
  return singleFunctionModule(
    "gemm",
    10,
    0,
    [
      [7, I32],
      [11, V128],
    ],
    kernelBody(),
  );
}

export type GemmFn = (
  aPtr: number,
  bPtr: number,
  cPtr: number,
  m: number,
  k: number,
  n: number,
  aRowStride: number,
  aStep: number,
  bRowStride: number,
  cRowStride: number,
) => void;

const wasm = wasmApi;

interface GemmKernels {
  memory: WasmMemory;
  /** The strided kernel (accumulateGramTN). */
  kernel: GemmFn;
  /** The packed-B kernel (products). */
  packed: PackedGemm;
}

let kernels: GemmKernels | undefined;

/** The kernels and their memory, for kernels that run on the same memory (simd-f16.ts); undefined without SIMD. */
export function gemmInstance(): GemmKernels | undefined {
  return instance();
}

function instance(): GemmKernels | undefined {
  if (kernels) return kernels;
  const bytes = assemble();
  if (!wasm?.validate(bytes)) return undefined;
  const memory = new wasm.Memory({ initial: 16 });
  const packed = instantiatePackedGemm(memory);
  if (!packed) return undefined;
  const inst = new wasm.Instance(new wasm.Module(bytes), { env: { mem: memory } });
  kernels = { memory, kernel: inst.exports.gemm as GemmFn, packed };
  return kernels;
}

/** True when the SIMD kernel assembled and validated (Node 20 always does). */
export function simdAvailable(): boolean {
  return instance() !== undefined;
}

/**
 * C = A[m x k] * B[k x n] on the packed-B kernel (B packed, A copied, both padded internally). Inputs are row-major
 * float32; the result is written row-major into `c` (length m * n). Plain-JS fallback when SIMD is missing.
 */
export function gemmF32(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  c: Float32Array,
): void {
  const inst = instance();
  if (!inst) gemmFallback(a, b, m, k, n, c);
  else gemmPackedF32(inst.packed, inst.memory, a, b, m, k, n, c);
}

function gemmFallback(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  c: Float32Array,
): void {
  const acc = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    acc.fill(0);
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      if (av === 0) continue;
      const bo = p * n;
      for (let j = 0; j < n; j++) acc[j] += av * b[bo + j];
    }
    for (let j = 0; j < n; j++) c[i * n + j] = acc[j];
  }
}

/**
 * g (n x n, float64, row-major) += the upper block triangle of A^T A for A (m x n row-major), in column blocks
 * of `block`: for each block j0 only rows i < j0 + block are formed (the caller mirrors the lower triangle).
 * Rows of A are taken `chunk` at a time into the kernel's memory and read there as A^T through strides, so
 * nothing is transposed or re-packed in JS; products are float32 within a chunk and summed in float64.
 * Returns false (nothing done) when n is not a multiple of 16 or SIMD is missing: the caller then packs.
 */
export function accumulateGramTN(
  a: Float32Array,
  m: number,
  n: number,
  g: Float64Array,
  chunk: number,
  block: number,
): boolean {
  const inst = instance();
  if (!inst || n % 16 !== 0 || block % 16 !== 0) return false;
  const rowsMax = Math.min(chunk, m);
  const aBytes = rowsMax * n * 4;
  const cBytes = n * block * 4;
  const have = inst.memory.buffer.byteLength;
  if (aBytes + cBytes > have) inst.memory.grow(Math.ceil((aBytes + cBytes - have) / 65536));
  const heap = new Float32Array(inst.memory.buffer);
  const cOff = aBytes / 4;
  for (let p0 = 0; p0 < m; p0 += chunk) {
    const kc = Math.min(chunk, m - p0);
    heap.set(a.subarray(p0 * n, (p0 + kc) * n), 0);
    for (let j0 = 0; j0 < n; j0 += block) {
      const nb = Math.min(block, n - j0);
      const rowsUsed = j0 + nb; // even: a multiple of 16
      // C[i, j] = sum_p A[p, i] * A[p, j0 + j]: A^T rows are 4 bytes apart, steps of one A row (n * 4).
      inst.kernel(0, j0 * 4, cOff * 4, rowsUsed, kc, nb, 4, n * 4, n * 4, nb * 4);
      for (let i = 0; i < rowsUsed; i++) {
        const gi = i * n + j0;
        const ci = cOff + i * nb;
        for (let j = 0; j < nb; j++) g[gi + j] += heap[ci + j];
      }
    }
  }
  return true;
}
