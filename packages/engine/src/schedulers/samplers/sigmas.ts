/**
 * Timestep and sigma schedules of the diffusers 0.26 schedulers: the three timestep spacings,
 * the sigma table sqrt((1 - acp) / acp), Karras sigmas (rho 7) and sigma -> timestep.
 */
import { SchedulerError } from "../errors.ts";
import type { NoiseSchedule, TimestepSpacing } from "../noise-schedule.ts";
import { f32, numpyLinspace, roundHalfEven } from "../torch-numerics.ts";

export function checkSteps(steps: number, schedule: NoiseSchedule): void {
  const max = schedule.config.numTrainTimesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new SchedulerError("BAD_ARGUMENT", "steps", `must be an integer in [1, ${max}], got ${steps}`);
  }
}

/**
 * Integer timesteps, descending, as DDIMScheduler / PNDMScheduler / DDPMScheduler.set_timesteps:
 * leading = arange(N) * (T // N) + steps_offset; linspace = round(linspace(0, T-1, N));
 * trailing = round(arange(T, 0, -T/N)) - 1.
 */
export function discreteTimesteps(
  schedule: NoiseSchedule,
  steps: number,
  spacing: TimestepSpacing,
): Float64Array {
  checkSteps(steps, schedule);
  const T = schedule.config.numTrainTimesteps;
  const out = new Float64Array(steps);
  if (spacing === "leading") {
    const ratio = Math.floor(T / steps);
    for (let i = 0; i < steps; i++) out[steps - 1 - i] = i * ratio + schedule.config.stepsOffset;
  } else if (spacing === "linspace") {
    const lin = numpyLinspace(0, T - 1, steps);
    for (let i = 0; i < steps; i++) out[steps - 1 - i] = roundHalfEven(lin[i]);
  } else {
    const ratio = T / steps;
    for (let i = 0; i < steps; i++) out[i] = roundHalfEven(T - i * ratio) - 1;
  }
  return out;
}

/** sigma(t) = ((1 - acp) / acp) ** 0.5 over the whole training table, in float32 as torch computes it. */
export function sigmaTable(schedule: NoiseSchedule): Float32Array {
  return schedule.alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/** Karras et al. (2022) sigmas, rho 7, from sigmaMax down to sigmaMin in `steps` values (float64). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): Float64Array {
  const rho = 7;
  const ramp = numpyLinspace(0, 1, steps);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * diffusers' _sigma_to_t: the fractional timestep whose log-sigma, interpolated linearly between
 * neighbouring table entries, equals log(sigma); clamped to the table.
 */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low];
  const hi = logSigmas[low + 1];
  const w = Math.min(1, Math.max(0, (lo - logSigma) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}

/** log of the float32 sigma table, rounded to float32 as numpy's float32 log returns it. */
export function logSigmaTable(table: Float32Array): Float32Array {
  return table.map((s) => f32(Math.log(s)));
}
