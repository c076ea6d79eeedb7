/**
 * Rank-r SVDs for the merge code.
 *
 * - `randomizedSvd(A, r)`: Halko, Martinsson & Tropp (2011), "Finding structure with randomness": Gaussian
 *   sketch Y = A Omega with oversampling, q power iterations re-orthonormalised after every product (so small
 *   singular directions are not lost to rounding), B = Q^T A, and a small exact decomposition of B.
 * - `factoredSvd(U, D, r)`: the same for A = U D given only its factors (a stacked LoRA, U out x R, D R x in),
 *   run in the R-dimensional coefficient space through the Gram matrices U^T U and D D^T, so out x in is never
 *   formed. When R <= r + oversampling the sketch spans the whole range and the result is the exact SVD.
 *
 * Both return the factors split kohya-style (up = U_r sqrt(S), down = sqrt(S) V_r^T) plus the squared Frobenius
 * norm of A and of the residual A - up down, which is exact for the returned approximation because it is an
 * orthogonal projection of A.
 */
import { symmetricEigen } from "./eig.ts";
import {
  gramNT,
  gramTN,
  type Matrix,
  type Matrix64,
  matmul,
  matmul64,
  matrix,
  toMatrix32,
  toMatrix64,
  transpose,
  transpose64,
} from "./matrix.ts";
import { Rng } from "./random.ts";

export interface LowRankOptions {
  /** Extra sketch columns beyond the rank (default 10). */
  oversample?: number;
  /** Power iterations (default 2). */
  powerIterations?: number;
  seed?: number;
}

export interface LowRank {
  /** out x r, columns scaled by sqrt(sigma). */
  up: Matrix;
  /** r x in, rows scaled by sqrt(sigma). */
  down: Matrix;
  /** Singular values kept, descending (length r). */
  sigma: Float64Array;
  /** ||A||_F^2 */
  normSquared: number;
  /** ||A - up down||_F^2 */
  residualSquared: number;
}

/** Relative eigenvalue floor below which a sketch direction is treated as numerically absent. */
const RANK_TOL = 1e-10;

/**
 * Orthonormal basis of the columns of Y (m x k) as Y C with C k x k' from the Gram's eigen-decomposition,
 * applied twice (the second pass restores orthogonality lost to float32 products, as in CholeskyQR2).
 * Numerically dependent directions are dropped, so k' <= k.
 */
export function orthonormalizeColumns(y: Matrix): Matrix {
  let q = y;
  for (let pass = 0; pass < 2; pass++) {
    const c = inverseSqrtBasis(gramTN(q), pass === 0 ? RANK_TOL : 1e-6);
    if (c.cols === 0) return matrix(y.rows, 0);
    q = matmul(q, toMatrix32(c));
  }
  return q;
}

/**
 * For a PSD Gram G (k x k), returns C (k x k') with C^T G C = I. Cholesky first (C = L^-T, k^3/3 flops: the
 * CholeskyQR step); when a pivot falls below tol * max diagonal (dependent directions, or a condition number
 * beyond what the float32 Gram resolves) the eigen-decomposition drops those directions instead.
 */
function inverseSqrtBasis(g: Matrix64, tol: number): Matrix64 {
  return choleskyInverseBasis(g, Math.max(tol, 1e-6)) ?? eigenInverseBasis(g, tol);
}

/** L^-T for G = L L^T, or undefined when a pivot is below tol * max(diag). */
function choleskyInverseBasis(g: Matrix64, tol: number): Matrix64 | undefined {
  const k = g.rows;
  const l = new Float64Array(k * k);
  let maxDiag = 0;
  for (let i = 0; i < k; i++) maxDiag = Math.max(maxDiag, g.data[i * k + i]);
  if (!(maxDiag > 0)) return undefined;
  for (let j = 0; j < k; j++) {
    let d = g.data[j * k + j];
    for (let p = 0; p < j; p++) d -= l[j * k + p] * l[j * k + p];
    if (!(d > tol * maxDiag)) return undefined;
    const ljj = Math.sqrt(d);
    l[j * k + j] = ljj;
    for (let i = j + 1; i < k; i++) {
      let s = g.data[i * k + j];
      for (let p = 0; p < j; p++) s -= l[i * k + p] * l[j * k + p];
      l[i * k + j] = s / ljj;
    }
  }
  // X = L^-1 (lower), by forward substitution column by column; the basis is X^T.
  const x = new Float64Array(k * k);
  for (let c = 0; c < k; c++) {
    for (let i = c; i < k; i++) {
      let s = i === c ? 1 : 0;
      for (let p = c; p < i; p++) s -= l[i * k + p] * x[p * k + c];
      x[i * k + c] = s / l[i * k + i];
    }
  }
  const basis = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) basis[i * k + j] = x[j * k + i];
  return { rows: k, cols: k, data: basis };
}

function eigenInverseBasis(g: Matrix64, tol: number): Matrix64 {
  const k = g.rows;
  const { values, vectors } = symmetricEigen(g);
  const top = Math.max(values[0] ?? 0, 0);
  let kept = 0;
  while (kept < k && values[kept] > top * tol && values[kept] > 0) kept++;
  const c = new Float64Array(k * kept);
  for (let j = 0; j < kept; j++) {
    const inv = 1 / Math.sqrt(values[j]);
    for (let i = 0; i < k; i++) c[i * kept + j] = vectors.data[j * k + i] * inv;
  }
  return { rows: k, cols: kept, data: c };
}

export function randomizedSvd(a: Matrix, rank: number, opts: LowRankOptions = {}): LowRank {
  const { rows: m, cols: n } = a;
  const normSquared = squaredSum(a.data);
  const k = Math.min(rank + (opts.oversample ?? 10), m, n);
  const rng = new Rng(opts.seed ?? 1);
  let q = orthonormalizeColumns(matmul(a, matrix(n, k, rng.gaussianArray(n * k))));
  for (let it = 0; it < (opts.powerIterations ?? 2); it++) {
    const z = orthonormalizeColumns(transpose(matmul(transpose(q), a))); // A^T Q, n x k
    q = orthonormalizeColumns(matmul(a, z));
  }
  const b = matmul(transpose(q), a); // k' x n
  const { values, vectors } = symmetricEigen(gramNT(b)); // B B^T = W S^2 W^T
  const result = splitTopR(q, b, values, vectors, rank, normSquared);
  // The residual from the spectrum carries float32 Gram rounding (~3e-4 relative); with A at hand the exact
  // residual costs one more m x n x r product.
  const approx = matmul(result.up, result.down).data;
  let residual = 0;
  for (let i = 0; i < approx.length; i++) residual += (a.data[i] - approx[i]) ** 2;
  result.residualSquared = residual;
  return result;
}

/** Keeps the top r of B = W S V^T: up = Q W_r sqrt(S_r), down = S_r^{-1/2} W_r^T B. */
function splitTopR(
  q: Matrix,
  b: Matrix,
  values: Float64Array,
  vectors: Matrix64,
  rank: number,
  normSquared: number,
): LowRank {
  const kk = b.rows;
  const r = Math.min(rank, kk);
  const { left, right, sigma, residualSquared } = coreFactors(values, vectors, r, normSquared);
  return {
    up: matmul(q, left),
    down: matmul(right, b),
    sigma,
    normSquared,
    residualSquared,
  };
}

/** From eig(B B^T) = (values, vectors): left = W_r sqrt(S) (k x r), right = S^{-1/2} W_r^T (r x k). */
function coreFactors(
  values: Float64Array,
  vectors: Matrix64,
  r: number,
  normSquared: number,
): { left: Matrix; right: Matrix; sigma: Float64Array; residualSquared: number } {
  const k = vectors.rows;
  const sigma = new Float64Array(r);
  const left = matrix(k, r);
  const right = matrix(r, k);
  let captured = 0;
  for (let j = 0; j < r; j++) {
    const lambda = Math.max(values[j], 0);
    captured += lambda;
    sigma[j] = Math.sqrt(lambda);
    const sq = Math.sqrt(sigma[j]);
    const inv = sq > 0 ? 1 / sq : 0;
    for (let i = 0; i < k; i++) {
      const w = vectors.data[j * k + i];
      left.data[i * r + j] = w * sq;
      right.data[j * k + i] = w * inv;
    }
  }
  // Residual = energy outside the kept directions: the sketch's own tail (no cancellation) plus whatever the
  // sketch missed (normSquared - total sketch energy, ~0 when the sketch spans the range).
  let sketchTotal = 0;
  let sketchTail = 0;
  for (let j = 0; j < values.length; j++) {
    const lambda = Math.max(values[j], 0);
    sketchTotal += lambda;
    if (j >= r) sketchTail += lambda;
  }
  const missed = Math.max(0, normSquared - sketchTotal);
  const residualSquared = Math.min(Math.max(0, normSquared - captured), sketchTail + missed);
  return { left, right, sigma, residualSquared };
}

/**
 * Rank-r SVD of A = U D (U m x R, D R x n) without forming A. Vectors of range(U) are kept as coefficients
 * c (y = U c); inner products use G_u = U^T U, and A A^T acts on coefficients as G_d G_u.
 */
export function factoredSvd(u: Matrix, d: Matrix, rank: number, opts: LowRankOptions = {}): LowRank {
  const R = u.cols;
  if (d.rows !== R) throw new RangeError(`factoredSvd: up is ${u.rows}x${R}, down is ${d.rows}x${d.cols}`);
  const gu64 = gramTN(u);
  const gd64 = gramNT(d);
  let normSquared = 0;
  for (let i = 0; i < gu64.data.length; i++) normSquared += gu64.data[i] * gd64.data[i];
  normSquared = Math.max(0, normSquared);
  const gu = toMatrix32(gu64);
  const gd = toMatrix32(gd64);

  const k = Math.min(rank + (opts.oversample ?? 10), R);
  let c: Matrix;
  let guC: Matrix; // G_u C, kept up to date by orthonormalizeIn
  if (k === R) {
    // The sketch can span all of range(U): take the identity, exact.
    c = matrix(R, R);
    for (let i = 0; i < R; i++) c.data[i * R + i] = 1;
    ({ c, gc: guC } = orthonormalizeIn(gu64, c, 2, gu));
  } else {
    // Start from G_d Omega with Omega R x k Gaussian: columns distributed like D (D^T Omega'), i.e. already
    // weighted towards A's dominant right directions, for R*k draws instead of in*k (Gaussian draws cost
    // ~50 ns each here: drawing in x k of them took most of a compression).
    const rng = new Rng(opts.seed ?? 1);
    const powerIterations = opts.powerIterations ?? 2;
    ({ c, gc: guC } = orthonormalizeIn(
      gu64,
      matmul(gd, matrix(R, k, rng.gaussianArray(R * k))),
      powerIterations > 0 ? 1 : 2,
      gu,
    ));
    for (let it = 0; it < powerIterations; it++) {
      // Intermediate bases only need to be well conditioned; the last one is orthonormalised twice.
      ({ c, gc: guC } = orthonormalizeIn(gu64, matmul(gd, guC), it === powerIterations - 1 ? 2 : 1, gu));
    }
  }
  if (c.cols === 0) return zeroLowRank(u.rows, d.cols, normSquared);
  // T = C^T G_u (k x R): B = Q^T A = T D, and B B^T = T G_d T^T. Small problems take the float64 route so the
  // reported residual is exact to float64 rounding; large ones use the SIMD products (residuals below ~1e-3 of
  // the norm are then at the float32 noise floor).
  const t = transpose(guC);
  const bbt = R * R * c.cols <= SMALL_CORE ? tGtT64(t, gd64) : matmul64Small(t, gd, t);
  const { values, vectors } = symmetricEigen(bbt);
  const r = Math.min(rank, c.cols);
  const { left, right, sigma, residualSquared } = coreFactors(values, vectors, r, normSquared);
  return {
    up: matmul(u, matmul(c, left)),
    down: matmul(matmul(right, t), d),
    sigma,
    normSquared,
    residualSquared,
  };
}

/** ||U D||_F^2 = sum of G_u o G_d (elementwise), without forming U D. */
export function factoredNormSquared(u: Matrix, d: Matrix): number {
  const gu = gramTN(u);
  const gd = gramNT(d);
  let s = 0;
  for (let i = 0; i < gu.data.length; i++) s += gu.data[i] * gd.data[i];
  return Math.max(0, s);
}

/**
 * Orthonormalise the columns of C in the metric G (C^T G C = I); two passes for an accurate final basis.
 * Returns G C as well: each pass forms G C for its Gram anyway, and G (C B) = (G C) B costs R k^2 instead of
 * R^2 k, which the caller reuses for its next product with G.
 */
function orthonormalizeIn(
  g64: Matrix64,
  c: Matrix,
  passes = 2,
  g = toMatrix32(g64),
): { c: Matrix; gc: Matrix } {
  let cur = c;
  let gc = matrix(c.rows, c.cols);
  for (let pass = 0; pass < passes; pass++) {
    gc = matmul(g, cur);
    const s = toMatrix64(matmul(transpose(cur), gc));
    symmetrize(s);
    const basis = inverseSqrtBasis(s, pass === 0 ? RANK_TOL : 1e-6);
    if (basis.cols === 0) return { c: matrix(c.rows, 0), gc: matrix(c.rows, 0) };
    const b32 = toMatrix32(basis);
    cur = matmul(cur, b32);
    gc = matmul(gc, b32);
  }
  return { c: cur, gc };
}

/** Largest R * R * k handled in plain float64 (a few ms of scalar JS). */
const SMALL_CORE = 2_000_000;

/** T G T^T entirely in float64. */
function tGtT64(t: Matrix, g: Matrix64): Matrix64 {
  const t64 = toMatrix64(t);
  const out = matmul64(matmul64(t64, g), transpose64(t64));
  symmetrize(out);
  return out;
}

/** T G T^T in float64 (k x k) from float32 T (k x R) and G (R x R). */
function matmul64Small(t: Matrix, g: Matrix, tAgain: Matrix): Matrix64 {
  const gtT = matmul(g, transpose(tAgain)); // R x k
  const out = toMatrix64(matmul(t, gtT));
  symmetrize(out);
  return out;
}

function symmetrize(s: Matrix64): void {
  const n = s.rows;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const v = (s.data[i * n + j] + s.data[j * n + i]) / 2;
      s.data[i * n + j] = v;
      s.data[j * n + i] = v;
    }
  }
}

function zeroLowRank(m: number, n: number, normSquared: number): LowRank {
  return {
    up: matrix(m, 0),
    down: matrix(0, n),
    sigma: new Float64Array(0),
    normSquared,
    residualSquared: normSquared,
  };
}

function squaredSum(data: Float32Array): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i] * data[i];
  return s;
}
