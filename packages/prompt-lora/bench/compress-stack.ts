// Stack five rank-64 SD1.5-shaped LoRAs (every kohya default module: UNet transformer Linear/1x1 convs,
// CLIP attention + MLP) and compress the rank-320 stack to rank 64. Target: under 10 s on 2 cores.
// Run: npx tsx packages/prompt-lora/bench/compress-stack.ts
import { performance } from "node:perf_hooks";
import type { Adapter, AdapterModule } from "../src/adapters/types.ts";
import { moduleTree } from "../src/architecture/index.ts";
import { Rng } from "../src/math/random.ts";
import { compressAdapter, compressAdapterParallel } from "../src/merge/compress.ts";
import { stackAdapters } from "../src/merge/stack.ts";

const specs = moduleTree("sd1").filter(
  (m) =>
    (m.component === "unet" && m.path.includes("attentions.") && m.kernel[0] * m.kernel[1] === 1) ||
    (m.component === "te" && m.path.includes("encoder.layers.")),
);
const rank = 64;

function lora(seed: number): Adapter {
  const r = new Rng(seed);
  const modules: AdapterModule[] = specs.map((m) => {
    const conv = m.layer === "conv";
    return {
      component: m.component,
      path: m.path,
      kind: "lora",
      layer: m.layer,
      tensors: {
        down: {
          shape: conv ? [rank, m.inFeatures, 1, 1] : [rank, m.inFeatures],
          data: r.gaussianArray(rank * m.inFeatures, 0.02),
        },
        up: {
          shape: conv ? [m.outFeatures, rank, 1, 1] : [m.outFeatures, rank],
          data: r.gaussianArray(m.outFeatures * rank, 0.01),
        },
      },
      alpha: 32,
    };
  });
  return { source: `random-${seed}`, format: "kohya", family: "sd1", modules, metadata: {}, unknownKeys: [] };
}

const inputs = [1, 2, 3, 4, 5].map((s, i) => ({ adapter: lora(s), te: 0.4 + 0.1 * i, unet: 0.9 - 0.1 * i }));
console.log(`5 LoRAs x ${specs.length} modules, rank ${rank} each`);

// CPU time is reported next to wall time: on a shared machine it is the steadier figure.
const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return ((u.user + u.system) / 1e6).toFixed(2);
};
let t = performance.now();
let cpu = process.cpuUsage();
const stacked = stackAdapters(inputs);
const stackMs = performance.now() - t;
const stackCpu = cpuSeconds(cpu);
console.log(`stack (exact, rank 320): ${(stackMs / 1000).toFixed(2)} s wall, ${stackCpu} s CPU`);

// A/B interleaved (the machine may be shared): the worker pool (compressAdapterParallel, default size) and
// this thread only (compressAdapter). CPU time is the whole process's, all threads included.
const rounds = Number(process.env.COMPRESS_ROUNDS ?? 2);
const best: Record<string, number> = {};
for (let round = 0; round < rounds; round++) {
  for (const label of ["pool", "in-process"] as const) {
    t = performance.now();
    cpu = process.cpuUsage();
    const { report } =
      label === "pool" ? await compressAdapterParallel(stacked, rank) : compressAdapter(stacked, rank);
    const ms = performance.now() - t;
    best[label] = Math.min(best[label] ?? Number.POSITIVE_INFINITY, ms);
    const worst = report.modules.reduce((a, b) => (b.relativeError > a.relativeError ? b : a));
    console.log(
      `round ${round + 1} compress to rank ${rank} (${label}): ${(ms / 1000).toFixed(2)} s wall, ${cpuSeconds(cpu)} s CPU; ` +
        `total relative error ${report.totalRelativeError.toFixed(5)}, worst module ${worst.relativeError.toFixed(4)}`,
    );
  }
}
for (const [label, ms] of Object.entries(best)) {
  console.log(`best stack + compress (${label}): ${((stackMs + ms) / 1000).toFixed(2)} s (target < 10 s)`);
}
