/**
 * PNDM with skip_prk_steps (the PLMS sampler of latent-diffusion), as diffusers' PNDMScheduler:
 * timesteps [t_N-1, t_N-2, t_N-2, ..., t_0] (the second timestep is used twice), a Heun-like
 * warmup over the first two calls, then Adams-Bashforth combinations of up to four past model
 * outputs, each applied with the PNDM transfer formula (eq. 9 of Liu et al. 2022).
 */
import { SchedulerError } from "../errors.ts";
import type { NoiseSchedule, PredictionType } from "../noise-schedule.ts";
import { f32 } from "../torch-numerics.ts";
import { discreteTimesteps } from "./sigmas.ts";
import type { Sampler, SamplerOptions } from "./types.ts";

export class PndmSampler implements Sampler {
  readonly name = "PNDM" as const;
  readonly prediction: PredictionType;
  readonly timesteps: Float64Array;
  readonly timestepDtype = "int64" as const;
  readonly initNoiseSigma = 1;
  private readonly schedule: NoiseSchedule;
  private readonly stride: number;
  private readonly finalAlphaCumprod: number;
  private ets: Float32Array[] = [];
  private counter = 0;
  private warmupSample: Float32Array | undefined;

  constructor(o: SamplerOptions) {
    this.schedule = o.schedule;
    this.prediction = o.prediction ?? o.schedule.config.predictionType;
    const desc = discreteTimesteps(o.schedule, o.steps, o.spacing ?? "leading");
    // Ascending t_0..t_N-1 -> [t_0..t_N-2, t_N-2, t_N-1] -> reversed.
    const asc = Array.from(desc).reverse();
    const plms = asc.length > 1 ? [...asc.slice(0, -1), asc[asc.length - 2], asc[asc.length - 1]] : asc;
    this.timesteps = Float64Array.from(plms.reverse());
    this.stride = Math.floor(o.schedule.config.numTrainTimesteps / o.steps);
    this.finalAlphaCumprod = o.schedule.config.setAlphaToOne ? 1 : o.schedule.alphasCumprod[0];
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array {
    if (index !== this.counter) {
      throw new SchedulerError(
        "BAD_ARGUMENT",
        "PNDM.step",
        `steps must run in order: expected call ${this.counter}, got ${index}`,
      );
    }
    let t = this.timesteps[index];
    let prev = t - this.stride;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      // The repeated call: redo the first transfer from the same start with the averaged output.
      prev = t;
      t = t + this.stride;
    }
    const e = this.ets;
    const n = e.length;
    let eps: Float32Array;
    let from = sample;
    if (n === 1 && this.counter === 0) {
      eps = modelOutput;
      this.warmupSample = sample;
    } else if (n === 1 && this.counter === 1) {
      eps = modelOutput.map((v, i) => f32(f32(v + e[0][i]) / 2));
      from = this.warmupSample ?? sample;
      this.warmupSample = undefined;
    } else if (n === 2) {
      eps = e[1].map((v, i) => f32(f32(f32(3 * v) - e[0][i]) / 2));
    } else if (n === 3) {
      eps = e[2].map((v, i) => f32(f32(f32(f32(23 * v) - f32(16 * e[1][i])) + f32(5 * e[0][i])) / 12));
    } else {
      eps = e[3].map((v, i) =>
        f32((1 / 24) * f32(f32(f32(f32(55 * v) - f32(59 * e[2][i])) + f32(37 * e[1][i])) - f32(9 * e[0][i]))),
      );
    }
    this.counter++;
    return this.transfer(from, t, prev, eps);
  }

  /** diffusers' _get_prev_sample: PNDM's transfer from t to prev with noise estimate `output`. */
  private transfer(sample: Float32Array, t: number, prev: number, output: Float32Array): Float32Array {
    const acp = this.schedule.alphasCumprod[t];
    const acpPrev = prev >= 0 ? this.schedule.alphasCumprod[prev] : this.finalAlphaCumprod;
    const beta = f32(1 - acp);
    const betaPrev = f32(1 - acpPrev);
    const sampleCoef = f32(Math.sqrt(f32(acpPrev / acp)));
    const denom = f32(f32(acp * f32(Math.sqrt(betaPrev))) + f32(Math.sqrt(f32(f32(acp * beta) * acpPrev))));
    const diff = f32(acpPrev - acp);
    const sqrtA = f32(Math.sqrt(acp));
    const sqrtB = f32(Math.sqrt(beta));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const eps =
        this.prediction === "epsilon" ? output[i] : f32(f32(sqrtA * output[i]) + f32(sqrtB * sample[i]));
      out[i] = f32(f32(sampleCoef * sample[i]) - f32(f32(diff * eps) / denom));
    }
    return out;
  }
}
