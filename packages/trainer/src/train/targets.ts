/**
 * Which UNet modules get a LoRA, and at which rank, from the config: kohya's default set (every Linear and 1x1
 * conv inside the transformer blocks; with conv_rank, LoCon's resnet / sampler layers too, 3x3 convs at
 * conv_rank) narrowed by `target_modules` (peft-style whole-segment suffixes such as "to_q", "ff.net.2"). A
 * target naming a module outside kohya's default set (e.g. "time_emb_proj") adds it, at lora_rank (3x3 convs at
 * conv_rank, or lora_rank when conv_rank is unset). With train_text_encoder, the text encoder's attention and MLP
 * Linears too (textEncoderLoraRanks).
 */
import type { ModuleSpec } from "@lora-studio/prompt-lora";
import type { TrainConfig } from "../config/schema.ts";
import { targetModulePredicate } from "../config/targets.ts";

const IN_RESNET_OR_SAMPLER = /(^|\.)(resnets\.\d+|downsamplers\.0|upsamplers\.0)\./;
const IN_CLIP_ATTENTION_OR_MLP = /\.encoder\.layers\.\d+\.(self_attn|mlp)\./;

export class TargetError extends Error {
  override name = "TargetError";
}

export function unetLoraRanks(
  modules: readonly ModuleSpec[],
  config: Pick<TrainConfig, "target_modules" | "lora_rank" | "conv_rank">,
): Map<string, number> {
  const wanted = targetModulePredicate(config.target_modules);
  const ranks = new Map<string, number>();
  for (const m of modules) {
    if (m.component !== "unet") continue;
    const small = m.layer === "linear" || (m.kernel[0] === 1 && m.kernel[1] === 1);
    if (config.conv_rank !== undefined && IN_RESNET_OR_SAMPLER.test(m.path)) {
      ranks.set(m.path, small ? config.lora_rank : config.conv_rank);
    } else if (wanted(m.path)) {
      ranks.set(m.path, small ? config.lora_rank : (config.conv_rank ?? config.lora_rank));
    }
  }
  if (ranks.size === 0) {
    throw new TargetError(
      `target_modules ${JSON.stringify(config.target_modules)} match no UNet module of this model ` +
        `(e.g. "to_q", "to_k", "to_v", "to_out.0", "proj_in", "ff.net.2")`,
    );
  }
  return ranks;
}

/**
 * Text-encoder modules for train_text_encoder: kohya's set is every Linear inside CLIPAttention and CLIPMLP
 * (self_attn.q_proj / k_proj / v_proj / out_proj, mlp.fc1 / fc2 of each encoder layer), all at lora_rank,
 * narrowed by the same `target_modules` as the UNet: the default list names all six ("q_proj", ..., "fc2"); a
 * list of UNet names only ("to_q", "to_v") selects no text-encoder module, which is an error rather than a
 * silent UNet-only run.
 */
export function textEncoderLoraRanks(
  modules: readonly ModuleSpec[],
  config: Pick<TrainConfig, "target_modules" | "lora_rank">,
): Map<string, number> {
  const wanted = targetModulePredicate(config.target_modules);
  const ranks = new Map<string, number>();
  for (const m of modules) {
    if (m.component !== "te" || m.layer !== "linear" || !IN_CLIP_ATTENTION_OR_MLP.test(m.path)) continue;
    if (wanted(m.path)) ranks.set(m.path, config.lora_rank);
  }
  if (ranks.size === 0) {
    throw new TargetError(
      `train_text_encoder: target_modules ${JSON.stringify(config.target_modules)} match no text-encoder module ` +
        `of this model; add some of "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"`,
    );
  }
  return ranks;
}

/** The alpha of a module: conv_alpha for 3x3 convs trained at conv_rank, lora_alpha otherwise. */
export function moduleAlpha(
  spec: Pick<ModuleSpec, "layer" | "kernel">,
  config: Pick<TrainConfig, "lora_alpha" | "conv_rank" | "conv_alpha">,
): number {
  const big = spec.layer === "conv" && (spec.kernel[0] !== 1 || spec.kernel[1] !== 1);
  return big && config.conv_rank !== undefined ? (config.conv_alpha ?? config.conv_rank) : config.lora_alpha;
}

/**
 * One line saying what is trained, for the run's log and the dry-run plan: the modules, rank/alpha and each
 * component's base learning rate (unet_lr / text_encoder_lr falling back to learning_rate, as kohya).
 */
export function trainingSummary(
  config: Pick<
    TrainConfig,
    "lora_rank" | "lora_alpha" | "learning_rate" | "unet_lr" | "text_encoder_lr" | "train_text_encoder"
  >,
  unetModules: number,
  teModules: number,
): string {
  const lr = (v: number) => v.toExponential(2);
  const unet = `${unetModules} UNet modules (lr ${lr(config.unet_lr ?? config.learning_rate)})`;
  const te = config.train_text_encoder
    ? ` + ${teModules} text-encoder modules (lr ${lr(config.text_encoder_lr ?? config.learning_rate)})`
    : "; text encoder frozen";
  return `LoRA: ${unet}${te}, rank ${config.lora_rank}, alpha ${config.lora_alpha}`;
}
