/**
 * Symmetric eigen-decomposition (float64) for the small matrices of the merge code (Grams of sketches, r x r
 * cores): Householder reduction to tridiagonal form, then implicit QL sweeps with Wilkinson-style shifts.
 * O(n^3) with a small constant, accurate to float64 rounding; Jacobi would be 5-10x slower at n ~ 100.
 *
 * Storage note: eigenvectors are kept as ROWS (row i = eigenvector i) so every rotation touches two
 * contiguous rows instead of two strided columns.
 */
import type { Matrix64 } from "./matrix.ts";

export interface SymmetricEigen {
  /** Eigenvalues, descending. */
  values: Float64Array;
  /** n x n, row i is the unit eigenvector of values[i]. */
  vectors: Matrix64;
}

export function symmetricEigen(input: Matrix64): SymmetricEigen {
  const n = input.rows;
  if (input.cols !== n) throw new RangeError(`symmetricEigen: matrix is ${input.rows}x${input.cols}`);
  const a = Float64Array.from(input.data);
  // qt: rows are the columns of the accumulated orthogonal transform Q (A = Q T Q^T).
  const qt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) qt[i * n + i] = 1;
  const d = new Float64Array(n);
  const e = new Float64Array(n); // e[i] couples d[i] and d[i+1]
  tridiagonalize(a, qt, n, d, e);
  implicitQl(d, e, qt, n);

  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = d[src];
    vectors.set(qt.subarray(src * n, src * n + n), dst * n);
  });
  return { values, vectors: { rows: n, cols: n, data: vectors } };
}

/** In place: a (symmetric, row-major) becomes tridiagonal (d, e); qt accumulates the reflections. */
function tridiagonalize(
  a: Float64Array,
  qt: Float64Array,
  n: number,
  d: Float64Array,
  e: Float64Array,
): void {
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Reflector H = I - beta v v^T mapping a[k+1.., k] onto a multiple of e_{k+1}.
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[i * n + k] * a[i * n + k];
    const x0 = a[(k + 1) * n + k];
    const tail2 = norm2 - x0 * x0;
    if (tail2 <= Number.MIN_VALUE * 16) continue; // already tridiagonal in this column
    const alpha = x0 > 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    v.fill(0);
    v[k + 1] = x0 - alpha;
    for (let i = k + 2; i < n; i++) v[i] = a[i * n + k];
    const vtv = v[k + 1] * v[k + 1] + tail2;
    const beta = 2 / vtv;
    // p = beta A v ; w = p - (beta/2)(p.v) v ; A -= v w^T + w v^T (on the trailing block and column k).
    let pv = 0;
    for (let i = k; i < n; i++) {
      let s = 0;
      const row = i * n;
      for (let j = k + 1; j < n; j++) s += a[row + j] * v[j];
      p[i] = beta * s;
      pv += p[i] * v[i];
    }
    const half = (beta / 2) * pv;
    for (let i = k; i < n; i++) p[i] -= half * v[i];
    for (let i = k; i < n; i++) {
      const row = i * n;
      const vi = v[i];
      const wi = p[i];
      for (let j = k; j < n; j++) a[row + j] -= vi * p[j] + wi * v[j];
    }
    // qt <- H qt (rows k+1..n-1 change), row-wise so every access is contiguous.
    p.fill(0);
    for (let i = k + 1; i < n; i++) {
      const vi = v[i];
      const row = i * n;
      for (let c = 0; c < n; c++) p[c] += vi * qt[row + c];
    }
    for (let i = k + 1; i < n; i++) {
      const f = beta * v[i];
      const row = i * n;
      for (let c = 0; c < n; c++) qt[row + c] -= f * p[c];
    }
  }
  for (let i = 0; i < n; i++) {
    d[i] = a[i * n + i];
    e[i] = i + 1 < n ? a[i * n + i + 1] : 0;
  }
}

/** Diagonalises the tridiagonal (d, e) by implicit QL steps; rotations are applied to the rows of qt. */
function implicitQl(d: Float64Array, e: Float64Array, qt: Float64Array, n: number): void {
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      let m = l;
      for (; m < n - 1; m++) {
        const scale = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * scale) break;
      }
      if (m === l) break;
      if (iter > 60) throw new Error(`symmetricEigen: no convergence at index ${l}`);
      // Shift from the leading 2x2 block, chased down from m to l.
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let i = m - 1;
      let underflow = false;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= p;
          e[m] = 0;
          underflow = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        // Rotate rows i and i+1 of qt.
        const ri = i * n;
        const rj = ri + n;
        for (let k = 0; k < n; k++) {
          const x = qt[rj + k];
          const y = qt[ri + k];
          qt[rj + k] = s * y + c * x;
          qt[ri + k] = c * y - s * x;
        }
      }
      if (underflow) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
}
