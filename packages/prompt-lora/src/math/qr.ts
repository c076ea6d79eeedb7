/**
 * Householder QR (float64) of a tall matrix: A = Q R with Q m x n orthonormal, R n x n upper triangular.
 * Numerically the most robust orthonormalisation (orthogonality to float64 rounding whatever the condition
 * number), used for the exact small factorizations; the large sketches use `orthonormalizeColumns`
 * (rsvd.ts), which runs on the SIMD kernel.
 *
 * Works on the transpose so that each column is a contiguous row.
 */
import type { Matrix64 } from "./matrix.ts";

export interface QR {
  q: Matrix64;
  r: Matrix64;
}

export function householderQr(a: Matrix64): QR {
  const { rows: m, cols: n } = a;
  if (m < n) throw new RangeError(`householderQr: needs rows >= cols, got ${m}x${n}`);
  // cols[j] = column j of A (length m).
  const cols = new Float64Array(n * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) cols[j * m + i] = a.data[i * n + j];
  const vs = new Float64Array(n * m); // reflector j in row j (entries j..m-1)
  const betas = new Float64Array(n);
  const r = new Float64Array(n * n);

  for (let j = 0; j < n; j++) {
    const cj = j * m;
    let norm2 = 0;
    for (let i = j; i < m; i++) norm2 += cols[cj + i] * cols[cj + i];
    const x0 = cols[cj + j];
    const alpha = x0 > 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    const vj = j * m;
    vs[vj + j] = x0 - alpha;
    for (let i = j + 1; i < m; i++) vs[vj + i] = cols[cj + i];
    const vtv = vs[vj + j] * vs[vj + j] + (norm2 - x0 * x0);
    betas[j] = vtv > 0 ? 2 / vtv : 0;
    cols[cj + j] = alpha;
    for (let i = j + 1; i < m; i++) cols[cj + i] = 0;
    // Apply H_j to the remaining columns.
    for (let c = j + 1; c < n; c++) {
      const cc = c * m;
      let s = 0;
      for (let i = j; i < m; i++) s += vs[vj + i] * cols[cc + i];
      s *= betas[j];
      if (s !== 0) for (let i = j; i < m; i++) cols[cc + i] -= s * vs[vj + i];
    }
  }
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) r[i * n + j] = cols[j * m + i];

  // Q = H_0 H_1 ... H_{n-1} [I; 0], built column by column (columns contiguous in qc).
  const qc = new Float64Array(n * m);
  for (let c = 0; c < n; c++) {
    const cc = c * m;
    qc[cc + c] = 1;
    for (let j = Math.min(c, n - 1); j >= 0; j--) {
      const vj = j * m;
      let s = 0;
      for (let i = j; i < m; i++) s += vs[vj + i] * qc[cc + i];
      s *= betas[j];
      if (s !== 0) for (let i = j; i < m; i++) qc[cc + i] -= s * vs[vj + i];
    }
  }
  const q = new Float64Array(m * n);
  for (let c = 0; c < n; c++) for (let i = 0; i < m; i++) q[i * n + c] = qc[c * m + i];
  return { q: { rows: m, cols: n, data: q }, r: { rows: n, cols: n, data: r } };
}
