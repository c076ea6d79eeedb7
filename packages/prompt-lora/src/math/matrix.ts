/**
 * Dense row-major matrices and the products the merge code needs, on top of the SIMD kernel.
 *
 * Why not a library: the maintained pure-JS options (ml-matrix 6.15 on npm, svd-js 1.1) store float64 arrays
 * of rows, multiply with scalar loops (~0.3 GMAC/s here), and offer only a full Golub-Kahan SVD — no blocked
 * float32 products, no randomized SVD, no seeded sketches. Baking and compressing SD-sized adapters needs
 * tens of GMAC, so products go through `simd-gemm.ts`, and the float64 small-matrix algebra lives in this folder.
 *
 * Accuracy: the kernel accumulates in float32 over at most CHUNK terms; chunks are summed in float64, so a
 * product over k terms has error ~ eps32 * sqrt(CHUNK) * |a||b| instead of growing with k.
 */
import { accumulateGramTN, gemmF32 } from "./simd-gemm.ts";

export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array;
}

/** Float64 matrix for the small (r x r, k x k) algebra. */
export interface Matrix64 {
  rows: number;
  cols: number;
  data: Float64Array;
}

const CHUNK = 512;

export function matrix(rows: number, cols: number, data?: Float32Array): Matrix {
  if (data && data.length !== rows * cols) {
    throw new RangeError(`matrix data has ${data.length} values, expected ${rows} x ${cols}`);
  }
  return { rows, cols, data: data ?? new Float32Array(rows * cols) };
}

export function transpose(a: Matrix): Matrix {
  const out = new Float32Array(a.rows * a.cols);
  const { rows, cols, data } = a;
  // 32 x 32 tiles keep both the reads and the writes in cache.
  for (let i0 = 0; i0 < rows; i0 += 32) {
    const i1 = Math.min(rows, i0 + 32);
    for (let j0 = 0; j0 < cols; j0 += 32) {
      const j1 = Math.min(cols, j0 + 32);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = data[i * cols + j];
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/** C = A B. */
export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) throw new RangeError(`matmul: ${a.rows}x${a.cols} times ${b.rows}x${b.cols}`);
  const m = a.rows;
  const k = a.cols;
  const n = b.cols;
  const c = new Float32Array(m * n);
  if (k <= CHUNK) {
    if (k > 0) gemmF32(a.data, b.data, m, k, n, c);
    return { rows: m, cols: n, data: c };
  }
  // Chunk the inner dimension; sum chunk products in float64.
  const acc = new Float64Array(m * n);
  const part = new Float32Array(m * n);
  for (let p0 = 0; p0 < k; p0 += CHUNK) {
    const kc = Math.min(CHUNK, k - p0);
    const aPart = new Float32Array(m * kc);
    for (let i = 0; i < m; i++) aPart.set(a.data.subarray(i * k + p0, i * k + p0 + kc), i * kc);
    gemmF32(aPart, b.data.subarray(p0 * n, (p0 + kc) * n), m, kc, n, part);
    for (let i = 0; i < acc.length; i++) acc[i] += part[i];
  }
  for (let i = 0; i < c.length; i++) c[i] = acc[i];
  return { rows: m, cols: n, data: c };
}

/** C = A^T B (A is k x m, B is k x n). */
export function matmulTN(a: Matrix, b: Matrix): Matrix {
  if (a.rows !== b.rows) throw new RangeError(`matmulTN: (${a.rows}x${a.cols})^T times ${b.rows}x${b.cols}`);
  return matmul(transpose(a), b);
}

/** C = A B^T (A is m x k, B is n x k). */
export function matmulNT(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.cols) throw new RangeError(`matmulNT: ${a.rows}x${a.cols} times (${b.rows}x${b.cols})^T`);
  return matmul(a, transpose(b));
}

/**
 * G = A^T A in float64 (n x n for A m x n), summed over row chunks of A (float32 products within a chunk,
 * float64 across chunks). Within a chunk only the upper block triangle is computed (blocks of 64 columns)
 * and mirrored at the end: the symmetric product costs ~60% of a general one. Chunks are transposed with
 * plain loops into reused buffers (no per-row views: those cost more than the arithmetic at these sizes).
 */
export function gramTN(a: Matrix): Matrix64 {
  const { rows: m, cols: n } = a;
  const g = new Float64Array(n * n);
  const BLOCK = 64;
  if (accumulateGramTN(a.data, m, n, g, CHUNK, BLOCK)) {
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) g[i * n + j] = g[j * n + i];
    return { rows: n, cols: n, data: g };
  }
  const chunkT = new Float32Array(n * Math.min(CHUNK, m));
  const right = new Float32Array(Math.min(CHUNK, m) * BLOCK);
  const part = new Float32Array(n * BLOCK);
  const src = a.data;
  for (let p0 = 0; p0 < m; p0 += CHUNK) {
    const kc = Math.min(CHUNK, m - p0);
    // chunkT[i, p] = A[p0 + p, i]
    for (let pp = 0; pp < kc; pp += 32) {
      const pe = Math.min(kc, pp + 32);
      for (let i0 = 0; i0 < n; i0 += 32) {
        const ie = Math.min(n, i0 + 32);
        for (let p = pp; p < pe; p++) {
          const row = (p0 + p) * n;
          for (let i = i0; i < ie; i++) chunkT[i * kc + p] = src[row + i];
        }
      }
    }
    for (let j0 = 0; j0 < n; j0 += BLOCK) {
      const nb = Math.min(BLOCK, n - j0);
      const rowsUsed = j0 + nb; // rows 0..j0+nb of A^T pair with block columns j0..j0+nb
      for (let p = 0; p < kc; p++) {
        const row = (p0 + p) * n + j0;
        const dst = p * nb;
        for (let j = 0; j < nb; j++) right[dst + j] = src[row + j];
      }
      gemmF32(chunkT, right, rowsUsed, kc, nb, part);
      for (let i = 0; i < rowsUsed; i++) {
        const gi = i * n + j0;
        const pi = i * nb;
        for (let j = 0; j < nb; j++) g[gi + j] += part[pi + j];
      }
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) g[i * n + j] = g[j * n + i];
  return { rows: n, cols: n, data: g };
}

/** G = A A^T in float64. */
export function gramNT(a: Matrix): Matrix64 {
  return gramTN(transpose(a));
}

export function toMatrix64(a: Matrix): Matrix64 {
  return { rows: a.rows, cols: a.cols, data: Float64Array.from(a.data) };
}

export function toMatrix32(a: Matrix64): Matrix {
  return { rows: a.rows, cols: a.cols, data: Float32Array.from(a.data) };
}

/** Plain float64 product for small matrices (r x r algebra). */
export function matmul64(a: Matrix64, b: Matrix64): Matrix64 {
  if (a.cols !== b.rows) throw new RangeError(`matmul64: ${a.rows}x${a.cols} times ${b.rows}x${b.cols}`);
  const m = a.rows;
  const k = a.cols;
  const n = b.cols;
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = a.data[i * k + p];
      if (av === 0) continue;
      const bo = p * n;
      const co = i * n;
      for (let j = 0; j < n; j++) c[co + j] += av * b.data[bo + j];
    }
  }
  return { rows: m, cols: n, data: c };
}

export function transpose64(a: Matrix64): Matrix64 {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j];
  return { rows: a.cols, cols: a.rows, data: out };
}

export function frobeniusSquared(data: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i] * data[i];
  return s;
}
