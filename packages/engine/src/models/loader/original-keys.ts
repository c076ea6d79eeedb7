/**
 * diffusers state-dict key -> key in the original single-file (LDM) layout, per component.
 *
 * UNet and text encoder Linear/Conv2d weights come from prompt-lora's architecture module (the one mapping the
 * LoRA tools use as well), biases sit next to their weights, and the remaining UNet parameters (norms) are placed
 * relative to a neighbouring layer: a resnet's norm1/norm2 are in_layers.0/out_layers.0 beside conv1
 * (in_layers.2) and conv2 (out_layers.3); a transformer's norm sits beside proj_in; a transformer block's
 * norm1..3 beside its attn1. The VAE, outside the LoRA tree, is mapped by its own renaming rules below.
 */
import { architectureFromConfig, type ModelArchitecture } from "@lora-studio/prompt-lora";
import type { ClipTextConfig, UNetModelConfig } from "../configs.ts";
import type { KeyMapper } from "./weights.ts";

const UNET = "model.diffusion_model.";

/** The architecture module's view of our configs (its config types are subsets of ours). */
export function architectureFor(
  unet: UNetModelConfig,
  te: ClipTextConfig,
  tePrefix: string,
  teStyle: "hf-clip" | "open-clip" = "hf-clip",
): ModelArchitecture {
  return architectureFromConfig(unet, te, { te: { style: teStyle, prefix: tePrefix } });
}

function splitKey(key: string): [string, string] {
  const dot = key.lastIndexOf(".");
  return [key.slice(0, dot), key.slice(dot + 1)];
}

/** Original module prefix (no trailing ".weight") of a UNet module path, or undefined. */
function unetModule(arch: ModelArchitecture, path: string): string | undefined {
  const layerKey = (p: string): string | undefined =>
    arch.find("unet", p) ? arch.originalTarget("unet", p).key.replace(/\.weight$/, "") : undefined;
  const direct = layerKey(path);
  if (direct) return direct;
  if (path === "conv_norm_out") return `${UNET}out.0`;
  const [parent, leaf] = splitKey(path);
  if (leaf === "norm1")
    return (
      layerKey(`${parent}.conv1`)?.replace(/in_layers\.2$/, "in_layers.0") ??
      layerKey(`${parent}.attn1.to_q`)?.replace(/attn1\.to_q$/, "norm1")
    );
  if (leaf === "norm2")
    return (
      layerKey(`${parent}.conv2`)?.replace(/out_layers\.3$/, "out_layers.0") ??
      layerKey(`${parent}.attn1.to_q`)?.replace(/attn1\.to_q$/, "norm2")
    );
  if (leaf === "norm3") return layerKey(`${parent}.attn1.to_q`)?.replace(/attn1\.to_q$/, "norm3");
  if (leaf === "norm") return layerKey(`${parent}.proj_in`)?.replace(/proj_in$/, "norm");
  return undefined;
}

export function unetKeyMapper(arch: ModelArchitecture): KeyMapper {
  return (key) => {
    const [path, param] = splitKey(key);
    const m = unetModule(arch, path);
    return m === undefined ? undefined : `${m}.${param}`;
  };
}

/** hf-clip layout: the transformers keys under a prefix ("cond_stage_model.transformer."). */
export function textEncoderKeyMapper(prefix: string): KeyMapper {
  return (key) => prefix + key;
}

const OPEN_CLIP_NAMES: [RegExp, string][] = [
  [/^text_model\.embeddings\.token_embedding\.weight$/, "token_embedding.weight"],
  [/^text_model\.embeddings\.position_embedding\.weight$/, "positional_embedding"],
  [/^text_model\.final_layer_norm\.(weight|bias)$/, "ln_final.$1"],
  [/^text_model\.encoder\.layers\.(\d+)\.layer_norm1\.(weight|bias)$/, "transformer.resblocks.$1.ln_1.$2"],
  [/^text_model\.encoder\.layers\.(\d+)\.layer_norm2\.(weight|bias)$/, "transformer.resblocks.$1.ln_2.$2"],
];

/**
 * OpenCLIP layout (SD2 `cond_stage_model.model.`): Linear weights (incl. row slices of the fused
 * attn.in_proj_weight) from the architecture module, their biases beside them (in_proj_bias, same rows), and the
 * norms / embeddings renamed here.
 */
export function openClipKeyMapper(arch: ModelArchitecture, prefix: string): KeyMapper {
  return (key) => {
    const [path, param] = splitKey(key);
    if (arch.find("te", path)) {
      const t = arch.originalTarget("te", path);
      const stored =
        param === "weight" ? t.key : t.key.replace(/_weight$/, "_bias").replace(/\.weight$/, ".bias");
      return t.rows ? { key: stored, rows: t.rows } : stored;
    }
    for (const [re, to] of OPEN_CLIP_NAMES) if (re.test(key)) return prefix + key.replace(re, to);
    return undefined;
  };
}

const VAE_RESNET: Record<string, string> = { conv_shortcut: "nin_shortcut" };
const VAE_ATTENTION: Record<string, string> = {
  group_norm: "norm",
  to_q: "q",
  to_k: "k",
  to_v: "v",
  "to_out.0": "proj_out",
};

/** Renaming rules for the part of a VAE key after "encoder." / "decoder."; `levels` = len(block_out_channels). */
function vaeRules(levels: number): [RegExp, (m: RegExpExecArray) => string | undefined][] {
  const upLevel = (i: string) => levels - 1 - Number(i);
  return [
    [/^(conv_in|conv_out)$/, (m) => m[1]],
    [/^conv_norm_out$/, () => "norm_out"],
    [/^mid_block\.resnets\.(\d+)\.(.+)$/, (m) => `mid.block_${Number(m[1]) + 1}.${VAE_RESNET[m[2]] ?? m[2]}`],
    [
      /^mid_block\.attentions\.0\.(.+)$/,
      (m) => (VAE_ATTENTION[m[1]] ? `mid.attn_1.${VAE_ATTENTION[m[1]]}` : undefined),
    ],
    [
      /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      (m) => `down.${m[1]}.block.${m[2]}.${VAE_RESNET[m[3]] ?? m[3]}`,
    ],
    [
      /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      (m) => `up.${upLevel(m[1])}.block.${m[2]}.${VAE_RESNET[m[3]] ?? m[3]}`,
    ],
    [/^down_blocks\.(\d+)\.downsamplers\.0\.conv$/, (m) => `down.${m[1]}.downsample.conv`],
    [/^up_blocks\.(\d+)\.upsamplers\.0\.conv$/, (m) => `up.${upLevel(m[1])}.upsample.conv`],
  ];
}

/** AutoencoderKL: diffusers names -> LDM names under "first_stage_model.". */
export function vaeKeyMapper(levels: number): KeyMapper {
  const P = "first_stage_model.";
  const rules = vaeRules(levels);
  return (key) => {
    const [path, param] = splitKey(key);
    if (path === "quant_conv" || path === "post_quant_conv") return `${P}${path}.${param}`;
    const side = path.startsWith("encoder.")
      ? "encoder"
      : path.startsWith("decoder.")
        ? "decoder"
        : undefined;
    if (!side) return undefined;
    const rest = path.slice(side.length + 1);
    for (const [re, to] of rules) {
      const m = re.exec(rest);
      if (!m) continue;
      const mapped = to(m);
      return mapped === undefined ? undefined : `${P}${side}.${mapped}.${param}`;
    }
    return undefined;
  };
}
