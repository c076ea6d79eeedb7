import { Rng } from "../src/math/random.ts";
import { matrix } from "../src/math/matrix.ts";
import { factoredSvd } from "../src/math/rsvd.ts";
for (let seed = 0; seed < 300; seed++) {
  const rng = new Rng(seed);
  const n = 10, R = 8;
  // orthonormal-ish: Gram-Schmidt columns
  const q1 = new Float64Array(n * R).map(() => rng.gaussian());
  const q2 = new Float64Array(n * R).map(() => rng.gaussian());
  for (const q of [q1, q2]) for (let j = 0; j < R; j++) {
    for (let c = 0; c < j; c++) { let d = 0; for (let i = 0; i < n; i++) d += q[i * R + c] * q[i * R + j]; for (let i = 0; i < n; i++) q[i * R + j] -= d * q[i * R + c]; }
    let s = 0; for (let i = 0; i < n; i++) s += q[i * R + j] ** 2; s = Math.sqrt(s); for (let i = 0; i < n; i++) q[i * R + j] /= s;
  }
  const u = matrix(n, R, Float32Array.from(q1));
  const dt = new Float32Array(R * n); for (let c = 0; c < R; c++) for (let i = 0; i < n; i++) dt[c * n + i] = q2[i * R + c];
  process.stderr.write(`seed ${seed}\r`);
  const t = Date.now();
  factoredSvd(u, matrix(R, n, dt), 2);
  if (Date.now() - t > 1000) console.log("slow seed", seed);
}
console.log("done");
