/**
 * Model architectures: the Linear/Conv2d module tree of SD1, SD2 and SDXL (UNet + text encoders), derived from the
 * families' configs the way diffusers builds the models, and the name mappings built on it (kohya names, original
 * single-file keys, diffusers folder keys).
 */
import { type CheckpointTarget, kohyaName, ModelArchitecture } from "./model.ts";
import { familyPresets, presetFor } from "./presets.ts";
import type {
  Component,
  ModelConfigs,
  ModelFamily,
  ModuleSpec,
  TextEncoderConfig,
  TextEncoderLayout,
  UNetConfig,
} from "./types.ts";

export type { CheckpointTarget } from "./model.ts";
export type { ModelConfigs, ModuleSpec, TextEncoderConfig, TextEncoderLayout, UNetConfig } from "./types.ts";
export { familyPresets, kohyaName, ModelArchitecture };

type KnownFamily = Exclude<ModelFamily, "unknown">;
const cache = new Map<KnownFamily, ModelArchitecture>();

/** The architecture (module tree + lookups) of a family's standard config. */
export function architectureOf(family: ModelFamily): ModelArchitecture {
  if (family === "unknown") throw new Error('No module tree for family "unknown": use moduleTreeFromConfig');
  let arch = cache.get(family);
  if (!arch) {
    arch = new ModelArchitecture(presetFor(family));
    cache.set(family, arch);
  }
  return arch;
}

/** Every Linear and Conv2d of the family's UNet and text encoder(s). */
export function moduleTree(family: KnownFamily): ModuleSpec[] {
  return architectureOf(family).modules;
}

/**
 * The architecture of any model given its diffusers configs (unet/config.json, text_encoder/config.json).
 * A single text encoder is component "te" in the original layout of `layout` (default SD1's CLIP layout).
 */
export function architectureFromConfig(
  unet: UNetConfig,
  textEncoder: TextEncoderConfig | Partial<Record<Component, TextEncoderConfig>>,
  layouts?: Partial<Record<Component, TextEncoderLayout>>,
): ModelArchitecture {
  const single = "hidden_size" in textEncoder;
  const textEncoders = (single ? { te: textEncoder } : textEncoder) as Partial<
    Record<Component, TextEncoderConfig>
  >;
  const defaults: ModelConfigs["textLayouts"] = single
    ? familyPresets.sd1.textLayouts
    : familyPresets.sdxl.textLayouts;
  const configs: ModelConfigs = { unet, textEncoders, textLayouts: { ...defaults, ...layouts } };
  return new ModelArchitecture(configs);
}

export function moduleTreeFromConfig(
  unet: UNetConfig,
  textEncoder: TextEncoderConfig | Partial<Record<Component, TextEncoderConfig>>,
  layouts?: Partial<Record<Component, TextEncoderLayout>>,
): ModuleSpec[] {
  return architectureFromConfig(unet, textEncoder, layouts).modules;
}

/**
 * kohya module name -> component and diffusers path, using the family's module tree ("unknown": tries SD1, SD2,
 * SDXL in turn). SDXL UNet names in the SGM layout (`lora_unet_input_blocks_4_1_...`) map to diffusers paths too.
 */
export function parseKohyaName(
  name: string,
  family: ModelFamily,
): { component: Component; path: string } | undefined {
  const families: KnownFamily[] = family === "unknown" ? ["sd1", "sd2", "sdxl"] : [family];
  for (const f of families) {
    const hit = architectureOf(f).parseKohyaName(name);
    if (hit) return hit;
  }
  return undefined;
}

/** Key (and fused-row slice) of a module's weight in the family's original single-file checkpoint. */
export function originalCheckpointTarget(
  family: ModelFamily,
  component: Component,
  path: string,
): CheckpointTarget {
  return architectureOf(family).originalTarget(component, path);
}

/** File and key of a module's weight in a diffusers folder. */
export function diffusersCheckpointTarget(
  family: ModelFamily,
  component: Component,
  path: string,
): { file: string; key: string } {
  return architectureOf(family).diffusersTarget(component, path);
}
