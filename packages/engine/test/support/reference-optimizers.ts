// Closed-form optimizer updates in plain float64 TypeScript, written from the published update rules
// (PyTorch's torch.optim.AdamW / SGD documentation, Lion: Chen et al. 2023, "Symbolic Discovery of
// Optimization Algorithms", Algorithm 2). They are the independent side of the optimizer tests: the
// in-graph updates in src/optim/ must reproduce them, so nothing here imports from src/.

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** One AdamW step (decoupled weight decay, bias correction with 1-based `step`). Returns new p, m, v. */
export function adamwStep(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  m: ArrayLike<number>,
  v: ArrayLike<number>,
  step: number,
  h: AdamWHyper,
): { p: Float64Array<ArrayBuffer>; m: Float64Array<ArrayBuffer>; v: Float64Array<ArrayBuffer> } {
  const n = p.length;
  const out = { p: new Float64Array(n), m: new Float64Array(n), v: new Float64Array(n) };
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  for (let i = 0; i < n; i++) {
    const mi = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    const vi = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
    const decayed = p[i] * (1 - h.lr * h.weightDecay);
    out.p[i] = decayed - (h.lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + h.eps);
    out.m[i] = mi;
    out.v[i] = vi;
  }
  return out;
}

export interface SgdHyper {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

/** One SGD step with momentum buffer `b` (zero-initialised, dampening 0, coupled L2 weight decay like PyTorch). */
export function sgdStep(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  b: ArrayLike<number>,
  h: SgdHyper,
): { p: Float64Array<ArrayBuffer>; b: Float64Array<ArrayBuffer> } {
  const n = p.length;
  const out = { p: new Float64Array(n), b: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const gi = g[i] + h.weightDecay * p[i];
    const bi = h.momentum * b[i] + gi;
    const dir = h.nesterov ? gi + h.momentum * bi : bi;
    out.p[i] = p[i] - h.lr * dir;
    out.b[i] = bi;
  }
  return out;
}

export interface LionHyper {
  lr: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
}

/** One Lion step: sign of the interpolated momentum, decoupled weight decay, then the momentum update. */
export function lionStep(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  m: ArrayLike<number>,
  h: LionHyper,
): { p: Float64Array<ArrayBuffer>; m: Float64Array<ArrayBuffer> } {
  const n = p.length;
  const out = { p: new Float64Array(n), m: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const c = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    out.p[i] = p[i] * (1 - h.lr * h.weightDecay) - h.lr * Math.sign(c);
    out.m[i] = h.beta2 * m[i] + (1 - h.beta2) * g[i];
  }
  return out;
}

/** PyTorch's clip_grad_norm_: scale every gradient by min(1, maxNorm / (globalNorm + 1e-6)). */
export function clipByGlobalNorm(
  grads: ArrayLike<number>[],
  maxNorm: number,
): { grads: Float64Array[]; norm: number } {
  let sq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  const scale = Math.min(1, maxNorm / (norm + 1e-6));
  return { grads: grads.map((g) => Float64Array.from(g, (x) => x * scale)), norm };
}
