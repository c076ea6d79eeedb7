/**
 * Euler and Euler ancestral in sigma space (Karras et al. 2022, k-diffusion), as diffusers'
 * EulerDiscreteScheduler / EulerAncestralDiscreteScheduler: the latents are x0 + sigma * eps,
 * the model sees x / sqrt(sigma^2 + 1), and each step follows d = (x - x0) / sigma down to the
 * next sigma (ancestral: down to sigma_down, then adds sigma_up * fresh noise).
 */
import { SchedulerError } from "../errors.ts";
import type { PredictionType, TimestepSpacing } from "../noise-schedule.ts";
import { f32, numpyInterpUnitGrid, numpyLinspace, roundHalfEven } from "../torch-numerics.ts";
import type { NoiseSource } from "../torch-rng.ts";
import { checkSteps, karrasSigmas, logSigmaTable, sigmaTable, sigmaToTimestep } from "./sigmas.ts";
import type { Sampler, SamplerOptions } from "./types.ts";

/** EulerDiscreteScheduler.set_timesteps: float timesteps and float32 sigmas (interpolated linearly in sigma). */
export function eulerSchedule(
  o: SamplerOptions,
  spacing: TimestepSpacing,
): { timesteps: Float64Array; sigmas: Float32Array; initNoiseSigma: number } {
  const { schedule, steps } = o;
  checkSteps(steps, schedule);
  const T = schedule.config.numTrainTimesteps;
  let ts: Float64Array;
  if (spacing === "linspace") {
    ts = numpyLinspace(0, T - 1, steps)
      .map(f32)
      .reverse();
  } else if (spacing === "leading") {
    const ratio = Math.floor(T / steps);
    ts = new Float64Array(steps);
    for (let i = 0; i < steps; i++) ts[steps - 1 - i] = i * ratio + schedule.config.stepsOffset;
  } else {
    const ratio = T / steps;
    ts = new Float64Array(steps);
    for (let i = 0; i < steps; i++) ts[i] = roundHalfEven(T - i * ratio) - 1;
  }
  const table = sigmaTable(schedule);
  let sig: Float64Array = ts.map((t) => numpyInterpUnitGrid(t, table));
  if (o.karras === true) {
    sig = karrasSigmas(sig[sig.length - 1], sig[0], steps);
    const logs = logSigmaTable(table);
    ts = sig.map((s) => f32(sigmaToTimestep(s, logs)));
  }
  const sigmas = new Float32Array(steps + 1);
  sigmas.set(sig);
  let maxSigma = 0;
  for (const s of sigmas) maxSigma = Math.max(maxSigma, s);
  const initNoiseSigma = spacing === "leading" ? f32(Math.sqrt(f32(f32(maxSigma * maxSigma) + 1))) : maxSigma;
  return { timesteps: ts, sigmas, initNoiseSigma };
}

/** The denoised estimate x0 from a model output at sigma (float32 tensor ops as diffusers). */
function denoised(prediction: PredictionType, sigma: number, x: number, out: number): number {
  if (prediction === "epsilon") return f32(x - f32(sigma * out));
  const s2p1 = f32(f32(sigma * sigma) + 1);
  return f32(f32(out * f32(-sigma / f32(Math.sqrt(s2p1)))) + f32(x / s2p1));
}

abstract class SigmaSampler {
  readonly prediction: PredictionType;
  readonly timesteps: Float64Array;
  readonly timestepDtype = "float32" as const;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma: number;

  constructor(o: SamplerOptions) {
    this.prediction = o.prediction ?? o.schedule.config.predictionType;
    const s = eulerSchedule(o, o.spacing ?? "linspace");
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.initNoiseSigma = s.initNoiseSigma;
  }

  scaleModelInput(sample: Float32Array, index: number): Float32Array {
    const sigma = this.sigmas[index];
    const denom = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return sample.map((v) => f32(v / denom));
  }

  protected denoised(sigma: number, x: number, out: number): number {
    return denoised(this.prediction, sigma, x, out);
  }
}

export class EulerSampler extends SigmaSampler implements Sampler {
  readonly name = "Euler" as const;

  /** s_churn = 0 (the WebUI and diffusers default), so sigma_hat = sigma and no noise is added. */
  step(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array {
    const sigma = this.sigmas[index];
    const dt = f32(this.sigmas[index + 1] - sigma);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x0 = this.denoised(sigma, sample[i], modelOutput[i]);
      const d = f32(f32(sample[i] - x0) / sigma);
      out[i] = f32(sample[i] + f32(d * dt));
    }
    return out;
  }
}

export class EulerAncestralSampler extends SigmaSampler implements Sampler {
  readonly name = "Euler a" as const;
  private readonly noise: NoiseSource;

  constructor(o: SamplerOptions) {
    super(o);
    if (o.noise === undefined)
      throw new SchedulerError(
        "BAD_ARGUMENT",
        "noise",
        "Euler a needs a noise source for its per-step noise",
      );
    this.noise = o.noise;
  }

  /** sigma_up / sigma_down of k-diffusion's get_ancestral_step with eta 1. */
  ancestralStep(index: number): { up: number; down: number } {
    const from = this.sigmas[index];
    const to = this.sigmas[index + 1];
    const to2 = f32(to * to);
    const up = f32(Math.sqrt(f32(f32(to2 * f32(f32(from * from) - to2)) / f32(from * from))));
    const down = f32(Math.sqrt(f32(to2 - f32(up * up))));
    return { up, down };
  }

  step(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array {
    const sigma = this.sigmas[index];
    const { up, down } = this.ancestralStep(index);
    const dt = f32(down - sigma);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x0 = this.denoised(sigma, sample[i], modelOutput[i]);
      const d = f32(f32(sample[i] - x0) / sigma);
      out[i] = f32(sample[i] + f32(d * dt));
    }
    const n = this.noise.randn(sample.length);
    for (let i = 0; i < out.length; i++) out[i] = f32(out[i] + f32(n[i] * up));
    return out;
  }
}
