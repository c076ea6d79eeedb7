/**
 * The weight delta of one adapted module, with each kind's scale rule as AUTOMATIC1111's Lora extension and
 * LyCORIS apply them (behaviour, not code, followed here):
 * - lora: up @ down (conv: k x k down, 1 x 1 up; with a CP `mid` the three are contracted), scale alpha / rank,
 *   rank = rows of down, no alpha = 1.0;
 * - loha: Hadamard product of (w1_a @ w1_b) and (w2_a @ w2_b); with hada_t1/t2 each factor is the Tucker
 *   product t[i,j,..] * a[i,out] * b[j,in]; scale alpha / rows of w1_b;
 * - lokr: Kronecker product of w1 (or w1_a @ w1_b) and w2 (or w2_a @ w2_b, or Tucker with lokr_t2); scale
 *   alpha / rows of w2_b (else of w1_b); with neither factor decomposed the scale is 1 whatever alpha says;
 * - full: diff itself, scale 1;
 * - a `scale` tensor (A1111 lets it override alpha / rank) is not read: such keys stay in unknownKeys;
 * - dora_scale: A1111 rescales the unscaled delta by weight decomposition — W' = dora_scale * (W + d) / ||W + d||,
 *   the norm taken per input channel for dora_scale shaped [1, in(, 1, 1)] (LyCORIS default) or per output row
 *   for [out, 1(, 1, 1)] — then applies scale x multiplier to (W' - W). It therefore needs the base weight.
 * Sums are accumulated in float64 and stored as float32.
 */
import { AdapterError } from "./errors.ts";
import type { AdapterModule, Tensor } from "./types.ts";

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** [m, k] x [k, n] row-major. */
function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      if (av === 0) continue;
      const off = p * n;
      for (let j = 0; j < n; j++) row[j] += av * b[off + j];
    }
    out.set(row, i * n);
  }
  return out;
}

function need(m: AdapterModule, name: string): Tensor {
  const t = m.tensors[name];
  if (!t)
    throw new AdapterError(
      "INCOMPLETE_MODULE",
      `${m.component} module ${m.path} (${m.kind}) lacks "${name}"`,
      m.path,
    );
  return t;
}

/** a [r, out] and b [r, in] factors with core t [r, r, kh, kw]: w[o, i, y, x] = sum t[p,q,y,x] a[p,o] b[q,i]. */
function tucker(t: Tensor, a: Tensor, b: Tensor): Tensor {
  const [r1, r2, kh, kw] = t.shape;
  const out = a.shape[1];
  const inn = b.shape[1];
  const kk = kh * kw;
  // tb[p, i, yx] = sum_q t[p, q, yx] b[q, i]
  const tb = new Float64Array(r1 * inn * kk);
  for (let p = 0; p < r1; p++)
    for (let q = 0; q < r2; q++)
      for (let i = 0; i < inn; i++) {
        const bv = b.data[q * inn + i];
        for (let s = 0; s < kk; s++) tb[(p * inn + i) * kk + s] += t.data[(p * r2 + q) * kk + s] * bv;
      }
  const w = new Float32Array(out * inn * kk);
  const acc = new Float64Array(inn * kk);
  for (let o = 0; o < out; o++) {
    acc.fill(0);
    for (let p = 0; p < r1; p++) {
      const av = a.data[p * out + o];
      for (let j = 0; j < inn * kk; j++) acc[j] += av * tb[p * inn * kk + j];
    }
    w.set(acc, o * inn * kk);
  }
  return { shape: [out, inn, kh, kw], data: w };
}

/** Product of two factors stored [rows, r] @ [r, ...]; returns [rows, rest of b flattened]. */
function product(a: Tensor, b: Tensor): Tensor {
  const m = a.shape[0];
  const k = numel(a.shape.slice(1));
  const n = numel(b.shape.slice(1));
  if (b.shape[0] !== k)
    throw new AdapterError("BAD_SHAPE", `factor shapes [${a.shape}] and [${b.shape}] do not chain`);
  return { shape: [m, n], data: matmul(a.data, b.data, m, k, n) };
}

function kron2d(a: Tensor, b: Tensor): Tensor {
  const [am, an] = [a.shape[0], numel(a.shape.slice(1))];
  const [bm, bn] = [b.shape[0], numel(b.shape.slice(1))];
  const rows = am * bm;
  const cols = an * bn;
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < am; i++)
    for (let j = 0; j < an; j++) {
      const av = a.data[i * an + j];
      for (let p = 0; p < bm; p++) {
        const base = (i * bm + p) * cols + j * bn;
        for (let q = 0; q < bn; q++) out[base + q] = av * b.data[p * bn + q];
      }
    }
  return { shape: [rows, cols], data: out };
}

function reshapeTo(t: Tensor, shape: number[] | undefined, m: AdapterModule): Tensor {
  if (!shape) return t;
  if (numel(shape) !== t.data.length) {
    throw new AdapterError(
      "BAD_SHAPE",
      `${m.path}: delta of ${t.data.length} values cannot take target shape [${shape}]`,
      m.path,
    );
  }
  return { shape: [...shape], data: t.data };
}

/** Unscaled delta and its scale factor (alpha / rank per kind). */
export function rawDelta(m: AdapterModule): { delta: Tensor; scale: number } {
  const alphaOver = (rank: number | undefined) =>
    m.alpha === undefined || rank === undefined ? 1 : m.alpha / rank;
  switch (m.kind) {
    case "lora": {
      const down = need(m, "down");
      const up = need(m, "up");
      const mid = m.tensors.mid;
      const rank = down.shape[0];
      const out = up.shape[0];
      if (mid) {
        // CP: up [out, r] . mid [r, r, kh, kw] . down [r, in]
        const inn = down.shape[1];
        const a: Tensor = { shape: [out, up.shape[1]], data: up.data };
        const aT = transpose(a);
        const b: Tensor = { shape: [down.shape[0], inn], data: down.data };
        return { delta: tucker(mid, aT, b), scale: alphaOver(rank) };
      }
      const flat = product({ shape: [out, numel(up.shape.slice(1))], data: up.data }, down);
      const shape =
        down.shape.length === 4 ? [out, down.shape[1], down.shape[2], down.shape[3]] : [out, down.shape[1]];
      return { delta: reshapeTo(flat, shape, m), scale: alphaOver(rank) };
    }
    case "loha": {
      const w1b = need(m, "hada_w1_b");
      const factor = (i: 1 | 2): Tensor => {
        const a = need(m, `hada_w${i}_a`);
        const b = need(m, `hada_w${i}_b`);
        const t = m.tensors[`hada_t${i}`];
        return t ? tucker(t, a, b) : product(a, b);
      };
      const w1 = factor(1);
      const w2 = factor(2);
      if (w1.data.length !== w2.data.length)
        throw new AdapterError("BAD_SHAPE", `${m.path}: LoHa factors differ in size`, m.path);
      const data = new Float32Array(w1.data.length);
      for (let i = 0; i < data.length; i++) data[i] = w1.data[i] * w2.data[i];
      // Without Tucker cores the factors are [out, in*kh*kw], unless w1_b itself keeps the kernel dims.
      const kept =
        w1b.shape.length === 4 ? [need(m, "hada_w1_a").shape[0], ...w1b.shape.slice(1)] : undefined;
      const shape = m.tensors.hada_t1 ? w1.shape : (kept ?? m.targetShape ?? w1.shape);
      return { delta: reshapeTo({ shape: w1.shape, data }, shape, m), scale: alphaOver(w1b.shape[0]) };
    }
    case "lokr": {
      const t = m.tensors;
      const w1 = t.lokr_w1 ?? product(need(m, "lokr_w1_a"), need(m, "lokr_w1_b"));
      let w2: Tensor;
      if (t.lokr_w2) w2 = t.lokr_w2;
      else if (t.lokr_t2) w2 = tucker(t.lokr_t2, need(m, "lokr_w2_a"), need(m, "lokr_w2_b"));
      else w2 = product(need(m, "lokr_w2_a"), need(m, "lokr_w2_b"));
      // kron over the flattened factors equals the 4-D kron of w1[:, :, 1, 1] with a conv w2, reshaped.
      const k = kron2d(w1, w2);
      const shape =
        w2.shape.length === 4
          ? [w1.shape[0] * w2.shape[0], w1.shape[1] * w2.shape[1], w2.shape[2], w2.shape[3]]
          : (m.targetShape ?? k.shape);
      // A1111 takes the rank from w1_b, then lets w2_b override it when both factors are decomposed.
      const rank = t.lokr_w2_b ? t.lokr_w2_b.shape[0] : t.lokr_w1_b ? t.lokr_w1_b.shape[0] : undefined;
      return { delta: reshapeTo(k, shape, m), scale: alphaOver(rank) };
    }
    case "full": {
      const diff = need(m, "diff");
      return { delta: { shape: [...diff.shape], data: diff.data }, scale: 1 };
    }
  }
}

function transpose(t: Tensor): Tensor {
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data: out };
}

/** A1111's weight decomposition: returns dora_scale * (W + d) / ||W + d|| - W (unscaled). */
function decompose(m: AdapterModule, delta: Tensor, base: Tensor): Tensor {
  const dora = m.doraScale as Tensor;
  if (numel(base.shape) !== delta.data.length) {
    throw new AdapterError(
      "BAD_SHAPE",
      `${m.path}: base weight [${base.shape}] does not match delta [${delta.shape}]`,
      m.path,
    );
  }
  const out = base.shape[0];
  const inn = base.shape[1];
  const kk = numel(base.shape.slice(2));
  const perInput = dora.shape[0] === 1 && numel(dora.shape) === inn && !(inn === 1 && out === 1);
  const merged = new Float64Array(delta.data.length);
  for (let i = 0; i < merged.length; i++) merged[i] = base.data[i] + delta.data[i];
  const axis = perInput ? inn : out;
  const norms = new Float64Array(axis);
  const idx = (o: number, i: number, s: number) => (o * inn + i) * kk + s;
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++)
      for (let s = 0; s < kk; s++) norms[perInput ? i : o] += merged[idx(o, i, s)] ** 2;
  const result = new Float32Array(merged.length);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++)
      for (let s = 0; s < kk; s++) {
        const a = perInput ? i : o;
        const j = idx(o, i, s);
        result[j] = (merged[j] * dora.data[a]) / Math.sqrt(norms[a]) - base.data[j];
      }
  return { shape: [...delta.shape], data: result };
}

/**
 * The weight delta of a module: scale x multiplier x (its kind's reconstruction), shaped like the target weight.
 * `baseWeight` is needed (and only used) when the module carries a dora_scale.
 */
export function moduleDelta(m: AdapterModule, multiplier = 1, baseWeight?: Tensor): Tensor {
  let { delta, scale } = rawDelta(m);
  if (m.doraScale) {
    if (!baseWeight) {
      throw new AdapterError(
        "NEEDS_BASE_WEIGHT",
        `${m.component} module ${m.path} has dora_scale: its delta needs the base weight`,
        m.path,
      );
    }
    delta = decompose(m, delta, baseWeight);
  }
  const f = scale * multiplier;
  const data = new Float32Array(delta.data.length);
  for (let i = 0; i < data.length; i++) data[i] = delta.data[i] * f;
  return { shape: delta.shape, data };
}

/** The bias delta of a full (diff_b) module, multiplier applied; undefined for other kinds. */
export function moduleBiasDelta(m: AdapterModule, multiplier = 1): Tensor | undefined {
  const b = m.tensors.diff_b;
  if (!b) return undefined;
  return { shape: [...b.shape], data: b.data.map((v) => v * multiplier) };
}

/**
 * A1111's `dyn` argument (`<lora:name:1:1:dyn>`): a LoRA applied with only its first `dyn` ranks, while the scale
 * keeps the full rank (alpha / rank of the file). Returned as a module whose alpha is adjusted so that
 * alpha' / dyn = alpha / rank. Other kinds and dyn >= rank come back unchanged.
 */
export function truncateRank(m: AdapterModule, dyn: number): AdapterModule {
  const down = m.tensors.down;
  const up = m.tensors.up;
  if (m.kind !== "lora" || !down || !up || m.tensors.mid || dyn >= down.shape[0]) return m;
  if (!Number.isInteger(dyn) || dyn < 1)
    throw new AdapterError("BAD_SHAPE", `dyn must be a positive integer, got ${dyn}`, m.path);
  const rank = down.shape[0];
  const perRow = down.data.length / rank;
  const upCols = up.data.length / up.shape[0];
  const upKernel = upCols / rank;
  const newUp = new Float32Array(up.shape[0] * dyn * upKernel);
  for (let o = 0; o < up.shape[0]; o++) {
    newUp.set(up.data.subarray(o * upCols, o * upCols + dyn * upKernel), o * dyn * upKernel);
  }
  return {
    ...m,
    tensors: {
      ...m.tensors,
      down: { shape: [dyn, ...down.shape.slice(1)], data: down.data.slice(0, dyn * perRow) },
      up: { shape: [up.shape[0], dyn, ...up.shape.slice(2)], data: newUp },
    },
    alpha: ((m.alpha ?? rank) * dyn) / rank,
  };
}
