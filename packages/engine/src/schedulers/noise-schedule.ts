/**
 * The DDPM noise schedule of Stable Diffusion and the training-side math built on it:
 * betas, alphas_cumprod, add_noise, the v-prediction target, SNR and min-SNR-gamma weights,
 * and kohya's noise offset.
 *
 * Values follow diffusers 0.26 on torch CPU exactly: betas and alphas are float32 tensors,
 * alphas_cumprod is torch.cumprod (double accumulation, float32 results), and the per-element
 * formulas of add_noise / get_velocity are evaluated as float32 tensor ops in the same order.
 */
import { readFile } from "node:fs/promises";
import { SchedulerError } from "./errors.ts";
import { f32, torchCumprodF32, torchLinspaceF32 } from "./torch-numerics.ts";

export type BetaSchedule = "scaled_linear" | "linear" | "squaredcos_cap_v2";
export type PredictionType = "epsilon" | "v_prediction";
export type TimestepSpacing = "leading" | "linspace" | "trailing";

/** The fields of a diffusers scheduler_config.json the schedule and samplers use. */
export interface ScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas?: number[];
  predictionType: PredictionType;
  stepsOffset: number;
  setAlphaToOne: boolean;
  /**
   * As written in the file, or undefined when absent. Samplers do not apply it on their own:
   * each diffusers class has its own default (leading for DDIM/PNDM, linspace for Euler and
   * DPM-Solver), and the reference pipelines built from an old config used those defaults.
   */
  timestepSpacing?: TimestepSpacing;
}

/** Stable Diffusion 1.x / 2.x training schedule (the values in every SD scheduler_config.json). */
export const SD_SCHEDULE: ScheduleConfig = {
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: "scaled_linear",
  predictionType: "epsilon",
  stepsOffset: 1,
  setAlphaToOne: false,
};

function field<T>(json: Record<string, unknown>, key: string, file: string, kind: string, fallback: T): T {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== kind)
    throw new SchedulerError("CONFIG_FIELD", file, `"${key}" must be a ${kind}, got ${JSON.stringify(v)}`);
  return v as T;
}

/**
 * Parses a diffusers scheduler_config.json object. Absent beta/prediction keys take Stable
 * Diffusion's values; absent steps_offset / set_alpha_to_one take the diffusers class defaults (0, true).
 */
export function parseScheduleConfig(json: unknown, file = "scheduler_config.json"): ScheduleConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SchedulerError("CONFIG_FIELD", file, "expected a JSON object");
  }
  const o = json as Record<string, unknown>;
  const betaSchedule = field(o, "beta_schedule", file, "string", SD_SCHEDULE.betaSchedule);
  if (!["scaled_linear", "linear", "squaredcos_cap_v2"].includes(betaSchedule)) {
    throw new SchedulerError(
      "CONFIG_FIELD",
      file,
      `unsupported "beta_schedule" ${JSON.stringify(betaSchedule)}`,
    );
  }
  const predictionType = field(o, "prediction_type", file, "string", SD_SCHEDULE.predictionType);
  if (predictionType !== "epsilon" && predictionType !== "v_prediction") {
    throw new SchedulerError(
      "CONFIG_FIELD",
      file,
      `unsupported "prediction_type" ${JSON.stringify(predictionType)}`,
    );
  }
  const spacing = o.timestep_spacing;
  if (spacing !== undefined && spacing !== "leading" && spacing !== "linspace" && spacing !== "trailing") {
    throw new SchedulerError(
      "CONFIG_FIELD",
      file,
      `unsupported "timestep_spacing" ${JSON.stringify(spacing)}`,
    );
  }
  const trained = o.trained_betas;
  if (
    trained !== undefined &&
    trained !== null &&
    !(Array.isArray(trained) && trained.every((x) => typeof x === "number"))
  ) {
    throw new SchedulerError("CONFIG_FIELD", file, `"trained_betas" must be null or an array of numbers`);
  }
  const config: ScheduleConfig = {
    numTrainTimesteps: field(o, "num_train_timesteps", file, "number", SD_SCHEDULE.numTrainTimesteps),
    betaStart: field(o, "beta_start", file, "number", SD_SCHEDULE.betaStart),
    betaEnd: field(o, "beta_end", file, "number", SD_SCHEDULE.betaEnd),
    betaSchedule,
    predictionType,
    stepsOffset: field(o, "steps_offset", file, "number", 0),
    setAlphaToOne: field(o, "set_alpha_to_one", file, "boolean", true),
  };
  if (Array.isArray(trained)) config.trainedBetas = trained as number[];
  if (spacing !== undefined) config.timestepSpacing = spacing;
  if (!Number.isInteger(config.numTrainTimesteps) || config.numTrainTimesteps < 2) {
    throw new SchedulerError("CONFIG_FIELD", file, `"num_train_timesteps" must be an integer >= 2`);
  }
  return config;
}

/** Reads a diffusers scheduler/scheduler_config.json. */
export async function readScheduleConfig(path: string): Promise<ScheduleConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new SchedulerError("CONFIG_READ", path, "cannot read the scheduler config", { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new SchedulerError("CONFIG_READ", path, "not valid JSON", { cause });
  }
  return parseScheduleConfig(json, path);
}

/** The float32 tables every scheduler of the family shares. */
export interface NoiseSchedule {
  readonly config: ScheduleConfig;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
}

function alphaBarCosine(t: number): number {
  return Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2;
}

export function computeBetas(config: ScheduleConfig): Float32Array {
  const n = config.numTrainTimesteps;
  if (config.trainedBetas !== undefined) {
    if (config.trainedBetas.length !== n) {
      throw new SchedulerError(
        "CONFIG_FIELD",
        "trained_betas",
        `has ${config.trainedBetas.length} values, expected ${n}`,
      );
    }
    return Float32Array.from(config.trainedBetas);
  }
  switch (config.betaSchedule) {
    case "linear":
      return torchLinspaceF32(config.betaStart, config.betaEnd, n);
    case "scaled_linear": {
      const roots = torchLinspaceF32(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n);
      return roots.map((r) => f32(r * r));
    }
    case "squaredcos_cap_v2": {
      // diffusers' betas_for_alpha_bar: computed in Python floats, then one float32 tensor.
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++)
        out[i] = Math.min(1 - alphaBarCosine((i + 1) / n) / alphaBarCosine(i / n), 0.999);
      return out;
    }
  }
}

export function createNoiseSchedule(config: ScheduleConfig = SD_SCHEDULE): NoiseSchedule {
  const betas = computeBetas(config);
  const alphas = betas.map((b) => f32(1 - b));
  return { config, betas, alphas, alphasCumprod: torchCumprodF32(alphas) };
}

function checkTimestep(schedule: NoiseSchedule, t: number, where: string): void {
  if (!Number.isInteger(t) || t < 0 || t >= schedule.alphasCumprod.length) {
    throw new SchedulerError(
      "BAD_ARGUMENT",
      where,
      `timestep ${t} is not an integer in [0, ${schedule.alphasCumprod.length})`,
    );
  }
}

/** Splits a flat batch-major tensor into per-sample blocks, one timestep each. */
function perSample(length: number, timesteps: ArrayLike<number>, where: string): number {
  const b = timesteps.length;
  if (b === 0 || length % b !== 0) {
    throw new SchedulerError("SHAPE_MISMATCH", where, `${length} values do not split into ${b} samples`);
  }
  return length / b;
}

/** The two float32 coefficients diffusers takes from alphas_cumprod[t]: acp**0.5 and (1-acp)**0.5. */
export function noiseCoefficients(
  schedule: NoiseSchedule,
  t: number,
): { sqrtAlpha: number; sqrtOneMinusAlpha: number } {
  checkTimestep(schedule, t, "timestep");
  const acp = schedule.alphasCumprod[t];
  return { sqrtAlpha: f32(Math.sqrt(acp)), sqrtOneMinusAlpha: f32(Math.sqrt(f32(1 - acp))) };
}

/**
 * DDPMScheduler.add_noise: sqrt(acp[t]) * x0 + sqrt(1 - acp[t]) * noise, per batch sample
 * (x0 and noise are [B, ...] flattened, `timesteps` has B integer entries).
 */
export function addNoise(
  schedule: NoiseSchedule,
  x0: Float32Array,
  noise: Float32Array,
  timesteps: ArrayLike<number>,
): Float32Array {
  return mixPerSample("addNoise", schedule, x0, noise, timesteps, (a, s, n, x) =>
    f32(f32(a * x) + f32(s * n)),
  );
}

/** DDPMScheduler.get_velocity, the v-prediction target: sqrt(acp[t]) * noise - sqrt(1 - acp[t]) * x0. */
export function getVelocity(
  schedule: NoiseSchedule,
  x0: Float32Array,
  noise: Float32Array,
  timesteps: ArrayLike<number>,
): Float32Array {
  return mixPerSample("getVelocity", schedule, x0, noise, timesteps, (a, s, n, x) =>
    f32(f32(a * n) - f32(s * x)),
  );
}

/** Applies `mix(sqrtAlpha, sqrtOneMinusAlpha, noise, x0)` elementwise with each batch sample's own timestep. */
function mixPerSample(
  op: string,
  schedule: NoiseSchedule,
  x0: Float32Array,
  noise: Float32Array,
  timesteps: ArrayLike<number>,
  mix: (sqrtAlpha: number, sqrtOneMinusAlpha: number, noise: number, x0: number) => number,
): Float32Array {
  if (x0.length !== noise.length)
    throw new SchedulerError("SHAPE_MISMATCH", op, "x0 and noise lengths differ");
  const per = perSample(x0.length, timesteps, op);
  const out = new Float32Array(x0.length);
  for (let b = 0; b < timesteps.length; b++) {
    const { sqrtAlpha, sqrtOneMinusAlpha } = noiseCoefficients(schedule, timesteps[b]);
    for (let i = b * per; i < (b + 1) * per; i++) out[i] = mix(sqrtAlpha, sqrtOneMinusAlpha, noise[i], x0[i]);
  }
  return out;
}

/** The training target for a prediction type: the noise itself, or the velocity. */
export function trainingTarget(
  schedule: NoiseSchedule,
  x0: Float32Array,
  noise: Float32Array,
  timesteps: ArrayLike<number>,
  prediction: PredictionType = schedule.config.predictionType,
): Float32Array {
  return prediction === "epsilon" ? noise : getVelocity(schedule, x0, noise, timesteps);
}

/** SNR(t) = acp / (1 - acp), as kohya's all_snr ((sqrt(acp)/sqrt(1-acp))**2) and diffusers' compute_snr. */
export function snr(schedule: NoiseSchedule, t: number): number {
  const { sqrtAlpha, sqrtOneMinusAlpha } = noiseCoefficients(schedule, t);
  return (sqrtAlpha / sqrtOneMinusAlpha) ** 2;
}

/**
 * Min-SNR-gamma loss weights (Hang et al. 2023) per batch sample, as kohya's apply_snr_weight and
 * diffusers' train scripts compute them: min(SNR, gamma) / SNR for epsilon prediction,
 * min(SNR, gamma) / (SNR + 1) for v-prediction.
 */
export function minSnrWeights(
  schedule: NoiseSchedule,
  timesteps: ArrayLike<number>,
  gamma: number,
  prediction: PredictionType = schedule.config.predictionType,
): Float32Array {
  if (!(gamma > 0))
    throw new SchedulerError("BAD_ARGUMENT", "minSnrWeights", `gamma must be > 0, got ${gamma}`);
  const out = new Float32Array(timesteps.length);
  for (let b = 0; b < timesteps.length; b++) {
    const s = snr(schedule, timesteps[b]);
    out[b] = Math.min(s, gamma) / (prediction === "epsilon" ? s : s + 1);
  }
  return out;
}

/**
 * kohya's apply_noise_offset: noise + offset * n[b, c] with one extra normal per (sample, channel),
 * broadcast over H x W. With `adaptiveScale`, the offset grows by adaptiveScale * |mean of the
 * latent channel| (clamped at 0), as kohya's --adaptive_noise_scale does.
 */
export function applyNoiseOffset(
  noise: Float32Array,
  shape: readonly [number, number, number, number],
  offset: number,
  channelNormals: Float32Array,
  adaptive?: { latents: Float32Array; scale: number },
): Float32Array {
  const [b, c, h, w] = shape;
  const plane = h * w;
  if (noise.length !== b * c * plane)
    throw new SchedulerError(
      "SHAPE_MISMATCH",
      "applyNoiseOffset",
      `noise has ${noise.length} values, shape says ${b * c * plane}`,
    );
  if (channelNormals.length !== b * c)
    throw new SchedulerError(
      "SHAPE_MISMATCH",
      "applyNoiseOffset",
      `need ${b * c} channel normals, got ${channelNormals.length}`,
    );
  const out = new Float32Array(noise.length);
  for (let bc = 0; bc < b * c; bc++) {
    let amount = offset;
    if (adaptive !== undefined) {
      let sum = 0;
      for (let i = bc * plane; i < (bc + 1) * plane; i++) sum += adaptive.latents[i];
      amount = Math.max(0, offset + adaptive.scale * Math.abs(sum / plane));
    }
    const shift = amount * channelNormals[bc];
    for (let i = bc * plane; i < (bc + 1) * plane; i++) out[i] = noise[i] + shift;
  }
  return out;
}
