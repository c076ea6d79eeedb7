/**
 * The Linear layers of a CLIP text encoder (transformers' CLIPTextModel naming, which kohya and diffusers use for
 * every family, OpenCLIP towers included), derived from its config, with each layer's place in the original
 * single-file layout:
 * - "hf-clip" (SD1, SDXL te1): the same path under a prefix;
 * - "open-clip" (SD2, SDXL te2): `transformer.resblocks.N`; q/k/v are row slices [0,d) [d,2d) [2d,3d) of the fused
 *   `attn.in_proj_weight`, out_proj is `attn.out_proj`, fc1/fc2 are `mlp.c_fc` / `mlp.c_proj`.
 */

import type { Component, TextEncoderConfig, TextEncoderLayout } from "./types.ts";
import type { MappedModule } from "./unet.ts";

export interface MappedTextModule extends MappedModule {
  /** Row slice of a fused tensor in the original layout. */
  rows?: [number, number];
}

export function textEncoderModules(
  component: Component,
  config: TextEncoderConfig,
  layout: TextEncoderLayout,
): MappedTextModule[] {
  const d = config.hidden_size;
  const out: MappedTextModule[] = [];
  const add = (
    path: string,
    original: string,
    i: number,
    o: number,
    heads?: number,
    rows?: [number, number],
  ) => {
    const m: MappedTextModule = {
      spec: { component, path, layer: "linear", inFeatures: i, outFeatures: o, kernel: [1, 1] },
      original,
    };
    if (heads !== undefined) m.spec.heads = heads;
    if (rows) m.rows = rows;
    out.push(m);
  };
  for (let n = 0; n < config.num_hidden_layers; n++) {
    const layer = `text_model.encoder.layers.${n}`;
    const h = config.num_attention_heads;
    if (layout.style === "hf-clip") {
      const o = (rel: string) => `${layout.prefix}${layer}.${rel}.weight`;
      for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"])
        add(`${layer}.self_attn.${p}`, o(`self_attn.${p}`), d, d, h);
      add(`${layer}.mlp.fc1`, o("mlp.fc1"), d, config.intermediate_size);
      add(`${layer}.mlp.fc2`, o("mlp.fc2"), config.intermediate_size, d);
    } else {
      const block = `${layout.prefix}transformer.resblocks.${n}`;
      ["q_proj", "k_proj", "v_proj"].forEach((p, k) => {
        add(`${layer}.self_attn.${p}`, `${block}.attn.in_proj_weight`, d, d, h, [k * d, (k + 1) * d]);
      });
      add(`${layer}.self_attn.out_proj`, `${block}.attn.out_proj.weight`, d, d, h);
      add(`${layer}.mlp.fc1`, `${block}.mlp.c_fc.weight`, d, config.intermediate_size);
      add(`${layer}.mlp.fc2`, `${block}.mlp.c_proj.weight`, config.intermediate_size, d);
    }
  }
  return out;
}
