// The worker-pool paths (compressAdapterParallel, bakeCheckpoint with workers) against the in-thread ones, and
// the fused fp16 bake path against an independent float64 computation from the raw fixture bytes.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { readAdapter } from "../src/adapters/parse.ts";
import type { Adapter, AdapterModule } from "../src/adapters/types.ts";
import { Rng } from "../src/math/random.ts";
import { bakeCheckpoint } from "../src/merge/bake.ts";
import { compressAdapter, compressAdapterParallel } from "../src/merge/compress.ts";
import { MergeError } from "../src/merge/errors.ts";
import { stackAdapters } from "../src/merge/stack.ts";
import { f32ToF16, openSafetensors, writeSafetensors } from "../src/safetensors/index.ts";
import type { TensorToWrite } from "../src/safetensors/types.ts";

const fixtures = fileURLToPath(new URL("../../../../shared/fixtures/tiny-sd1/", import.meta.url));
const BASE = join(fixtures, "tiny-sd1.safetensors");
const LORA = join(fixtures, "lora/tiny-sd1-lora-kohya.safetensors");
const tmp = mkdtempSync(join(tmpdir(), "merge-parallel-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function randomLora(seed: number, rank: number): Adapter {
  const rng = new Rng(seed);
  const shapes: [string, number, number][] = [
    ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 96, 80],
    ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", 48, 64],
    ["mid_block.attentions.0.proj_in", 64, 64],
  ];
  const modules: AdapterModule[] = shapes.map(([path, out, inn]) => ({
    component: "unet",
    path,
    kind: "lora",
    layer: "linear",
    tensors: {
      down: { shape: [rank, inn], data: rng.gaussianArray(rank * inn, 0.1) },
      up: { shape: [out, rank], data: rng.gaussianArray(out * rank, 0.1) },
    },
    alpha: rank / 2,
  }));
  return { source: `r${seed}`, format: "kohya", family: "sd1", modules, metadata: {}, unknownKeys: [] };
}

test("compressAdapterParallel gives exactly compressAdapter's result (exact and sketched regimes)", async () => {
  const stack = stackAdapters(
    [1, 2, 3].map((s) => ({ adapter: randomLora(s, 12), te: 1, unet: 0.5 + s / 10 })),
  );
  for (const rank of [8, 30]) {
    const serial = compressAdapter(stack, rank);
    const done: number[] = [];
    const parallel = await compressAdapterParallel(stack, rank, {
      workers: 2,
      onProgress: (d) => done.push(d),
    });
    assert.deepEqual(parallel.report, serial.report, `report at rank ${rank}`);
    assert.deepEqual(parallel.adapter, serial.adapter, `factors at rank ${rank}`);
    assert.deepEqual(done, [1, 2, 3]);
  }
});

/** The fixture checkpoint with every float tensor stored as F16 (a realistic fp16 base for the fused path). */
async function fp16Base(): Promise<string> {
  const path = join(tmp, "tiny-sd1-fp16.safetensors");
  const file = await openSafetensors(BASE);
  try {
    const tensors: TensorToWrite[] = [];
    for (const t of file.tensors.values()) {
      const raw = await file.readRaw(t.name);
      tensors.push(
        t.dtype === "F32"
          ? { name: t.name, dtype: "F16", shape: t.shape, data: f32ToF16(await file.readFloat32(t.name)) }
          : { name: t.name, dtype: t.dtype, shape: t.shape, data: raw },
      );
    }
    await writeSafetensors(path, tensors, file.metadata);
  } finally {
    await file.close();
  }
  return path;
}

/** Half bits -> value, by the IEEE formula (independent of the project's tables). */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function rawTensors(path: string): Map<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const [k, v] of Object.entries(header) as [
    string,
    { dtype: string; shape: number[]; data_offsets: number[] },
  ][]) {
    if (k === "__metadata__") continue;
    out.set(k, {
      dtype: v.dtype,
      shape: v.shape,
      bytes: bytes.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]),
    });
  }
  return out;
}

test("fp16 bake: workers and in-thread outputs are byte-identical, weights within half an ulp of W + delta", async () => {
  const base = await fp16Base();
  const adapter = await readAdapter(LORA);
  const pooled = join(tmp, "pooled.safetensors");
  const single = join(tmp, "single.safetensors");
  const entries = [{ adapter, te: 1, unet: 0.8 }];
  const report = await bakeCheckpoint({ base, output: pooled, adapters: entries, workers: 2 });
  await bakeCheckpoint({ base, output: single, adapters: entries, workers: 0 });
  assert.ok(readFileSync(pooled).equals(readFileSync(single)), "pool and in-thread bakes must be identical");
  assert.ok(report.bakedTensors.length > 0);

  // Expected from raw bytes: the LoRA (F32 kohya) delta in float64, added to the decoded fp16 weight.
  const lora = rawTensors(LORA);
  const f32 = (b: Buffer) => new Float32Array(Uint8Array.from(b).buffer);
  const baseRaw = rawTensors(base);
  const bakedRaw = rawTensors(pooled);
  const baked = new Set(report.bakedTensors);
  const manifest = JSON.parse(readFileSync(join(fixtures, "tiny-sd1.keys.json"), "utf8")).keys as Record<
    string,
    { diffusers: string }
  >;
  let checked = 0;
  for (const [key, t] of baseRaw) {
    const out = bakedRaw.get(key)!;
    if (!baked.has(key)) {
      assert.ok(out.bytes.equals(t.bytes), `${key} must be byte-identical`);
      continue;
    }
    const w = new Uint16Array(Uint8Array.from(t.bytes).buffer);
    const wb = new Uint16Array(Uint8Array.from(out.bytes).buffer);
    // The kohya module of this weight, through the fixture's own original -> diffusers key manifest.
    const diffusers = manifest[key]?.diffusers ?? "";
    const name = `lora_unet_${diffusers
      .replace(/^unet:/, "")
      .replace(/\.weight$/, "")
      .replaceAll(".", "_")}`;
    let delta: Float64Array | undefined;
    for (const dk of [`${name}.lora_down.weight`].filter((k) => lora.has(k))) {
      const down = f32(lora.get(dk)!.bytes);
      const up = f32(lora.get(`${name}.lora_up.weight`)!.bytes);
      const r = lora.get(dk)!.shape[0];
      const alpha = lora.has(`${name}.alpha`) ? f32(lora.get(`${name}.alpha`)!.bytes)[0] : r;
      const inn = down.length / r;
      const outDim = up.length / r;
      if (outDim * inn !== w.length) continue;
      const s = (0.8 * alpha) / r;
      delta = new Float64Array(outDim * inn);
      for (let o = 0; o < outDim; o++)
        for (let i = 0; i < inn; i++) {
          let v = 0;
          for (let p = 0; p < r; p++) v += up[o * r + p] * down[p * inn + i];
          delta[o * inn + i] = s * v;
        }
    }
    assert.ok(delta, `no LoRA module found for ${key}`);
    for (let i = 0; i < w.length; i++) {
      const want = halfValue(w[i]) + delta[i];
      const got = halfValue(wb[i]);
      const ulp = 2 ** (Math.max(-14, Math.floor(Math.log2(Math.max(Math.abs(want), 2 ** -24)))) - 10);
      // Correct rounding of W + delta, up to the float32 steps before it (the delta and the sum are float32 by
      // design, so a value within a float32 ulp of a half tie may go either way).
      const slack = 0.5 * ulp + 1e-6 * Math.abs(delta[i]) + Math.abs(want) * 2 ** -23;
      assert.ok(Math.abs(got - want) <= slack, `${key}[${i}]: ${got} vs ${want}`);
      checked++;
    }
  }
  assert.ok(checked > 0, "some weights were checked");
});

test("a task error inside a worker comes back as the same typed MergeError", async () => {
  const base = await fp16Base();
  const adapter = randomLora(5, 4);
  // Wrong inner size for the target weight: the worker's shape check must fail with SHAPE_MISMATCH.
  const m = adapter.modules[0];
  m.tensors.down = { shape: [4, 7], data: new Float32Array(28) };
  await assert.rejects(
    bakeCheckpoint({ base, output: join(tmp, "bad.safetensors"), adapters: [{ adapter }], workers: 2 }),
    (err: unknown) => err instanceof MergeError && err.code === "SHAPE_MISMATCH" && /delta/.test(err.message),
  );
});
