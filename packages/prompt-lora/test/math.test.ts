import assert from "node:assert/strict";
import { test } from "node:test";
import { symmetricEigen } from "../src/math/eig.ts";
import { gramNT, gramTN, type Matrix, matmul, matmulNT, matmulTN, matrix } from "../src/math/matrix.ts";
import { householderQr } from "../src/math/qr.ts";
import { Rng } from "../src/math/random.ts";
import { factoredSvd, orthonormalizeColumns, randomizedSvd } from "../src/math/rsvd.ts";
import { orthonormal } from "./support/orthonormal.ts";

// Independent reference algebra in float64, written plainly (no shared code with src/math).
function naiveMul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      c[i * n + j] = s;
    }
  return c;
}

function naiveT(a: ArrayLike<number>, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

function randomMatrix(rng: Rng, m: number, n: number): Matrix {
  return matrix(m, n, rng.gaussianArray(m * n));
}

/** Q1 diag(s) Q2^T (m x n) as float32, plus its factors. */
function knownSpectrum(rng: Rng, m: number, n: number, s: number[]) {
  const r = s.length;
  const q1 = orthonormal(rng, m, r);
  const q2 = orthonormal(rng, n, r);
  const us = new Float64Array(m * r);
  for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) us[i * r + j] = q1[i * r + j] * s[j];
  const a = naiveMul(us, naiveT(q2, n, r), m, r, n);
  return { a: matrix(m, n, Float32Array.from(a)), us, q2t: naiveT(q2, n, r) };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test("matmul family matches a float64 reference on ragged shapes and long inner dimensions", () => {
  const rng = new Rng(7);
  for (const [m, k, n] of [
    [1, 1, 1],
    [3, 5, 7],
    [17, 33, 31],
    [9, 1300, 21],
  ]) {
    const a = randomMatrix(rng, m, k);
    const b = randomMatrix(rng, k, n);
    const ref = naiveMul(a.data, b.data, m, k, n);
    const tol = 1e-5 * Math.sqrt(k);
    assert.ok(maxAbsDiff(matmul(a, b).data, ref) < tol, `matmul ${m}x${k}x${n}`);
    const at = matrix(k, m, Float32Array.from(naiveT(a.data, m, k)));
    assert.ok(maxAbsDiff(matmulTN(at, b).data, ref) < tol, `matmulTN ${m}x${k}x${n}`);
    const bt = matrix(n, k, Float32Array.from(naiveT(b.data, k, n)));
    assert.ok(maxAbsDiff(matmulNT(a, bt).data, ref) < tol, `matmulNT ${m}x${k}x${n}`);
  }
});

test("Gram matrices equal A^T A and A A^T, symmetric", () => {
  const rng = new Rng(8);
  const a = randomMatrix(rng, 700, 83);
  const ref = naiveMul(naiveT(a.data, 700, 83), a.data, 83, 700, 83);
  const g = gramTN(a);
  assert.ok(maxAbsDiff(g.data, ref) < 1e-3, "A^T A");
  const gn = gramNT(matrix(83, 700, Float32Array.from(naiveT(a.data, 700, 83))));
  assert.ok(maxAbsDiff(gn.data, ref) < 1e-3, "A A^T");
  for (let i = 0; i < 83; i++)
    for (let j = 0; j < 83; j++) assert.equal(g.data[i * 83 + j], g.data[j * 83 + i]);
});

test("Householder QR: Q orthonormal, R upper triangular, QR = A", () => {
  const rng = new Rng(9);
  for (const [m, n] of [
    [1, 1],
    [6, 6],
    [50, 12],
    [200, 60],
  ]) {
    const a = new Float64Array(m * n).map(() => rng.gaussian());
    const { q, r } = householderQr({ rows: m, cols: n, data: a });
    const qtq = naiveMul(naiveT(q.data, m, n), q.data, n, m, n);
    const eye = new Float64Array(n * n).map((_, i) => (i % (n + 1) === 0 ? 1 : 0));
    assert.ok(maxAbsDiff(qtq, eye) < 1e-12, `orthogonality ${m}x${n}`);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(r.data[i * n + j], 0);
    assert.ok(maxAbsDiff(naiveMul(q.data, r.data, m, n, n), a) < 1e-11, `reconstruction ${m}x${n}`);
  }
  // Rank-deficient input still gives an orthonormal Q and exact reconstruction.
  const a = new Float64Array(10 * 4);
  for (let i = 0; i < 10; i++) a[i * 4] = a[i * 4 + 1] = i + 1;
  const { q, r } = householderQr({ rows: 10, cols: 4, data: a });
  assert.ok(maxAbsDiff(naiveMul(q.data, r.data, 10, 4, 4), a) < 1e-12, "check 1");
});

test("symmetric eigen-solver recovers a known spectrum and satisfies A v = lambda v", () => {
  const rng = new Rng(10);
  for (const n of [1, 2, 5, 40, 120]) {
    const lambdas = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1 : 1) * (n - i) * 0.5);
    if (n > 5) lambdas[3] = lambdas[4]; // a repeated eigenvalue
    const q = orthonormal(rng, n, n);
    const ql = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) ql[i * n + j] = q[i * n + j] * lambdas[j];
    const a = naiveMul(ql, naiveT(q, n, n), n, n, n);
    const { values, vectors } = symmetricEigen({ rows: n, cols: n, data: a });
    const sorted = [...lambdas].sort((x, y) => y - x);
    assert.ok(maxAbsDiff(values, sorted) < 1e-10 * n, `eigenvalues n=${n}`);
    for (let j = 0; j < n; j++) {
      const v = vectors.data.subarray(j * n, j * n + n);
      const av = naiveMul(a, v, n, n, 1);
      assert.ok(
        maxAbsDiff(
          av,
          v.map((x) => x * values[j]),
        ) <
          1e-10 * n,
        `A v = lambda v, n=${n}, j=${j}`,
      );
    }
    const vvt = naiveMul(vectors.data, naiveT(vectors.data, n, n), n, n, n);
    const eye = new Float64Array(n * n).map((_, i) => (i % (n + 1) === 0 ? 1 : 0));
    assert.ok(maxAbsDiff(vvt, eye) < 1e-12 * n, `orthonormal vectors n=${n}`);
  }
});

test("orthonormalizeColumns drops dependent directions and returns an orthonormal basis of the span", () => {
  const rng = new Rng(11);
  const base = randomMatrix(rng, 300, 5);
  const mix = randomMatrix(rng, 5, 9); // 9 columns spanning a 5-dim space
  const y = matmul(base, mix);
  const q = orthonormalizeColumns(y);
  assert.equal(q.cols, 5);
  const qtq = naiveMul(naiveT(q.data, 300, 5), q.data, 5, 300, 5);
  const eye = new Float64Array(25).map((_, i) => (i % 6 === 0 ? 1 : 0));
  assert.ok(maxAbsDiff(qtq, eye) < 1e-5, "check 2");
  // Projection of y onto span(q) is y itself.
  const qty = naiveMul(naiveT(q.data, 300, 5), y.data, 5, 300, 9);
  const proj = naiveMul(q.data, qty, 300, 5, 9);
  assert.ok(maxAbsDiff(proj, y.data) < 1e-4 * Math.max(...y.data.map(Math.abs)), "check 3");
});

test("randomized SVD matches a known spectrum: singular values, residual energy, reconstruction", () => {
  const rng = new Rng(12);
  const s = Array.from({ length: 30 }, (_, i) => 10 * 0.8 ** i);
  const { a } = knownSpectrum(rng, 260, 190, s);
  const r = 8;
  const res = randomizedSvd(a, r, { seed: 3 });
  for (let i = 0; i < r; i++) assert.ok(Math.abs(res.sigma[i] - s[i]) < 1e-4 * s[0], `sigma ${i}`);
  const tail = s.slice(r).reduce((acc, x) => acc + x * x, 0);
  const norm = s.reduce((acc, x) => acc + x * x, 0);
  assert.ok(Math.abs(res.normSquared - norm) < 1e-4 * norm, "check 4");
  assert.ok(Math.abs(res.residualSquared - tail) < 1e-3 * tail, `${res.residualSquared} vs ${tail}`);
  // The residual reported equals the residual of the returned factors, computed directly.
  const approx = naiveMul(res.up.data, res.down.data, 260, r, 190);
  let direct = 0;
  for (let i = 0; i < approx.length; i++) direct += (a.data[i] - approx[i]) ** 2;
  assert.ok(
    Math.abs(direct - res.residualSquared) < 1e-3 * tail,
    `direct ${direct} vs ${res.residualSquared}`,
  );
  // Balanced kohya split: the column norms of up equal the row norms of down (both sqrt(sigma)).
  for (let j = 0; j < r; j++) {
    let cu = 0;
    let rd = 0;
    for (let i = 0; i < 260; i++) cu += res.up.data[i * r + j] ** 2;
    for (let i = 0; i < 190; i++) rd += res.down.data[j * 190 + i] ** 2;
    assert.ok(Math.abs(cu - s[j]) < 1e-3 * s[j] && Math.abs(rd - s[j]) < 1e-3 * s[j], `split ${j}`);
  }
});

test("randomized SVD is deterministic for a seed and exact for a matrix of rank <= r", () => {
  const rng = new Rng(13);
  const { a } = knownSpectrum(rng, 80, 120, [5, 3, 2, 1]);
  const x = randomizedSvd(a, 4, { seed: 9 });
  const y = randomizedSvd(a, 4, { seed: 9 });
  assert.deepEqual(x.up.data, y.up.data);
  assert.ok(x.residualSquared < 1e-9 * x.normSquared, "check 5");
  const approx = naiveMul(x.up.data, x.down.data, 80, 4, 120);
  assert.ok(maxAbsDiff(approx, a.data) < 1e-5, "check 6");
});

test("factoredSvd of U D equals the truncated SVD of the product (exact and sketched regimes)", () => {
  const rng = new Rng(14);
  const s = Array.from({ length: 24 }, (_, i) => 4 * 0.7 ** i);
  const { a, us, q2t } = knownSpectrum(rng, 150, 110, s);
  // Scramble the factorisation with an invertible R x R mix so U, D are not already orthogonal.
  const mix = randomMatrix(rng, 24, 24);
  const mixInvT = householderQr({ rows: 24, cols: 24, data: Float64Array.from(mix.data) });
  // U' = U Qm, D' = Qm^T D with Qm orthogonal (from QR of the mix): U' D' = U D.
  const qm = mixInvT.q.data;
  const u = matrix(150, 24, Float32Array.from(naiveMul(us, qm, 150, 24, 24)));
  const d = matrix(24, 110, Float32Array.from(naiveMul(naiveT(qm, 24, 24), q2t, 24, 24, 110)));
  for (const [rank, oversample] of [
    [24, 10],
    [6, 30],
    [6, 6],
  ]) {
    const res = factoredSvd(u, d, rank, { oversample, seed: 5 });
    for (let i = 0; i < rank; i++)
      assert.ok(Math.abs(res.sigma[i] - s[i]) < 2e-4 * s[0], `sigma ${i} r=${rank}`);
    const tail = s.slice(rank).reduce((acc, x) => acc + x * x, 0);
    const norm = s.reduce((acc, x) => acc + x * x, 0);
    assert.ok(Math.abs(res.normSquared - norm) < 1e-5 * norm, "check 7");
    const approx = naiveMul(res.up.data, res.down.data, 150, rank, 110);
    let direct = 0;
    for (let i = 0; i < approx.length; i++) direct += (a.data[i] - approx[i]) ** 2;
    assert.ok(Math.abs(direct - tail) < 1e-3 * tail + 1e-7 * norm, `r=${rank}: ${direct} vs ${tail}`);
    assert.ok(Math.abs(res.residualSquared - tail) < 1e-3 * tail + 1e-6 * norm, `reported r=${rank}`);
  }
});

test("Rng: same seed same stream, Gaussians have mean 0 and variance 1", () => {
  const a = new Rng(42).gaussianArray(20000);
  assert.deepEqual(a, new Rng(42).gaussianArray(20000));
  assert.notDeepEqual(a.subarray(0, 10), new Rng(43).gaussianArray(10));
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  const variance = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.04, `${mean} ${variance}`);
});
