/** The SD1.5 UNet inputs the benches feed: constant latents, timestep 500, a constant text context. */
import type { HostTensor } from "../src/runtime/tensor.ts";

export function unetBenchFeeds(latent: number): Record<string, HostTensor> {
  return {
    sample: {
      dtype: "float32",
      shape: [1, 4, latent, latent],
      data: new Float32Array(4 * latent * latent).fill(0.1),
    },
    timestep: { dtype: "float32", shape: [1], data: Float32Array.of(500) },
    encoder_hidden_states: {
      dtype: "float32",
      shape: [1, 77, 768],
      data: new Float32Array(77 * 768).fill(0.01),
    },
  };
}
