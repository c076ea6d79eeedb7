import { gramNT, gramTN, matmul, matrix, transpose } from "../src/math/matrix.ts";
import { Rng } from "../src/math/random.ts";
import { factoredSvd } from "../src/math/rsvd.ts";
import { symmetricEigen } from "../src/math/eig.ts";
const r = new Rng(1);
for (const [out, inn] of [[10240, 1280], [1280, 1280], [768, 768]]) {
  const R = 320;
  const u = matrix(out, R, r.gaussianArray(out * R)), d = matrix(R, inn, r.gaussianArray(R * inn));
  let t = performance.now(); gramTN(u); const g1 = performance.now() - t;
  t = performance.now(); gramNT(d); const g2 = performance.now() - t;
  t = performance.now(); transpose(u); const tr = performance.now() - t;
  t = performance.now(); factoredSvd(u, d, 64); const all = performance.now() - t;
  t = performance.now(); const gu = gramTN(matrix(R, 74, r.gaussianArray(R*74))); symmetricEigen(gu); const e = performance.now() - t;
  t = performance.now(); matmul(u, matrix(R, 64, r.gaussianArray(R * 64))); const mo = performance.now() - t;
  console.log(out, inn, { g1, g2, tr, all, eig74: e, outMul: mo });
}
