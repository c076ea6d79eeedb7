/**
 * DDIM (Song et al. 2021) as diffusers' DDIMScheduler.step: x0 from the model output, then
 * x_prev = sqrt(acp_prev) * x0 + sqrt(1 - acp_prev - std^2) * eps (+ std * noise when eta > 0),
 * with prev = t - T // N and acp_prev = final_alpha_cumprod past the start of the table.
 */
import { SchedulerError } from "../errors.ts";
import type { NoiseSchedule, PredictionType } from "../noise-schedule.ts";
import { f32 } from "../torch-numerics.ts";
import type { NoiseSource } from "../torch-rng.ts";
import { discreteTimesteps } from "./sigmas.ts";
import type { Sampler, SamplerOptions } from "./types.ts";

/** The (x0, eps) pair diffusers derives from a model output at noise level acp (float32 ops). */
export function splitPrediction(
  prediction: PredictionType,
  acp: number,
  sample: number,
  output: number,
): { x0: number; eps: number } {
  const sqrtA = f32(Math.sqrt(acp));
  const sqrtB = f32(Math.sqrt(f32(1 - acp)));
  if (prediction === "epsilon") return { x0: f32(f32(sample - f32(sqrtB * output)) / sqrtA), eps: output };
  return {
    x0: f32(f32(sqrtA * sample) - f32(sqrtB * output)),
    eps: f32(f32(sqrtA * output) + f32(sqrtB * sample)),
  };
}

export class DdimSampler implements Sampler {
  readonly name = "DDIM" as const;
  readonly prediction: PredictionType;
  readonly timesteps: Float64Array;
  readonly timestepDtype = "int64" as const;
  readonly initNoiseSigma = 1;
  private readonly schedule: NoiseSchedule;
  private readonly stride: number;
  private readonly finalAlphaCumprod: number;
  private readonly eta: number;
  private readonly noise: NoiseSource | undefined;

  constructor(o: SamplerOptions) {
    this.schedule = o.schedule;
    this.prediction = o.prediction ?? o.schedule.config.predictionType;
    this.timesteps = discreteTimesteps(o.schedule, o.steps, o.spacing ?? "leading");
    this.stride = Math.floor(o.schedule.config.numTrainTimesteps / o.steps);
    this.finalAlphaCumprod = o.schedule.config.setAlphaToOne ? 1 : o.schedule.alphasCumprod[0];
    this.eta = o.eta ?? 0;
    if (this.eta < 0) throw new SchedulerError("BAD_ARGUMENT", "eta", `must be >= 0, got ${this.eta}`);
    if (this.eta > 0 && o.noise === undefined)
      throw new SchedulerError("BAD_ARGUMENT", "noise", "DDIM with eta > 0 needs a noise source");
    this.noise = o.noise;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array {
    const t = this.timesteps[index];
    const prev = t - this.stride;
    const acp = this.schedule.alphasCumprod[t];
    const acpPrev = prev >= 0 ? this.schedule.alphasCumprod[prev] : this.finalAlphaCumprod;
    const betaProd = f32(1 - acp);
    const betaProdPrev = f32(1 - acpPrev);
    const variance = f32(f32(betaProdPrev / betaProd) * f32(1 - f32(acp / acpPrev)));
    const std = f32(this.eta * Math.sqrt(variance));
    const dirCoef = f32(Math.sqrt(f32(f32(1 - acpPrev) - f32(std * std))));
    const x0Coef = f32(Math.sqrt(acpPrev));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const { x0, eps } = splitPrediction(this.prediction, acp, sample[i], modelOutput[i]);
      out[i] = f32(f32(x0Coef * x0) + f32(dirCoef * eps));
    }
    if (this.eta > 0 && this.noise !== undefined) {
      const n = this.noise.randn(sample.length);
      for (let i = 0; i < out.length; i++) out[i] = f32(out[i] + f32(std * n[i]));
    }
    return out;
  }
}
