/**
 * One model's module tree plus the lookups built from it: by diffusers path, by original single-file key,
 * by kohya name. Built once per config (presets are cached by family).
 */
import { type MappedTextModule, textEncoderModules } from "./text-encoder.ts";
import type { Component, ModelConfigs, ModuleSpec } from "./types.ts";
import { unetModules } from "./unet.ts";

export interface CheckpointTarget {
  /** Full key incl. ".weight". */
  key: string;
  /** Row slice of a fused tensor (SD2/SDXL OpenCLIP in_proj_weight). */
  rows?: [number, number];
}

/** Where each component lives in a diffusers folder. */
const DIFFUSERS_FILES: Record<Component, string> = {
  unet: "unet/diffusion_pytorch_model.safetensors",
  te: "text_encoder/model.safetensors",
  te1: "text_encoder/model.safetensors",
  te2: "text_encoder_2/model.safetensors",
};

export const KOHYA_PREFIXES: Record<Component, string> = {
  unet: "lora_unet_",
  te: "lora_te_",
  te1: "lora_te1_",
  te2: "lora_te2_",
};

/** kohya's module name: component prefix + module path with every "." replaced by "_". */
export function kohyaName(component: Component, path: string): string {
  return KOHYA_PREFIXES[component] + path.replaceAll(".", "_");
}

const ORIGINAL_UNET_PREFIX = "model.diffusion_model.";

export class ModelArchitecture {
  readonly modules: ModuleSpec[];
  private readonly mapped = new Map<string, MappedTextModule>();
  private readonly byKohya = new Map<string, ModuleSpec>();
  /** Segment names seen in module paths, per component, for decoding kohya names of layers outside the preset. */
  private readonly vocab = new Map<Component, Set<string>>();
  /** Path shapes (numbers replaced by "#"), per component: a decoded name must have one of them. */
  private readonly patterns = new Map<Component, Set<string>>();

  constructor(readonly configs: ModelConfigs) {
    const all: MappedTextModule[] = [...unetModules(configs.unet)];
    for (const component of Object.keys(configs.textEncoders) as Component[]) {
      const cfg = configs.textEncoders[component];
      const layout = configs.textLayouts[component];
      if (!cfg || !layout)
        throw new Error(`Model config: text encoder ${component} lacks its config or layout`);
      all.push(...textEncoderModules(component, cfg, layout));
    }
    this.modules = all.map((m) => m.spec);
    for (const m of all) {
      const { component, path } = m.spec;
      this.mapped.set(`${component}:${path}`, m);
      this.byKohya.set(kohyaName(component, path), m.spec);
      // SGM-layout UNet names (kohya's SDXL trainer names its UNet modules after the original checkpoint).
      if (component === "unet" && m.original.startsWith(ORIGINAL_UNET_PREFIX)) {
        const sgm = m.original.slice(ORIGINAL_UNET_PREFIX.length, -".weight".length);
        this.byKohya.set(kohyaName("unet", sgm), m.spec);
      }
      const vocab = this.vocab.get(component) ?? new Set<string>();
      for (const seg of path.split(".")) if (!/^\d+$/.test(seg)) vocab.add(seg);
      this.vocab.set(component, vocab);
      const pats = this.patterns.get(component) ?? new Set<string>();
      pats.add(path.replace(/\.\d+(?=\.|$)/g, ".#"));
      this.patterns.set(component, pats);
    }
  }

  find(component: Component, path: string): ModuleSpec | undefined {
    return this.mapped.get(`${component}:${path}`)?.spec;
  }

  components(): Component[] {
    return [...this.vocab.keys()];
  }

  originalTarget(component: Component, path: string): CheckpointTarget {
    const m = this.mapped.get(`${component}:${path}`);
    if (!m) throw new Error(`No ${component} module "${path}" in this model's module tree`);
    return m.rows ? { key: m.original, rows: m.rows } : { key: m.original };
  }

  /**
   * kohya name as kohya's trainers write it: SD1/SD2 use diffusers paths; the SDXL trainer names UNet modules after
   * the original (SGM) layout, `lora_unet_input_blocks_4_1_...` (pass sgmUnet). Falls back to the diffusers path
   * for a module outside this tree.
   */
  kohyaNameOf(component: Component, path: string, sgmUnet: boolean): string {
    const m = this.mapped.get(`${component}:${path}`);
    if (sgmUnet && component === "unet" && m?.original.startsWith(ORIGINAL_UNET_PREFIX)) {
      return kohyaName("unet", m.original.slice(ORIGINAL_UNET_PREFIX.length, -".weight".length));
    }
    return kohyaName(component, path);
  }

  diffusersTarget(component: Component, path: string): { file: string; key: string } {
    if (!this.mapped.has(`${component}:${path}`))
      throw new Error(`No ${component} module "${path}" in this model's module tree`);
    return { file: DIFFUSERS_FILES[component], key: `${path}.weight` };
  }

  /**
   * kohya name -> module. Exact names of this tree first (diffusers or SGM UNet naming); otherwise the name is
   * decoded by splitting its underscores back into this model's path segments, accepted only when the result has
   * the shape of a real path (so a model with more blocks than the preset still maps).
   */
  parseKohyaName(name: string): { component: Component; path: string } | undefined {
    const exact = this.byKohya.get(name);
    if (exact) return { component: exact.component, path: exact.path };
    for (const component of this.components()) {
      const prefix = KOHYA_PREFIXES[component];
      if (!name.startsWith(prefix)) continue;
      const path = this.decode(component, name.slice(prefix.length));
      if (path) return { component, path };
    }
    return undefined;
  }

  private decode(component: Component, rest: string): string | undefined {
    const vocab = this.vocab.get(component);
    const patterns = this.patterns.get(component);
    if (!vocab || !patterns) return undefined;
    const tokens = rest.split("_");
    const maxJoin = 4;
    // Depth-first over segmentations, longest segment first; segments are numbers or known names.
    const walk = (at: number, segs: string[]): string | undefined => {
      if (at === tokens.length) {
        const path = segs.join(".");
        return patterns.has(path.replace(/\.\d+(?=\.|$)/g, ".#")) ? path : undefined;
      }
      for (let n = Math.min(maxJoin, tokens.length - at); n >= 1; n--) {
        const seg = tokens.slice(at, at + n).join("_");
        if ((n === 1 && /^\d+$/.test(seg)) || vocab.has(seg)) {
          const found = walk(at + n, [...segs, seg]);
          if (found) return found;
        }
      }
      return undefined;
    };
    return walk(0, []);
  }
}
