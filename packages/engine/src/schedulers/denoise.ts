/**
 * The model-agnostic denoising loop and classifier-free guidance, as StableDiffusionPipeline runs
 * them: latents *= init_noise_sigma; for each timestep: model(scale_model_input(latents), t) ->
 * guidance -> latents = step(...). The model is a callback, so any UNet (graph, baked, oracle) fits.
 */
import { SchedulerError } from "./errors.ts";
import type { Sampler } from "./samplers/types.ts";
import { f32 } from "./torch-numerics.ts";

/** The model: latents as the sampler scaled them and the timestep; returns epsilon or v (per the sampler's prediction). */
export type Predict = (latents: Float32Array, timestep: number, index: number) => Promise<Float32Array>;

/** uncond + scale * (cond - uncond), as float32 tensor ops (diffusers' noise_pred_uncond + g * (text - uncond)). */
export function classifierFreeGuidance(
  uncond: Float32Array,
  cond: Float32Array,
  scale: number,
): Float32Array {
  if (uncond.length !== cond.length) {
    throw new SchedulerError(
      "SHAPE_MISMATCH",
      "classifierFreeGuidance",
      `uncond has ${uncond.length} values, cond ${cond.length}`,
    );
  }
  const out = new Float32Array(cond.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(uncond[i] + f32(scale * f32(cond[i] - uncond[i])));
  return out;
}

/**
 * Guidance on a model run with batch [uncond..., cond...] (the first half unconditional), as the
 * pipeline's noise_pred.chunk(2).
 */
export function guideBatchedOutput(output: Float32Array, scale: number): Float32Array {
  if (output.length % 2 !== 0)
    throw new SchedulerError("SHAPE_MISMATCH", "guideBatchedOutput", "output length is odd");
  const half = output.length / 2;
  return classifierFreeGuidance(output.subarray(0, half), output.subarray(half), scale);
}

export interface DenoiseOptions {
  sampler: Sampler;
  /** Unit-variance initial noise (the pipeline's `latents`); multiplied by init_noise_sigma here. */
  latents: Float32Array;
  predict: Predict;
  /** Called with the latents after each sampler step (the diffusers callback's view). */
  onStep?: (index: number, latents: Float32Array) => void | Promise<void>;
}

/** Runs every model call of the sampler; returns the final latents (before VAE scaling). */
export async function denoise(o: DenoiseOptions): Promise<Float32Array> {
  const { sampler } = o;
  let latents: Float32Array =
    sampler.initNoiseSigma === 1 ? o.latents.slice() : o.latents.map((v) => f32(v * sampler.initNoiseSigma));
  for (let i = 0; i < sampler.timesteps.length; i++) {
    const modelInput = sampler.scaleModelInput(latents, i);
    const output = await o.predict(modelInput, sampler.timesteps[i], i);
    if (output.length !== latents.length) {
      throw new SchedulerError(
        "SHAPE_MISMATCH",
        "predict",
        `returned ${output.length} values for ${latents.length} latents at call ${i}`,
      );
    }
    latents = sampler.step(output, i, latents);
    await o.onStep?.(i, latents);
  }
  return latents;
}
