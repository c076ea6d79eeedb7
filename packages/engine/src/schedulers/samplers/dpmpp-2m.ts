/**
 * DPM-Solver++(2M) (Lu et al. 2022), as diffusers' DPMSolverMultistepScheduler with
 * algorithm_type "dpmsolver++", solver_order 2, solver_type "midpoint", lower_order_final,
 * final_sigmas_type "zero"; optionally on Karras sigmas ("DPM++ 2M Karras").
 *
 * The latents are variance-preserving (x = alpha x0 + sigma_vp eps, init_noise_sigma 1, no input
 * scaling); the sigma schedule is the VE sigma, alpha = 1/sqrt(sigma^2+1), sigma_vp = sigma*alpha.
 * The first step and the last one (to sigma 0) are first order, as k-diffusion's sample_dpmpp_2m.
 */
import type { NoiseSchedule, PredictionType, TimestepSpacing } from "../noise-schedule.ts";
import { f32, numpyInterpUnitGrid, numpyLinspace, roundHalfEven } from "../torch-numerics.ts";
import { checkSteps, karrasSigmas, logSigmaTable, sigmaTable, sigmaToTimestep } from "./sigmas.ts";
import type { Sampler, SamplerOptions } from "./types.ts";

/** DPMSolverMultistepScheduler.set_timesteps: integer timesteps and float32 sigmas ending in 0. */
export function dpmSchedule(
  schedule: NoiseSchedule,
  steps: number,
  spacing: TimestepSpacing,
  karras: boolean,
): { timesteps: Float64Array; sigmas: Float32Array } {
  checkSteps(steps, schedule);
  const T = schedule.config.numTrainTimesteps;
  let ts = new Float64Array(steps);
  if (spacing === "linspace") {
    const lin = numpyLinspace(0, T - 1, steps + 1);
    for (let i = 0; i < steps; i++) ts[i] = roundHalfEven(lin[steps - i]);
  } else if (spacing === "leading") {
    const ratio = Math.floor(T / (steps + 1));
    for (let i = 0; i < steps; i++) ts[i] = (steps - i) * ratio + schedule.config.stepsOffset;
  } else {
    const ratio = T / steps;
    for (let i = 0; i < steps; i++) ts[i] = roundHalfEven(T - i * ratio) - 1;
  }
  const table = sigmaTable(schedule);
  let sig: Float64Array;
  if (karras) {
    sig = karrasSigmas(table[0], table[table.length - 1], steps);
    const logs = logSigmaTable(table);
    ts = sig.map((s) => roundHalfEven(sigmaToTimestep(s, logs)));
  } else {
    sig = ts.map((t) => numpyInterpUnitGrid(t, table));
  }
  const sigmas = new Float32Array(steps + 1);
  sigmas.set(sig);
  return { timesteps: ts, sigmas };
}

/** alpha_t, sigma_t (VP) and lambda = log(alpha/sigma) for a VE sigma, in float32 as diffusers. */
function vp(sigma: number): { alpha: number; sigmaVp: number; lambda: number } {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const sigmaVp = f32(sigma * alpha);
  return { alpha, sigmaVp, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(sigmaVp))) };
}

export class DpmPp2mSampler implements Sampler {
  readonly name: "DPM++ 2M" | "DPM++ 2M Karras";
  readonly prediction: PredictionType;
  readonly timesteps: Float64Array;
  readonly timestepDtype = "int64" as const;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma = 1;
  private previousX0: Float32Array | undefined;

  constructor(o: SamplerOptions) {
    const karras = o.karras === true;
    this.name = karras ? "DPM++ 2M Karras" : "DPM++ 2M";
    this.prediction = o.prediction ?? o.schedule.config.predictionType;
    const s = dpmSchedule(o.schedule, o.steps, o.spacing ?? "linspace", karras);
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /** convert_model_output: the data prediction x0 from the model output at call i. */
  private dataPrediction(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array {
    const { alpha, sigmaVp } = vp(this.sigmas[index]);
    if (this.prediction === "epsilon")
      return sample.map((x, i) => f32(f32(x - f32(sigmaVp * modelOutput[i])) / alpha));
    return sample.map((x, i) => f32(f32(alpha * x) - f32(sigmaVp * modelOutput[i])));
  }

  step(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array {
    const x0 = this.dataPrediction(modelOutput, index, sample);
    const last = index === this.timesteps.length - 1;
    const s0 = vp(this.sigmas[index]);
    const next = this.sigmas[index + 1];
    const out = new Float32Array(sample.length);
    if (next === 0) {
      // sigma_next = 0: alpha_t = 1, sigma_t = 0, so the first-order update lands on x0 itself.
      out.set(x0);
    } else {
      const t = vp(next);
      const h = f32(t.lambda - s0.lambda);
      const ratio = f32(t.sigmaVp / s0.sigmaVp);
      const coef = f32(t.alpha * f32(f32(Math.exp(-h)) - 1));
      const prev = this.previousX0;
      if (prev === undefined || last) {
        for (let i = 0; i < out.length; i++) out[i] = f32(f32(ratio * sample[i]) - f32(coef * x0[i]));
      } else {
        const s1 = vp(this.sigmas[index - 1]);
        const r0 = f32(f32(s0.lambda - s1.lambda) / h);
        const inv = f32(1 / r0);
        for (let i = 0; i < out.length; i++) {
          const d1 = f32(inv * f32(x0[i] - prev[i]));
          out[i] = f32(f32(f32(ratio * sample[i]) - f32(coef * x0[i])) - f32(f32(0.5 * coef) * d1));
        }
      }
    }
    this.previousX0 = x0;
    return out;
  }
}
