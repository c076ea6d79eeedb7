/**
 * Which modules get a LoRA, following kohya's sd-scripts (networks/lora.py) so adapters trained here have the
 * module set WebUI / ComfyUI users expect:
 * - UNet: every Linear and 1x1 Conv2d inside a Transformer2DModel (proj_in, attn1/attn2 q/k/v/out, ff, proj_out);
 * - with `convRank` ("LoCon", kohya's conv_dim): also the ResnetBlock2D / Downsample2D / Upsample2D layers, their
 *   Linear and 1x1 convs (time_emb_proj, conv_shortcut) at `rank` and 3x3 convs at `convRank`;
 * - text encoder: every Linear of the attention and MLP blocks.
 * The module lists come from prompt-lora's architecture module, derived from the model configs.
 */
import type { ModuleSpec } from "@lora-studio/prompt-lora";
import type { LoraTargets } from "../nn/module.ts";

export interface KohyaTargetOptions {
  rank: number;
  /** Rank of 3x3 convs (LoCon); omitted = resnets and samplers get no LoRA, as kohya's default. */
  convRank?: number;
}

const IN_TRANSFORMER = /(^|\.)attentions\.\d+\./;
const IN_RESNET_OR_SAMPLER = /(^|\.)(resnets\.\d+|downsamplers\.0|upsamplers\.0)\./;

function rankOf(m: ModuleSpec, o: KohyaTargetOptions): number {
  const small = m.layer === "linear" || (m.kernel[0] === 1 && m.kernel[1] === 1);
  if (m.component !== "unet") return o.rank;
  if (IN_TRANSFORMER.test(m.path)) return small ? o.rank : 0;
  if (o.convRank !== undefined && IN_RESNET_OR_SAMPLER.test(m.path)) return small ? o.rank : o.convRank;
  return 0;
}

/** LoRA targets of one component ("unet", "te", ...) from the model's module tree. */
export function kohyaLoraTargets(
  modules: readonly ModuleSpec[],
  component: string,
  o: KohyaTargetOptions,
): LoraTargets {
  const ranks = new Map<string, number>();
  for (const m of modules) {
    if (m.component !== component) continue;
    const r = rankOf(m, o);
    if (r > 0) ranks.set(m.path, r);
  }
  return { component, ranks };
}
