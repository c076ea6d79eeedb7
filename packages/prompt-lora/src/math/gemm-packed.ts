/**
 * The register-blocked float32 GEMM micro-kernel over a packed B, in WebAssembly SIMD (assembled from the
 * instruction list below, like the other kernels of this folder; simd-gemm.ts says why wasm).
 *
 * Layouts:
 * - A as it is (row-major or any strides): element (i + r, p) of the row block at i is read at
 *   aPtr + i * aRow + r * aLane + p * aStep, one load-splat (a broadcast load, no shuffle) per row and step.
 *   Packing A into row blocks saved ~4% of kernel time but cost more than that in JS, most of all for the
 *   thin products of the randomized SVD.
 * - B packed in column panels of `cols` (packColumnPanels): panel j (columns j..j+cols) is k rows of `cols`
 *   adjacent floats, so the inner loop reads B contiguously. Unpacked rows of 1280 or 768 floats put every step
 *   of a 16-column tile into a few L1 sets, where they evicted each other.
 * C (m x n, row stride cRow bytes) = A B, m a multiple of `rows` and n of `cols` (zero padding).
 *
 * Two variants, measured with bench/gemm-kernel.ts on the 2-core Xeon target (2026-11-22, best GMAC per
 * CPU-second on the bake's shapes, load 1-2 from other jobs): fused multiply-add (f32x4.relaxed_madd) with a
 * 4 x 8 tile, 15.6-16.8; mul + add with a 2 x 16 tile, 13-14; the unpacked strided 2 x 16 kernel before them,
 * 11.5-12 (also tried, all slower: 3 x 12, 3 x 16, 4 x 12, 2 x 20, 2 x 24, 3 x 8). The tiles keep the
 * accumulators, the splats and one B vector within the 15 xmm registers V8 allocates on x64. Relaxed SIMD is
 * shipped from V8 11.4 (Node 22); Node 20 has it behind a V8 flag, which relaxedSimdModule turns on only for
 * the compile of this module and then restores. Relaxed madd may round once (FMA) or twice depending on the
 * CPU, so results may differ in the last float32 bit between machines, never within one process: every caller
 * here uses the same instance, and each C element is the sum over p in increasing order in one float32 lane.
 */
import { setFlagsFromString } from "node:v8";
import {
  add32,
  f32x4add,
  f32x4mul,
  forLoop,
  get,
  I32,
  i32c,
  mul32,
  set,
  simd,
  singleFunctionModule,
  uleb,
  V128,
  v128load,
  v128store,
  v128zero,
  type WasmMemory,
  wasmApi,
} from "./wasm-asm.ts";

const loadSplat32 = (offset: number) => [...simd(0x09), 2, ...uleb(offset)];
/** f32x4.relaxed_madd(a, b, c) = a * b + c (relaxed SIMD opcode 0x105). */
const relaxedMadd = simd(0x105);

// Params 0..9, then i32 locals 10..17, then v128 locals.
const [A, B, C, M, K, N, AROW, ASTEP, LDC, ALANE] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const [Ii, Jj, P, AP, BP, CR, ALANE2, ALANE3] = [10, 11, 12, 13, 14, 15, 16, 17];
const ACC = 18;

/**
 * gemmPacked(aPtr, bPtr, cPtr, m, k, n, aRow, aStep, cRow, aLane): A(i, p) at aPtr + i * aRow + p * aStep
 * (block rows aLane bytes apart: aLane = aRow for a plain A; row-major A has aRow = k * 4, aStep = 4);
 * panel j of B at bPtr + j * k * 4; C(i, j) at cPtr + i * cRow + j * 4.
 */
export function assemblePackedKernel(rows: number, vectors: number, fused: boolean): Uint8Array {
  if (rows > 4) throw new RangeError("at most 4 rows per block");
  const AV = ACC + rows * vectors; // one splat per row
  const BV = AV + rows;
  const acc = (r: number, q: number) => ACC + r * vectors + q;
  const inner: number[] = [];
  const lane = [0, ALANE, ALANE2, ALANE3];
  for (let r = 0; r < rows; r++) {
    if (r === 0) inner.push(...get(AP), ...loadSplat32(0), ...set(AV));
    else inner.push(...get(AP), ...get(lane[r]), ...add32, ...loadSplat32(0), ...set(AV + r));
  }
  for (let q = 0; q < vectors; q++) {
    inner.push(...get(BP), ...v128load(16 * q), ...set(BV));
    for (let r = 0; r < rows; r++) {
      const t = acc(r, q);
      if (fused) inner.push(...get(AV + r), ...get(BV), ...get(t), ...relaxedMadd, ...set(t));
      else inner.push(...get(t), ...get(AV + r), ...get(BV), ...f32x4mul, ...f32x4add, ...set(t));
    }
  }
  inner.push(...get(AP), ...get(ASTEP), ...add32, ...set(AP));
  inner.push(...get(BP), ...i32c(16 * vectors), ...add32, ...set(BP));

  const tile: number[] = [];
  for (let a = 0; a < rows * vectors; a++) tile.push(...v128zero, ...set(ACC + a));
  tile.push(...get(A), ...get(Ii), ...get(AROW), ...mul32, ...add32, ...set(AP));
  tile.push(...get(B), ...get(Jj), ...get(K), ...mul32, ...i32c(4), ...mul32, ...add32, ...set(BP));
  tile.push(...forLoop(P, K, 1, inner));
  tile.push(...get(C), ...get(Ii), ...get(LDC), ...mul32, ...add32);
  tile.push(...get(Jj), ...i32c(4), ...mul32, ...add32, ...set(CR));
  for (let r = 0; r < rows; r++) {
    for (let q = 0; q < vectors; q++) tile.push(...get(CR), ...get(acc(r, q)), ...v128store(16 * q));
    if (r + 1 < rows) tile.push(...get(CR), ...get(LDC), ...add32, ...set(CR));
  }
  // Panels outer, row blocks inner: the B panel (k x cols floats, 3 KB at k = 96) stays in L1.
  const lanes = [...get(ALANE), ...get(ALANE), ...add32, ...set(ALANE2)];
  lanes.push(...get(ALANE2), ...get(ALANE), ...add32, ...set(ALANE3));
  const body = [...lanes, ...forLoop(Jj, N, vectors * 4, forLoop(Ii, M, rows, tile))];
  return singleFunctionModule(
    "gemmPacked",
    10,
    0,
    [
      [8, I32],
      [rows * vectors + rows + 1, V128],
    ],
    body,
  );
}

export type PackedKernelFn = (
  aPtr: number,
  bPtr: number,
  cPtr: number,
  m: number,
  k: number,
  n: number,
  aRow: number,
  aStep: number,
  cRow: number,
  aLane: number,
) => void;

export interface PackedGemm {
  kernel: PackedKernelFn;
  /** Tile: row blocks of `rows` (m is padded to a multiple), B column panels of `cols`. */
  rows: number;
  cols: number;
  /** True when the kernel uses relaxed-SIMD multiply-add. */
  fused: boolean;
}

const FLAG = "--experimental-wasm-relaxed-simd";

/**
 * Compiles a module that uses relaxed SIMD: as is where the engine ships it, else with V8's flag on for this
 * compile only (the compiled module keeps its features; the flag goes back off, so no other code is affected).
 * Threads compiling at once may switch the flag under each other: a failed compile is retried.
 */
function relaxedSimdModule(bytes: Uint8Array): object | undefined {
  if (!wasmApi) return undefined;
  if (wasmApi.validate(bytes)) return new wasmApi.Module(bytes);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      setFlagsFromString(FLAG);
      if (!wasmApi.validate(bytes)) return undefined; // an engine without relaxed SIMD at all
      return new wasmApi.Module(bytes);
    } catch {
      // the flag was switched off by another thread between validate and compile: try again
    } finally {
      setFlagsFromString(FLAG.replace("--", "--no-"));
    }
  }
  return undefined;
}

/** The fastest packed kernel this engine runs (fused when `allowFused` and relaxed SIMD compiles), on `memory`. */
export function instantiatePackedGemm(memory: WasmMemory, allowFused = true): PackedGemm | undefined {
  if (!wasmApi) return undefined;
  if (allowFused) {
    const module = relaxedSimdModule(assemblePackedKernel(4, 2, true));
    if (module) return { kernel: instantiate(module, memory), rows: 4, cols: 8, fused: true };
  }
  const bytes = assemblePackedKernel(2, 4, false);
  if (!wasmApi.validate(bytes)) return undefined;
  return { kernel: instantiate(new wasmApi.Module(bytes), memory), rows: 2, cols: 16, fused: false };
}

function instantiate(module: object, memory: WasmMemory): PackedKernelFn {
  return new wasmApi!.Instance(module, { env: { mem: memory } }).exports.gemmPacked as PackedKernelFn;
}

/** B (k x n, row-major) into column panels of `cols` at dst[off..], the last panel zero-padded. */
export function packColumnPanels(
  b: Float32Array,
  k: number,
  n: number,
  cols: number,
  dst: Float32Array,
  off: number,
): void {
  for (let j0 = 0; j0 < n; j0 += cols) {
    const panel = off + j0 * k;
    const w = Math.min(cols, n - j0);
    for (let p = 0; p < k; p++) {
      const d = panel + p * cols;
      const s = p * n + j0;
      for (let c = 0; c < w; c++) dst[d + c] = b[s + c];
      for (let c = w; c < cols; c++) dst[d + c] = 0;
    }
  }
}

/** Bytes of wasm memory gemmPackedF32 needs for an m x k times k x n product. */
function packedGemmBytes(g: PackedGemm, m: number, k: number, n: number): number {
  const mp = Math.ceil(m / g.rows) * g.rows;
  const np = Math.ceil(n / g.cols) * g.cols;
  return (mp * k + k * np + mp * np) * 4;
}

/** C = A[m x k] B[k x n] (row-major float32) with `g` on `memory` (from byte 0 on; grown as needed). */
export function gemmPackedF32(
  g: PackedGemm,
  memory: WasmMemory,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  c: Float32Array,
): void {
  const mp = Math.ceil(m / g.rows) * g.rows;
  const np = Math.ceil(n / g.cols) * g.cols;
  const need = packedGemmBytes(g, m, k, n);
  const have = memory.buffer.byteLength;
  if (need > have) memory.grow(Math.ceil((need - have) / 65536));
  const heap = new Float32Array(memory.buffer);
  const aOff = 0;
  const bOff = mp * k;
  const cOff = bOff + k * np;
  heap.set(a.subarray(0, m * k), aOff);
  if (mp !== m) heap.fill(0, aOff + m * k, aOff + mp * k); // zero rows pad the last block
  packColumnPanels(b, k, n, g.cols, heap, bOff);
  g.kernel(aOff * 4, bOff * 4, cOff * 4, mp, k, np, k * 4, 4, np * 4, k * 4);
  if (np === n) c.set(heap.subarray(cOff, cOff + m * n));
  else for (let i = 0; i < m; i++) c.set(heap.subarray(cOff + i * np, cOff + i * np + n), i * n);
}
