// Test oracles for the sampler tests: models of known data distributions seen through the samplers' inputs.
import {
  createNoiseSchedule,
  type PredictionType,
  SD_SCHEDULE,
} from "../../src/schedulers/noise-schedule.ts";
import type { Sampler } from "../../src/schedulers/samplers/types.ts";
import { TorchCpuGenerator } from "../../src/schedulers/torch-rng.ts";

export const schedule = createNoiseSchedule(SD_SCHEDULE);

/** VP coefficient a = sqrt(alpha_bar) of the noise level the model is called at. */
export function alphaAt(sampler: Sampler, index: number): number {
  if (sampler.sigmas) return 1 / Math.sqrt(sampler.sigmas[index] ** 2 + 1);
  return Math.sqrt(schedule.alphasCumprod[sampler.timesteps[index]]);
}

/**
 * The model of a data distribution, seen through VP inputs x = a * x0 + s * eps: returns the eps or v that
 * the denoiser `den(x_ve, sigma, i)` implies. A point mass at x0 gives the exact noise.
 */
export function oracle(
  sampler: Sampler,
  prediction: PredictionType,
  den: (xVe: number, sigma: number, i: number) => number,
) {
  return async (input: Float32Array, _t: number, index: number) => {
    const a = alphaAt(sampler, index);
    const s = Math.sqrt(1 - a * a);
    const sigma = s / a;
    return input.map((x, i) => {
      const d = den(x / a, sigma, i);
      const eps = (x / a - d) / sigma;
      return prediction === "epsilon" ? eps : a * eps - s * d;
    });
  };
}

export const x0 = new TorchCpuGenerator(11).randn(64);
export const unitNoise = new TorchCpuGenerator(12).randn(64);

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
