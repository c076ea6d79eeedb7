import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { readAdapter } from "../src/adapters/parse.ts";
import { bakeCheckpoint } from "../src/merge/bake.ts";
import { extractAdapter } from "../src/merge/extract.ts";

const fixtures = fileURLToPath(new URL("../../../../shared/fixtures/tiny-sd1/", import.meta.url));
const BASE = join(fixtures, "tiny-sd1.safetensors");
const DIFFUSERS = join(fixtures, "diffusers");
const LORA = join(fixtures, "lora/tiny-sd1-lora-kohya.safetensors");
const LORA_ALPHA1 = join(fixtures, "lora/tiny-sd1-lora-kohya-alpha1.safetensors");
const tmp = mkdtempSync(join(tmpdir(), "merge-bake-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

// --- An independent minimal safetensors reader (not the project's) -------------------------------------------
interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
interface Raw {
  bytes: Buffer;
  start: number;
  header: Record<string, Entry> & { __metadata__?: Record<string, string> };
  keys: string[];
}
function readRawFile(path: string): Raw {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  return { bytes, start: 8 + n, header, keys: Object.keys(header).filter((k) => k !== "__metadata__") };
}
const rawBytes = (f: Raw, key: string) => {
  const [a, b] = f.header[key].data_offsets;
  return f.bytes.subarray(f.start + a, f.start + b);
};
function f32(f: Raw, key: string): Float32Array {
  assert.equal(f.header[key].dtype, "F32", `${key} dtype`);
  const b = Buffer.from(rawBytes(f, key)); // aligned copy
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

/** kohya module name -> (original key, diffusers unet key), from the fixture's own key manifest. */
function kohyaTargets(): Map<string, { original: string; diffusers: string }> {
  const manifest = JSON.parse(readFileSync(join(fixtures, "tiny-sd1.keys.json"), "utf8")).keys as Record<
    string,
    { diffusers: string }
  >;
  const out = new Map<string, { original: string; diffusers: string }>();
  for (const [original, v] of Object.entries(manifest)) {
    const [component, name] = v.diffusers.split(":");
    if (component !== "unet" || !name.endsWith(".weight")) continue;
    const path = name.slice(0, -".weight".length);
    out.set(`lora_unet_${path.replaceAll(".", "_")}`, { original, diffusers: name });
  }
  return out;
}

/** multiplier * alpha / rank * up @ down per kohya module, float64, flattened (conv 1x1 weights are the same). */
function loraDeltas(path: string, multiplier: number): Map<string, Float64Array> {
  const f = readRawFile(path);
  const out = new Map<string, Float64Array>();
  for (const key of f.keys) {
    if (!key.endsWith(".lora_down.weight")) continue;
    const name = key.slice(0, -".lora_down.weight".length);
    const down = f32(f, key);
    const up = f32(f, `${name}.lora_up.weight`);
    const [r] = f.header[key].shape;
    const inn = down.length / r;
    const outDim = up.length / r;
    const alpha = f.keys.includes(`${name}.alpha`) ? f32(f, `${name}.alpha`)[0] : r;
    const s = (multiplier * alpha) / r;
    const d = new Float64Array(outDim * inn);
    for (let o = 0; o < outDim; o++)
      for (let i = 0; i < inn; i++) {
        let v = 0;
        for (let p = 0; p < r; p++) v += up[o * r + p] * down[p * inn + i];
        d[o * inn + i] = s * v;
      }
    out.set(name, d);
  }
  return out;
}

function sumDeltas(...maps: Map<string, Float64Array>[]): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const m of maps)
    for (const [k, d] of m) {
      const acc = out.get(k) ?? new Float64Array(d.length);
      for (let i = 0; i < d.length; i++) acc[i] += d[i];
      out.set(k, acc);
    }
  return out;
}

/** Checks every baked tensor against W + delta and every other tensor for byte identity; returns #baked. */
function checkBaked(
  base: Raw,
  baked: Raw,
  expected: Map<string, Float64Array>,
  keyOf: (kohya: string) => string,
): number {
  assert.deepEqual(baked.keys, base.keys, "same tensors, same order");
  const targeted = new Map([...expected].map(([k, d]) => [keyOf(k), d]));
  for (const key of base.keys) {
    assert.equal(baked.header[key].dtype, base.header[key].dtype, `${key} dtype`);
    assert.deepEqual(baked.header[key].shape, base.header[key].shape, `${key} shape`);
    const d = targeted.get(key);
    if (!d) {
      assert.ok(rawBytes(baked, key).equals(rawBytes(base, key)), `${key} must be byte-identical`);
      continue;
    }
    const w = f32(base, key);
    const wb = f32(baked, key);
    assert.equal(w.length, d.length, `${key} delta size`);
    for (let i = 0; i < w.length; i++) {
      const want = w[i] + d[i];
      assert.ok(
        Math.abs(wb[i] - want) <= 1e-6 * Math.max(1, Math.abs(want)),
        `${key}[${i}]: ${wb[i]} vs ${want}`,
      );
    }
  }
  return targeted.size;
}

const targets = kohyaTargets();
const bakedFile = join(tmp, "baked.safetensors");

test("bake (original layout): W + scale * up @ down on every targeted weight, everything else byte-identical", async () => {
  const adapter = await readAdapter(LORA);
  const progress: number[] = [];
  const report = await bakeCheckpoint({
    base: BASE,
    output: bakedFile,
    adapters: [{ adapter, te: 1, unet: 0.8 }],
    onProgress: (done, total) => progress.push(done / total),
  });
  const base = readRawFile(BASE);
  const baked = readRawFile(bakedFile);
  const n = checkBaked(base, baked, loraDeltas(LORA, 0.8), (k) => targets.get(k)!.original);
  assert.equal(n, 88);
  assert.equal(report.bakedTensors.length, 88);
  assert.deepEqual(report.unmatchedModules, []);
  assert.equal(baked.header.__metadata__, base.header.__metadata__, "metadata kept (the base has none)");
  assert.equal(progress.at(-1), 1, "progress reaches the total");
});

test("bake (diffusers folder): a two-LoRA stack with its own multipliers; other files copied unchanged", async () => {
  const out = join(tmp, "diffusers-baked");
  const entries = [
    { adapter: await readAdapter(LORA), te: 1, unet: 0.6 },
    { adapter: await readAdapter(LORA_ALPHA1), te: 1, unet: -1.5 },
  ];
  await bakeCheckpoint({ base: DIFFUSERS, output: out, adapters: entries });
  const files = (dir: string): string[] =>
    readdirSync(dir, { recursive: true, encoding: "utf8" })
      .filter((f) => statSync(join(dir, f)).isFile())
      .map((f) => relative(dir, join(dir, f)))
      .sort();
  assert.deepEqual(files(out), files(DIFFUSERS));
  const unetFile = "unet/diffusion_pytorch_model.safetensors";
  for (const f of files(DIFFUSERS)) {
    if (f === unetFile) continue;
    assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(DIFFUSERS, f))), `${f} copied unchanged`);
  }
  const base = readRawFile(join(DIFFUSERS, unetFile));
  const baked = readRawFile(join(out, unetFile));
  const expected = sumDeltas(loraDeltas(LORA, 0.6), loraDeltas(LORA_ALPHA1, -1.5));
  assert.equal(
    checkBaked(base, baked, expected, (k) => targets.get(k)!.diffusers),
    88,
  );
  assert.deepEqual(baked.header.__metadata__, base.header.__metadata__, "metadata kept");
  await assert.rejects(bakeCheckpoint({ base: DIFFUSERS, output: out, adapters: entries }), {
    code: "OUTPUT_EXISTS",
  });
});

test("bake refuses to write over its base", async () => {
  const adapter = await readAdapter(LORA);
  await assert.rejects(
    bakeCheckpoint({ base: BASE, output: BASE, adapters: [{ adapter }], overwrite: true }),
    {
      name: "MergeError",
      code: "OUTPUT_IS_BASE",
    },
  );
});

test("extract(base, baked, rank 4) recovers the LoRA's delta", async () => {
  const adapter = await extractAdapter({ base: BASE, tuned: bakedFile, rank: 4, family: "sd1" });
  const expected = loraDeltas(LORA, 0.8);
  assert.equal(adapter.modules.length, expected.size, "exactly the modules the LoRA touched");
  for (const m of adapter.modules) {
    const name = `lora_unet_${m.path.replaceAll(".", "_")}`;
    const want = expected.get(name);
    assert.ok(want, `unexpected module ${name}`);
    assert.equal(m.alpha, 4);
    const down = m.tensors.down.data;
    const up = m.tensors.up.data;
    const inn = down.length / 4;
    let scale = 0;
    for (const v of want) scale = Math.max(scale, Math.abs(v));
    for (let o = 0; o < up.length / 4; o++)
      for (let i = 0; i < inn; i++) {
        let v = 0;
        for (let p = 0; p < 4; p++) v += up[o * 4 + p] * down[p * inn + i];
        const w = want[o * inn + i];
        assert.ok(Math.abs(v - w) <= 1e-4 * scale + 1e-6, `${name}[${o},${i}]: ${v} vs ${w}`);
      }
  }
});
