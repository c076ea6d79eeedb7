// GEMM throughput on the bake's product shapes: up [out x 96] @ down [96 x in] for the 176 SD1.5 attention
// projections of a 3 x rank-32 stack (11.7 GMAC), in blocks of 32 rows as addProductToHalves runs them.
// Kernels compared in one run, interleaved: the strided 2 x 16 mul+add kernel (the product kernel before
// 2026-11-22, still used for Gram matrices), and the kernels of gemm-packed.ts (B packed in column panels):
// 2 x 16 mul+add, and 4 x 8 relaxed-SIMD multiply-add (the default where it compiles); then
// addProductToHalves end to end (copies, B packing, product, fp16 add). Figures are GMAC per CPU-second of this thread (robust to a shared machine), best of the rounds.
// Run: npx tsx packages/prompt-lora/bench/gemm-kernel.ts
import { instantiatePackedGemm, type PackedGemm } from "../src/math/gemm-packed.ts";
import { Rng } from "../src/math/random.ts";
import { addProductToHalves } from "../src/math/simd-f16.ts";
import { gemmInstance } from "../src/math/simd-gemm.ts";
import { f32ToF16 } from "../src/safetensors/dtypes.ts";

const rank = 96;
// [out, in, count]: UNet transformer blocks have 6 (C x C) and 2 (C x 768) projections (5, 5, 6 blocks at
// C = 320, 640, 1280); the text encoder 4 (768 x 768) in each of 12 layers.
const shapes: [number, number, number][] = [
  [320, 320, 6 * 5],
  [320, 768, 2 * 5],
  [640, 640, 6 * 5],
  [640, 768, 2 * 5],
  [1280, 1280, 6 * 6],
  [1280, 768, 2 * 6],
  [768, 768, 4 * 12],
];
const totalMac = shapes.reduce((s, [out, inn, count]) => s + out * inn * rank * count, 0);
const inst = gemmInstance();
if (!inst) throw new Error("no wasm SIMD here");
const { memory } = inst;
const need = 16 << 20;
if (memory.buffer.byteLength < need) memory.grow((need - memory.buffer.byteLength) / 65536);
const heap = new Float32Array(memory.buffer);
const rng = new Rng(7);
heap.set(rng.gaussianArray(3 << 20, 0.02)); // operands: any finite values

const B_AT = 4 << 20; // bytes
const C_AT = 8 << 20;
function packedRun(g: PackedGemm): () => void {
  return () => {
    for (const [out, inn, count] of shapes)
      for (let c = 0; c < count; c++)
        for (let i0 = 0; i0 < out; i0 += 32) {
          const m = Math.min(32, out - i0);
          g.kernel(i0 * rank * 4, B_AT, C_AT, m, rank, inn, rank * 4, 4, inn * 4, rank * 4);
        }
  };
}
const unfused = instantiatePackedGemm(memory, false)!;
const fused = instantiatePackedGemm(memory, true)!;
const runs: [string, () => void][] = [
  [
    "strided 2x16 mul+add",
    () => {
      for (const [out, inn, count] of shapes)
        for (let c = 0; c < count; c++)
          for (let i0 = 0; i0 < out; i0 += 32) {
            const m = Math.min(32, out - i0);
            inst.kernel(i0 * rank * 4, B_AT, C_AT, m, rank, inn, rank * 4, 4, inn * 4, inn * 4);
          }
    },
  ],
  ["packed-B 2x16 mul+add", packedRun(unfused)],
];
if (fused.fused) runs.push(["packed-B 4x8 relaxed madd", packedRun(fused)]);
else console.log("relaxed SIMD does not compile here: no fused kernel");

const factors = shapes.map(([out, inn]) => ({
  out,
  inn,
  up: rng.gaussianArray(out * rank, 0.01),
  down: rng.gaussianArray(rank * inn, 0.02),
  halves: f32ToF16(rng.gaussianArray(out * inn, 0.05)),
}));
runs.push([
  `addProductToHalves (${inst.packed.fused ? "fused" : "mul+add"})`,
  () => {
    for (const [s, [, , count]] of shapes.entries()) {
      const f = factors[s];
      for (let c = 0; c < count; c++) addProductToHalves(f.up, f.down, f.out, rank, f.inn, f.halves);
    }
  },
]);

const rounds = Number(process.env.GEMM_ROUNDS ?? 4);
const rates = runs.map(() => [] as number[]);
for (const [, run] of runs) run(); // warm-up: tier the kernels up
for (let round = 0; round < rounds; round++) {
  for (const [i, [, run]] of runs.entries()) {
    const cpu = process.cpuUsage();
    run();
    const u = process.cpuUsage(cpu);
    rates[i].push(totalMac / 1e9 / ((u.user + u.system) / 1e6));
  }
}
console.log(`${(totalMac / 1e9).toFixed(2)} GMAC per pass (176 modules, rank 96); GMAC per CPU-second:`);
for (const [i, [label]] of runs.entries()) {
  const best = Math.max(...rates[i]);
  console.log(
    `  ${label.padEnd(30)} best ${best.toFixed(2)} (${(totalMac / 1e9 / best).toFixed(2)} s)  rounds ${rates[i].map((r) => r.toFixed(1)).join(" ")}`,
  );
}
