/** Test helper, independent of src/math: the reference a spectrum is built from. */
import type { Rng } from "../../src/math/random.ts";

/** m x n with orthonormal columns by modified Gram-Schmidt (twice), in float64. */
export function orthonormal(rng: Rng, m: number, n: number): Float64Array {
  const cols: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const v = new Float64Array(m).map(() => rng.gaussian());
    for (let pass = 0; pass < 2; pass++)
      for (const c of cols) {
        let d = 0;
        for (let i = 0; i < m; i++) d += c[i] * v[i];
        for (let i = 0; i < m; i++) v[i] -= d * c[i];
      }
    const norm = Math.hypot(...v);
    cols.push(v.map((x) => x / norm));
  }
  const out = new Float64Array(m * n);
  for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) out[i * n + j] = cols[j][i];
  return out;
}
