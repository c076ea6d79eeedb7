/**
 * Full fine-tuning step graphs for the demo base model: every weight of the VAE or the UNet is a graph input
 * (`state_in.<diffusers key>`, nn/module.ts graphInputWeights) updated in-graph by optim/appendTrainStep (AdamW).
 *
 * - VAE: x -> encoder -> (mean, logvar) -> z = mean + exp(logvar / 2) * noise -> decoder; loss = mean squared
 *   reconstruction error + klWeight * mean KL(q(z|x) || N(0, 1)) per latent element (the LDM autoencoder objective
 *   without its perceptual and adversarial terms, which a 64 px demo codec does not need).
 * - VAE decoder only: latents -> post_quant_conv + decoder; loss = mean squared reconstruction error (the encoder,
 *   and so the latent space the UNet was trained on, stays as it is).
 * - UNet: epsilon prediction on noised latents with the text embeddings as context; loss = mean squared error
 *   + meanWeight * squared error of the per-channel spatial means.
 */

import type { Graph, UNetModelConfig, VaeConfig, Value } from "@lora-studio/engine";
import {
  add,
  appendTrainStep,
  buildUNetGraph,
  exp,
  GraphBuilder,
  graphInputWeights,
  ModuleContext,
  mul,
  reduceMean,
  reshape,
  slice,
  sub,
  type TrainStepGraph,
  vaeDecodeLatents,
  vaeEncodeMoments,
} from "@lora-studio/engine";

export interface FullFineTuneGraph {
  graph: Graph;
  step: TrainStepGraph;
  /** Every parameter (diffusers key -> shape) in build order. */
  shapes: Map<string, number[]>;
}

function meanSquare(d: Value): Value {
  return reduceMean(mul(d, d), undefined, false);
}

function finish(b: GraphBuilder, loss: Value, shapes: Map<string, number[]>, extra: Record<string, Value>) {
  const params = b.inputs.filter((v) => v.name.startsWith("state_in."));
  const step = appendTrainStep(b, {
    loss,
    params,
    optimizer: { kind: "adamw", weightDecay: 0 },
    maxGradNorm: 1,
  });
  for (const [name, v] of Object.entries(extra)) b.output(v, name);
  return { graph: b.build(), step, shapes };
}

/**
 * Inputs: `image` [B, 3, S, S] in [-1, 1], `noise` [B, 4, S/8, S/8] standard normal, `lr`.
 * Outputs: `loss`, `recon_mse`, `kl` plus the training state.
 */
export function vaeTrainGraph(
  cfg: VaeConfig,
  batch: number,
  size: number,
  klWeight: number,
  guideWeight = 0,
): FullFineTuneGraph {
  const b = new GraphBuilder("demo_vae_train");
  const w = graphInputWeights();
  const ctx = new ModuleContext(b, w);
  const f = 2 ** (cfg.block_out_channels.length - 1);
  const x = b.input("image", "float32", [batch, cfg.in_channels, size, size]);
  const noise = b.input("noise", "float32", [batch, cfg.latent_channels, size / f, size / f]);
  const { mean, logvar } = vaeEncodeMoments(ctx, x, cfg);
  const z = add(mean, mul(exp(mul(logvar, 0.5)), noise));
  const recon = vaeDecodeLatents(ctx, z, cfg);
  const reconMse = meanSquare(sub(recon, x));
  // KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - log sigma^2) / 2, averaged over latent elements.
  const kl = mul(reduceMean(sub(add(mul(mean, mean), exp(logvar)), add(logvar, 1)), undefined, false), 0.5);
  let loss = add(reconMse, mul(kl, klWeight));
  const extra: Record<string, Value> = { recon_mse: reconMse, kl };
  if (guideWeight > 0) {
    // Latent guide: the first three latent channels should follow the picture averaged over f x f blocks. It
    // gives the encoder a direct signal from step one (instead of only through a random decoder), which
    // shortens the "predict the mean colour" plateau of a from-scratch autoencoder, and makes the latents an
    // image-like, smooth space, as SD's are.
    const n = size / f;
    const pooled = reduceMean(reshape(x, [batch, cfg.in_channels, n, f, n, f]), [3, 5], false);
    const guide = meanSquare(sub(slice(mean, [0], [cfg.in_channels], [1]), pooled));
    loss = add(loss, mul(guide, guideWeight));
    extra.guide = guide;
  }
  return finish(b, loss, w.shapes, extra);
}

/**
 * Inputs: `latents` [B, 4, S/8, S/8] (unscaled, as the encoder gives them), `image` [B, 3, S, S] in [-1, 1], `lr`.
 * Outputs: `loss` plus the training state (post_quant_conv and decoder weights only).
 */
export function vaeDecoderTrainGraph(cfg: VaeConfig, batch: number, size: number): FullFineTuneGraph {
  const b = new GraphBuilder("demo_vae_decoder_train");
  const w = graphInputWeights();
  const ctx = new ModuleContext(b, w);
  const f = 2 ** (cfg.block_out_channels.length - 1);
  const z = b.input("latents", "float32", [batch, cfg.latent_channels, size / f, size / f]);
  const x = b.input("image", "float32", [batch, cfg.out_channels, size, size]);
  return finish(b, meanSquare(sub(vaeDecodeLatents(ctx, z, cfg), x)), w.shapes, {});
}

/**
 * Inputs: `sample` (noised latents) [B, 4, h, w], `timestep` [B] float32, `encoder_hidden_states`
 * [B, 77, ctx], `target` (the noise) [B, 4, h, w], `lr`. Outputs: `loss` plus the training state.
 */
export function unetTrainGraph(
  cfg: UNetModelConfig,
  batch: number,
  latentSize: number,
  meanWeight = 0,
): FullFineTuneGraph {
  const w = graphInputWeights();
  const { ctx } = buildUNetGraph(cfg, w, { batch, height: latentSize, width: latentSize, seqLen: 77 });
  const b = ctx.b;
  const out = b.outputs.find((v) => v.name === "out");
  if (!out) throw new Error("UNet graph has no output named out");
  b.outputs.length = 0;
  const target = b.input("target", "float32", [batch, cfg.out_channels, latentSize, latentSize]);
  // The plain MSE weighs the error of each channel's spatial mean by 1/(h*w) of the noise energy, yet for the
  // demo's flat-coloured pictures the latents' channel means ARE the colours: a UNet trained on MSE alone
  // denoises well on average and still samples the wrong colours. The extra term weighs those means up; both
  // terms are minimised by the same predictor E[noise | x_t], so the objective stays unbiased.
  const d = sub(out, target);
  const channelMeans = reduceMean(d, [2, 3], false);
  const loss = add(meanSquare(d), mul(meanSquare(channelMeans), meanWeight));
  return finish(b, loss, w.shapes, { mse: meanSquare(d) });
}
