/**
 * Every random choice of a training step is a pure function of (seed, micro-step, purpose), never of a generator
 * that carries state from step to step. A resume therefore needs no RNG state beyond the step number and the data
 * order position, and reproduces the uninterrupted run's noise, timesteps, flips and caption shuffles exactly.
 * Normals come from the torch-compatible CPU generator (torch.randn's layout), uniform integers from the
 * trainer's xoshiro generator.
 */
import { TorchCpuGenerator } from "@lora-studio/engine";
import { deriveSeed, Rng } from "../dataset/rng.ts";

export const PURPOSE = {
  noise: 1,
  timesteps: 2,
  noiseOffset: 3,
  flip: 4,
  caption: 5,
  latentSample: 6,
} as const;

export type Purpose = keyof typeof PURPOSE;

export function stepRng(seed: number, microStep: number, purpose: Purpose): Rng {
  return new Rng(deriveSeed(seed, microStep, PURPOSE[purpose]));
}

export function stepNormals(seed: number, microStep: number, purpose: Purpose, count: number): Float32Array {
  return new TorchCpuGenerator(deriveSeed(seed, microStep, PURPOSE[purpose])).randn(count);
}

/** Timesteps uniform in [0, numTrainTimesteps), one per sample (kohya: torch.randint(0, 1000, (B,))). */
export function stepTimesteps(seed: number, microStep: number, batch: number, numTrain = 1000): number[] {
  const rng = stepRng(seed, microStep, "timesteps");
  return Array.from({ length: batch }, () => rng.int(numTrain));
}
