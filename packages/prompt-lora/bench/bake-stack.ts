// Bake a 3-LoRA stack into a generated ~2 GB SD1.5 checkpoint (fp16, every tensor name and shape of a real
// SD1.5 single-file checkpoint) and compare with a plain copy of the same file, in the same run.
// LoRAs: three random kohya-style rank-32 LoRAs on every UNet and text-encoder attention projection.
// The bake patches each targeted fp16 tensor as W + up @ down (rank 96 after stacking, ~11.7 GMAC in all) on
// the packed wasm GEMM kernel (math/gemm-packed.ts; its line below says which variant runs) fused with the
// fp16 add (math/simd-f16.ts), while the kernel copies the file (fs.copyFile). Wall-clock ratios need an idle
// machine: under load the bake's ~3 s of CPU competes with other jobs while the copy is mostly I/O, so the CPU
// seconds printed per run are the figure to compare between runs on a shared machine.
// Run: npx tsx packages/prompt-lora/bench/bake-stack.ts   (needs ~7 GB free in os.tmpdir(); removes its files)
// BAKE_ROUNDS=n (default 2) sets the number of interleaved copy / bake rounds.
import { readFileSync } from "node:fs";
import { copyFile, mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Adapter, AdapterModule } from "../src/adapters/types.ts";
import { moduleTree } from "../src/architecture/index.ts";
import { Rng } from "../src/math/random.ts";
import { gemmInstance } from "../src/math/simd-gemm.ts";
import { bakeCheckpoint } from "../src/merge/bake.ts";
import { f32ToF16 } from "../src/safetensors/dtypes.ts";
import type { TensorToWrite } from "../src/safetensors/types.ts";
import { writeSafetensors } from "../src/safetensors/writer.ts";

const manifest = JSON.parse(
  readFileSync(new URL("../../../../shared/fixtures/sd15-original-keys.json", import.meta.url), "utf8"),
) as { keys: Record<string, { shape: number[] }> };

const dir = await mkdtemp(join(tmpdir(), "bake-bench-"));
const basePath = join(dir, "sd15-synthetic-fp16.safetensors");
const copyPath = join(dir, "copy.safetensors");
const bakedPath = join(dir, "baked.safetensors");
const rng = new Rng(1234);

async function fsyncFile(path: string): Promise<void> {
  const h = await open(path, "r+");
  await h.sync();
  await h.close();
}

try {
  // A pool of random halves; each tensor takes a window of it (generation is not what we time).
  const poolSize = 40_000_000;
  const block = f32ToF16(rng.gaussianArray(1 << 20, 0.05));
  const pool = new Uint16Array(poolSize + (1 << 20));
  for (let o = 0; o < pool.length; o += block.length)
    pool.set(block.subarray(0, Math.min(block.length, pool.length - o)), o);
  const tensors: TensorToWrite[] = Object.entries(manifest.keys).map(([name, { shape }], i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const start = (i * 7919) % (1 << 20);
    return { name, dtype: "F16", shape, data: () => pool.subarray(start, start + n) };
  });
  let t = performance.now();
  await writeSafetensors(basePath, tensors, {
    format: "pt",
    note: "synthetic SD1.5-shaped checkpoint for a bench",
  });
  const size = (await stat(basePath)).size;
  console.log(
    `generated ${(size / 1e9).toFixed(2)} GB, ${tensors.length} tensors in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );

  const targets = moduleTree("sd1").filter(
    (m) =>
      /attn[12]\.(to_q|to_k|to_v|to_out\.0)$/.test(m.path) || /self_attn\.(q|k|v|out)_proj$/.test(m.path),
  );
  const lora = (seed: number): Adapter => {
    const r = new Rng(seed);
    const modules: AdapterModule[] = targets.map((m) => ({
      component: m.component,
      path: m.path,
      kind: "lora",
      layer: m.layer,
      tensors: {
        down: { shape: [32, m.inFeatures], data: r.gaussianArray(32 * m.inFeatures, 0.02) },
        up: { shape: [m.outFeatures, 32], data: r.gaussianArray(m.outFeatures * 32, 0.01) },
      },
      alpha: 16,
    }));
    return {
      source: `random-${seed}`,
      format: "kohya",
      family: "sd1",
      modules,
      metadata: {},
      unknownKeys: [],
    };
  };
  const adapters = [
    { adapter: lora(1), te: 0.8, unet: 0.7 },
    { adapter: lora(2), te: 0.5, unet: 0.5 },
    { adapter: lora(3), te: -0.3, unet: 0.6 },
  ];
  console.log(`stack: 3 LoRAs x ${targets.length} attention modules, rank 32 each (96 stacked)`);
  const packed = gemmInstance()?.packed;
  console.log(
    packed
      ? `GEMM kernel: packed ${packed.rows}x${packed.cols} ${packed.fused ? "relaxed-SIMD multiply-add" : "mul + add"}`
      : "GEMM kernel: none (no wasm SIMD), plain JS",
  );

  // Warm the page cache the same way for both: one untimed read-through copy first.
  await copyFile(basePath, copyPath);
  await rm(copyPath);

  // A/B interleaved (the machine may be shared): each round times a copy, then a bake with default settings
  // (patches in this thread on <= 2 cores) and one with a 2-worker pool. CPU time is the whole process's.
  const cpuSeconds = (since: NodeJS.CpuUsage) => {
    const u = process.cpuUsage(since);
    return (u.user + u.system) / 1e6;
  };
  const rounds = Number(process.env.BAKE_ROUNDS ?? 2);
  const ratios: Record<string, number[]> = { default: [], "2 workers": [] };
  for (let round = 0; round < rounds; round++) {
    t = performance.now();
    let cpu = process.cpuUsage();
    await copyFile(basePath, copyPath);
    const copyMs = performance.now() - t;
    const copyCpu = cpuSeconds(cpu);
    await fsyncFile(copyPath);
    const copySyncMs = performance.now() - t;
    await rm(copyPath);
    console.log(
      `round ${round + 1}: fs.copyFile ${(copyMs / 1000).toFixed(2)} s (${copyCpu.toFixed(2)} s CPU), + fsync ${(copySyncMs / 1000).toFixed(2)} s`,
    );
    for (const [label, workers] of [
      ["default", undefined],
      ["2 workers", 2],
    ] as const) {
      t = performance.now();
      cpu = process.cpuUsage();
      const report = await bakeCheckpoint({ base: basePath, output: bakedPath, adapters, workers });
      const bakeMs = performance.now() - t; // includes fsync + rename (atomic output)
      const bakeCpu = cpuSeconds(cpu);
      await rm(bakedPath);
      ratios[label].push(bakeMs / copyMs);
      console.log(
        `  bake ${label.padEnd(10)} ${(bakeMs / 1000).toFixed(2)} s wall, ${bakeCpu.toFixed(2)} s CPU; ` +
          `${report.bakedTensors.length} baked, ${report.copiedTensors} copied raw, ${report.unmatchedModules.length} unmatched; ` +
          `bake / copy ${(bakeMs / copyMs).toFixed(2)}x, bake / (copy + fsync) ${(bakeMs / copySyncMs).toFixed(2)}x`,
      );
    }
  }
  for (const [label, r] of Object.entries(ratios)) {
    console.log(`best ratio bake (${label}) / copy: ${Math.min(...r).toFixed(2)}x (target <= 1.5x)`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
