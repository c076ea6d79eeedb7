/** What every sampler offers the denoising loop, mirroring a diffusers scheduler after set_timesteps(N). */
import type { NoiseSchedule, PredictionType, TimestepSpacing } from "../noise-schedule.ts";
import type { NoiseSource } from "../torch-rng.ts";

/** Sampler names as the WebUI shows them, plus PNDM (the SD1 default of diffusers pipelines). */
export type SamplerName = "Euler" | "Euler a" | "DDIM" | "DPM++ 2M" | "DPM++ 2M Karras" | "PNDM";

export const SAMPLER_NAMES: readonly SamplerName[] = [
  "Euler",
  "Euler a",
  "DDIM",
  "DPM++ 2M",
  "DPM++ 2M Karras",
  "PNDM",
];

export interface SamplerOptions {
  schedule: NoiseSchedule;
  steps: number;
  /** Defaults to the schedule config's prediction type. */
  prediction?: PredictionType;
  /** Defaults to the diffusers class default of the sampler (leading: DDIM/PNDM, linspace: the rest). */
  spacing?: TimestepSpacing;
  /** Source of the per-step noise of ancestral samplers (Euler a, DDIM with eta > 0). */
  noise?: NoiseSource;
  /** DDIM only: 0 is deterministic DDIM. */
  eta?: number;
  /** Euler / Euler a only: Karras sigmas (rho 7). DPM++ 2M Karras sets it. */
  karras?: boolean;
}

/**
 * A sampler after set_timesteps: stateful (multistep history), so make one per image run.
 * Model call i uses `timesteps[i]`; PNDM has steps + 1 calls (one timestep repeated).
 */
export interface Sampler {
  readonly name: SamplerName;
  readonly prediction: PredictionType;
  /** Timestep passed to the model at each call (integers, except Euler's float32 values). */
  readonly timesteps: Float64Array;
  /** "int64" where diffusers keeps integer timesteps, "float32" for EulerDiscrete. */
  readonly timestepDtype: "int64" | "float32";
  /** Sigma schedule with the final value appended (Euler / DPM-Solver), as diffusers' `sigmas`. */
  readonly sigmas?: Float32Array;
  /** The pipeline multiplies unit-variance initial latents by this. */
  readonly initNoiseSigma: number;
  /** The latents the model sees at call i (divides by sqrt(sigma^2 + 1) for Euler; identity elsewhere). */
  scaleModelInput(sample: Float32Array, index: number): Float32Array;
  /** The latents after call i from the model's (guided) output at call i. */
  step(modelOutput: Float32Array, index: number, sample: Float32Array): Float32Array;
}
