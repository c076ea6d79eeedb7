/**
 * The UNet LoRA training step as ONE graph (one session.run = one micro-step):
 *   UNet(noisy latents, timesteps, text embeddings) with trainable LoRA down/up inputs (frozen base weights stay
 *   external initializers) -> loss = mean_b( w_b * mean_chw((out - target)^2) ) -> gradients w.r.t. the LoRA
 *   parameters only -> optimizer update (optim/appendTrainStep: AdamW / SGD / Lion, clipping, accumulation,
 *   NaN/Inf guard).
 * The per-sample weights w_b are an input so min-SNR-gamma weighting (or none: all ones) needs no rebuild; the
 * target (noise for epsilon, velocity for v-prediction) is computed by the caller, like kohya's train_network.py
 * computes it outside the model. The learning rate is an input (`lr`), so schedules need no rebuild either.
 *
 * Inputs: `sample` [B, C, h, w], `timestep` float32 [B], `encoder_hidden_states` [B, S, ctx], `target` like
 * sample, `loss_weight` [B], `lr` [], one `lora.unet.<path>.scale` [] per module (alpha / rank), and the state
 * (`state_in.lora.unet.<path>.down|up`, optimizer moments, counters). Outputs: `loss`, `grad_norm`,
 * `nonfinite` (+ `applied` with accumulation) and the `state_out.*` values.
 */

import type { GraphBuilder } from "../graph/builder.ts";
import type { Graph, Value } from "../graph/ir.ts";
import { div, mul, reduceMean, reduceSum, reshape, sub } from "../graph/ops/index.ts";
import type { UNetModelConfig } from "../models/configs.ts";
import { buildUNetGraph } from "../models/unet/unet.ts";
import type { ComputeDType, ModuleContext, WeightSource } from "../nn/module.ts";
import type { OptimizerConfig } from "../optim/optimizers.ts";
import { appendTrainStep, type TrainStepGraph } from "../optim/train-step.ts";

export interface LoraTrainStepOptions {
  batch: number;
  /** Latent height and width (image size / VAE factor). */
  height: number;
  width: number;
  seqLen?: number;
  /** Rank per UNet module path (diffusers paths). */
  ranks: ReadonlyMap<string, number>;
  optimizer: OptimizerConfig;
  maxGradNorm?: number;
  accumulationSteps?: number;
  gradientCheckpointing?: boolean;
  /**
   * "float16": the UNet computes in fp16 (GPU mixed precision; LoRA master weights, moments and the loss stay
   * float32) with dynamic loss scaling (torch GradScaler defaults, optim/loss-scale.ts). Default "float32".
   */
  computeDType?: ComputeDType;
}

export interface LoraModuleInfo {
  path: string;
  rank: number;
  downShape: number[];
  upShape: number[];
  /** Graph input names. */
  downInput: string;
  upInput: string;
  scaleInput: string;
  /** State names (runner convention: graph input `state_in.<name>`). */
  downState: string;
  upState: string;
}

export interface LoraTrainStep {
  graph: Graph;
  step: TrainStepGraph;
  modules: LoraModuleInfo[];
  /** Sessions must disable these ORT optimizers (gradient checkpointing). */
  disabledOptimizers: string[];
}

const STATE_IN = "state_in.";

export function buildLoraTrainStep(
  cfg: UNetModelConfig,
  weights: WeightSource,
  o: LoraTrainStepOptions,
): LoraTrainStep {
  if (o.ranks.size === 0) throw new Error("buildLoraTrainStep: no LoRA modules (ranks is empty)");
  const { ctx } = buildUNetGraph(cfg, weights, {
    batch: o.batch,
    height: o.height,
    width: o.width,
    seqLen: o.seqLen,
    timestepDType: "float32",
    lora: { component: "unet", ranks: o.ranks, trainable: true },
    gradientCheckpointing: o.gradientCheckpointing,
    computeDType: o.computeDType,
  });
  const b = ctx.b;
  const out = b.outputs.find((v) => v.name === "out");
  if (!out) throw new Error("buildLoraTrainStep: the UNet graph has no output 'out'");
  // The UNet's own output is not needed by the training step; drop it so ORT does not return it.
  b.outputs.splice(b.outputs.indexOf(out), 1);
  const loss = diffusionLoss(b, out, o.batch);
  const params = ctx.loraInputs.flatMap((l) => [l.down, l.up]);
  const step = appendTrainStep(b, {
    loss: reshape(loss, []),
    params,
    optimizer: o.optimizer,
    maxGradNorm: o.maxGradNorm,
    accumulationSteps: o.accumulationSteps,
    lossScaling: o.computeDType === "float16" ? { kind: "dynamic" } : undefined,
  });
  const modules = loraModuleInfos(ctx.loraInputs);
  return { graph: b.build(), step, modules, disabledOptimizers: step.disabledOptimizers };
}

/**
 * The training loss on the model output `out` [B, C, H, W], with the inputs `target` (like out) and
 * `loss_weight` [B]: per-sample mean over C, H, W, then the weighted batch mean (kohya: loss.mean([1,2,3]) * w,
 * then mean()). Returns a one-element value.
 */
export function diffusionLoss(b: GraphBuilder, out: Value, batch: number): Value {
  const target = b.input("target", "float32", [...out.shape]);
  const weightsIn = b.input("loss_weight", "float32", [batch]);
  const diff = sub(out, target);
  const perSample = reduceMean(mul(diff, diff), [1, 2, 3], false);
  return div(reduceSum(mul(perSample, weightsIn), undefined, false), batch);
}

/** What callers need to know about each trainable LoRA module a model context created. */
export function loraModuleInfos(loraInputs: ModuleContext["loraInputs"]): LoraModuleInfo[] {
  return loraInputs.map((l) => ({
    path: l.path,
    rank: l.down.shape[0],
    downShape: [...l.down.shape],
    upShape: [...l.up.shape],
    downInput: l.down.name,
    upInput: l.up.name,
    scaleInput: l.scale.name,
    downState: l.down.name.slice(STATE_IN.length),
    upState: l.up.name.slice(STATE_IN.length),
  }));
}
