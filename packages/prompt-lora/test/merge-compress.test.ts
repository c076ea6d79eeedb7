import assert from "node:assert/strict";
import { test } from "node:test";
import { moduleDelta } from "../src/adapters/delta.ts";
import type { Adapter, AdapterModule } from "../src/adapters/types.ts";
import { Rng } from "../src/math/random.ts";
import { compressAdapter } from "../src/merge/compress.ts";
import { stackAdapters } from "../src/merge/stack.ts";
import { orthonormal as orthonormalFrom } from "./support/orthonormal.ts";

const rng = new Rng(77);

const orthonormal = (m: number, n: number): Float64Array => orthonormalFrom(rng, m, n);

const adapterOf = (modules: AdapterModule[], name: string): Adapter => ({
  source: name,
  format: "kohya",
  family: "sd1",
  modules,
  metadata: {},
  unknownKeys: [],
});

/**
 * Two rank-4 LoRAs whose stack (multipliers 0.6 and -1.5, alphas 2 and 8) has the known SVD Q1 diag(s) Q2^T:
 * adapter i holds columns 4i..4i+3, with its scale x multiplier divided out of its up.
 */
function knownStack(out: number, inn: number, s: number[], kernel = 1) {
  const q1 = orthonormal(out, 8);
  const q2 = orthonormal(inn * kernel * kernel, 8);
  const flatIn = inn * kernel * kernel;
  const specs = [
    { alpha: 2, mult: 0.6 },
    { alpha: 8, mult: -1.5 },
  ];
  const adapters = specs.map(({ alpha, mult }, a) => {
    const f = (alpha / 4) * mult;
    const up = new Float32Array(out * 4);
    const down = new Float32Array(4 * flatIn);
    for (let j = 0; j < 4; j++) {
      const c = a * 4 + j;
      for (let o = 0; o < out; o++) up[o * 4 + j] = (q1[o * 8 + c] * s[c]) / f;
      for (let i = 0; i < flatIn; i++) down[j * flatIn + i] = q2[i * 8 + c];
    }
    const m: AdapterModule = {
      component: "unet",
      path: "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v",
      kind: "lora",
      layer: kernel > 1 ? "conv" : "linear",
      tensors: {
        down: { shape: kernel > 1 ? [4, inn, kernel, kernel] : [4, inn], data: down },
        up: { shape: kernel > 1 ? [out, 4, 1, 1] : [out, 4], data: up },
      },
      alpha,
    };
    return { adapter: adapterOf([m], `a${a}`), te: 1, unet: mult };
  });
  // The exact delta, independently: Q1 diag(s) Q2^T.
  const delta = new Float64Array(out * flatIn);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < flatIn; i++) {
      let v = 0;
      for (let c = 0; c < 8; c++) v += q1[o * 8 + c] * s[c] * q2[i * 8 + c];
      delta[o * flatIn + i] = v;
    }
  return { entries: adapters, delta };
}

function frob(a: ArrayLike<number>, b?: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - (b ? b[i] : 0)) ** 2;
  return Math.sqrt(s);
}

test("compressing a rank-8 stack to rank 8 is exact", () => {
  const { entries, delta } = knownStack(40, 30, [3, 2.5, 2, 1.2, 1, 0.6, 0.3, 0.1]);
  const stacked = stackAdapters(entries);
  const { adapter, report } = compressAdapter(stacked, 8);
  const m = adapter.modules[0];
  assert.equal(m.tensors.down.shape[0], 8);
  assert.equal(m.alpha, 8);
  assert.ok(frob(moduleDelta(m).data, delta) < 1e-5 * frob(delta), "rank-8 delta reproduced");
  assert.equal(report.modules[0].relativeError, 0);
  assert.ok(Math.abs(report.modules[0].norm - frob(delta)) < 1e-5 * frob(delta), "norm");
});

test("compression to lower ranks leaves exactly the tail singular energy (Eckart-Young)", () => {
  const s = [3, 2.5, 2, 1.2, 1, 0.6, 0.3, 0.1];
  const { entries, delta } = knownStack(40, 30, s);
  const stacked = stackAdapters(entries);
  const total = Math.hypot(...s);
  for (let r = 1; r < 8; r++) {
    const { adapter, report } = compressAdapter(stacked, r);
    const m = adapter.modules[0];
    assert.deepEqual(m.tensors.down.shape, [r, 30]);
    assert.deepEqual(m.tensors.up.shape, [40, r]);
    const tail = Math.hypot(...s.slice(r));
    const direct = frob(moduleDelta(m).data, delta);
    assert.ok(
      Math.abs(direct - tail) < 1e-4 * total,
      `r=${r}: ||delta - delta_r|| = ${direct}, tail = ${tail}`,
    );
    assert.ok(Math.abs(report.modules[0].relativeError - tail / total) < 1e-4, `r=${r}: reported error`);
    assert.ok(Math.abs(report.totalRelativeError - tail / total) < 1e-4, `r=${r}: total error`);
  }
});

test("conv stacks compress to down [r, in, kh, kw] and up [out, r, 1, 1] with the same optimal error", () => {
  const s = [4, 3, 2, 1, 0.5, 0.25, 0.125, 0.0625];
  const { entries, delta } = knownStack(12, 5, s, 3);
  const { adapter, report } = compressAdapter(stackAdapters(entries), 3);
  const m = adapter.modules[0];
  assert.deepEqual(m.tensors.down.shape, [3, 5, 3, 3]);
  assert.deepEqual(m.tensors.up.shape, [12, 3, 1, 1]);
  const tail = Math.hypot(...s.slice(3));
  assert.ok(Math.abs(frob(moduleDelta(m).data, delta) - tail) < 1e-4 * Math.hypot(...s), "conv error");
  assert.ok(Math.abs(report.modules[0].relativeError - tail / Math.hypot(...s)) < 1e-4, "conv reported");
});

test("high-rank stacks use the sketched path: near-optimal, and the reported error is the true one", () => {
  // Rank 48 with a decaying spectrum, compressed to 6 (R > r + oversample).
  const out = 64;
  const inn = 50;
  const R = 48;
  const q1 = orthonormal(out, R);
  const q2 = orthonormal(inn, R);
  const s = Array.from({ length: R }, (_, i) => 0.85 ** i);
  const up = new Float32Array(out * R);
  const down = new Float32Array(R * inn);
  for (let c = 0; c < R; c++) {
    for (let o = 0; o < out; o++) up[o * R + c] = q1[o * R + c] * s[c];
    for (let i = 0; i < inn; i++) down[c * inn + i] = q2[i * R + c];
  }
  const m: AdapterModule = {
    component: "te",
    path: "text_model.encoder.layers.0.mlp.fc2",
    kind: "lora",
    layer: "linear",
    tensors: { down: { shape: [R, inn], data: down }, up: { shape: [out, R], data: up } },
  };
  const delta = moduleDelta(m).data;
  const { adapter, report } = compressAdapter(adapterOf([m], "big"), 6, { seed: 4 });
  const tail = Math.hypot(...s.slice(6));
  const direct = frob(moduleDelta(adapter.modules[0]).data, delta);
  assert.ok(direct < tail * 1.01, `error ${direct} vs optimal ${tail}`);
  assert.ok(Math.abs(report.modules[0].relativeError * frob(delta) - direct) < 1e-3 * tail, "reported");
});

test("full / LoHa modules are compressed from their delta by randomized SVD", () => {
  const loha: AdapterModule = {
    component: "unet",
    path: "mid_block.attentions.0.transformer_blocks.0.ff.net.2",
    kind: "loha",
    layer: "linear",
    tensors: {
      hada_w1_a: { shape: [30, 2], data: rng.gaussianArray(60) },
      hada_w1_b: { shape: [2, 20], data: rng.gaussianArray(40) },
      hada_w2_a: { shape: [30, 2], data: rng.gaussianArray(60) },
      hada_w2_b: { shape: [2, 20], data: rng.gaussianArray(40) },
    },
    alpha: 1,
  };
  const delta = moduleDelta(loha).data; // Hadamard product of two rank-2 matrices: rank <= 4
  const { adapter, report } = compressAdapter(adapterOf([loha], "loha"), 4);
  assert.equal(adapter.modules[0].kind, "lora");
  assert.ok(frob(moduleDelta(adapter.modules[0]).data, delta) < 1e-5 * frob(delta), "loha rank 4 exact");
  assert.ok(report.modules[0].relativeError < 1e-5, `reported ${report.modules[0].relativeError}`);
  const low = compressAdapter(adapterOf([loha], "loha"), 2);
  const direct = frob(moduleDelta(low.adapter.modules[0]).data, delta) / frob(delta);
  assert.ok(
    Math.abs(low.report.modules[0].relativeError - direct) < 1e-4,
    `${low.report.modules[0].relativeError} vs ${direct}`,
  );
});

test("compressAdapter reports progress per module and rejects bad ranks", () => {
  const { entries } = knownStack(10, 10, [1, 1, 1, 1, 1, 1, 1, 1]);
  const calls: [number, number][] = [];
  compressAdapter(stackAdapters(entries), 2, { onProgress: (d, t) => calls.push([d, t]) });
  assert.deepEqual(calls, [[1, 1]]);
  assert.throws(() => compressAdapter(stackAdapters(entries), 0), { code: "BAD_RANK" });
});
