/**
 * The joint text-encoder + UNet LoRA training step as ONE graph (kohya's train_network.py without
 * network_train_unet_only): token ids -> CLIP text encoder with trainable LoRA inputs on its attention and MLP
 * Linears (component "te") -> UNet with trainable LoRA inputs (component "unet") -> the same loss as
 * buildLoraTrainStep -> gradients of both LoRAs -> one optimizer update with two parameter groups, so each
 * component has its own learning rate (kohya: text_encoder_lr / unet_lr) while gradient clipping uses the global
 * norm over both (kohya clips network.get_trainable_params() together).
 *
 * Inputs: `input_ids` int64 [B, S] instead of `encoder_hidden_states`, then as buildLoraTrainStep: `sample`,
 * `timestep`, `target`, `loss_weight`, one `.scale` per module; learning rates `lr.unet` and `lr.te`; state
 * `state_in.lora.unet.<path>.down|up`, `state_in.lora.te.<path>.down|up`, the optimizer moments per group
 * (`optimizer.unet.*`, `optimizer.te.*`) and counters. With computeDType "float16" both models compute in fp16
 * (the text encoder's output enters the UNet without a round trip through float32) and the loss is scaled
 * dynamically, as in buildLoraTrainStep.
 */

import { GraphBuilder } from "../graph/builder.ts";
import { reshape } from "../graph/ops/index.ts";
import { clipTextEncoder } from "../models/clip-text.ts";
import type { ClipTextConfig, UNetModelConfig } from "../models/configs.ts";
import { buildUNetGraph } from "../models/unet/unet.ts";
import { ModuleContext, type WeightSource } from "../nn/module.ts";
import { appendTrainStep } from "../optim/train-step.ts";
import {
  diffusionLoss,
  type LoraModuleInfo,
  type LoraTrainStep,
  type LoraTrainStepOptions,
  loraModuleInfos,
} from "./lora-train-step.ts";

/** Parameter-group names of the joint step (learning-rate inputs `lr.unet`, `lr.te`). */
export const UNET_GROUP = "unet";
export const TEXT_ENCODER_GROUP = "te";

export interface JointLoraTrainStepOptions extends LoraTrainStepOptions {
  textEncoder: {
    config: ClipTextConfig;
    weights: WeightSource;
    /** Rank per text-encoder module path (transformers paths, "text_model.encoder.layers.0.self_attn.q_proj"). */
    ranks: ReadonlyMap<string, number>;
    /** 1 = last layer; 2 = penultimate layer + final_layer_norm (as the frozen encoder with clip skip). */
    clipSkip?: number;
  };
}

export interface JointLoraTrainStep extends LoraTrainStep {
  /** `modules` are the UNet's; these the text encoder's (state `lora.te.<path>.down|up`). */
  teModules: LoraModuleInfo[];
  /** Learning-rate input name per group: { unet: "lr.unet", te: "lr.te" }. */
  lrInputs: { unet: string; te: string };
}

export function buildJointLoraTrainStep(
  cfg: UNetModelConfig,
  weights: WeightSource,
  o: JointLoraTrainStepOptions,
): JointLoraTrainStep {
  const te = o.textEncoder;
  if (o.ranks.size === 0) throw new Error("buildJointLoraTrainStep: no UNet LoRA modules (ranks is empty)");
  if (te.ranks.size === 0)
    throw new Error("buildJointLoraTrainStep: no text-encoder LoRA modules (textEncoder.ranks is empty)");
  const seqLen = o.seqLen ?? 77;
  const b = new GraphBuilder("lora_joint_train_step");
  const teCtx = new ModuleContext(
    b,
    te.weights,
    { component: "te", ranks: te.ranks, trainable: true },
    o.computeDType,
  );
  const ids = b.input("input_ids", "int64", [o.batch, seqLen]);
  const hidden = clipTextEncoder(teCtx, ids, te.config, {
    clipSkip: te.clipSkip,
    gradientCheckpointing: o.gradientCheckpointing,
  });
  if (hidden.shape[2] !== cfg.cross_attention_dim) {
    throw new Error(
      `buildJointLoraTrainStep: the text encoder's width ${hidden.shape[2]} is not the UNet's cross_attention_dim ${cfg.cross_attention_dim}`,
    );
  }
  const { ctx } = buildUNetGraph(cfg, weights, {
    batch: o.batch,
    height: o.height,
    width: o.width,
    seqLen,
    timestepDType: "float32",
    lora: { component: "unet", ranks: o.ranks, trainable: true },
    gradientCheckpointing: o.gradientCheckpointing,
    computeDType: o.computeDType,
    builder: b,
    encoderHiddenStates: hidden,
  });
  const out = b.outputs.find((v) => v.name === "out");
  if (!out) throw new Error("buildJointLoraTrainStep: the UNet graph has no output 'out'");
  b.outputs.splice(b.outputs.indexOf(out), 1);
  const loss = diffusionLoss(b, out, o.batch);
  const unetParams = ctx.loraInputs.flatMap((l) => [l.down, l.up]);
  const teParams = teCtx.loraInputs.flatMap((l) => [l.down, l.up]);
  if (teParams.length === 0) {
    throw new Error(
      `buildJointLoraTrainStep: none of the text-encoder LoRA paths exist in the model (e.g. ${[...te.ranks.keys()][0]})`,
    );
  }
  const step = appendTrainStep(b, {
    loss: reshape(loss, []),
    groups: [
      { name: UNET_GROUP, params: unetParams },
      { name: TEXT_ENCODER_GROUP, params: teParams },
    ],
    optimizer: o.optimizer,
    maxGradNorm: o.maxGradNorm,
    accumulationSteps: o.accumulationSteps,
    // As buildLoraTrainStep: fp16 compute needs dynamic loss scaling.
    lossScaling: o.computeDType === "float16" ? { kind: "dynamic" } : undefined,
  });
  return {
    graph: b.build(),
    step,
    modules: loraModuleInfos(ctx.loraInputs),
    teModules: loraModuleInfos(teCtx.loraInputs),
    lrInputs: { unet: step.lrInputs[UNET_GROUP], te: step.lrInputs[TEXT_ENCODER_GROUP] },
    disabledOptimizers: step.disabledOptimizers,
  };
}
