/**
 * Saves the demo base model the way users' SD1 models come: ONE .safetensors in the original (LDM) layout
 * (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`), in float16, next to a
 * `tokenizer/` folder (CLIP format) and a `model_info.json` with the diffusers-style configs and the build's
 * figures. The diffusers -> original key mapping is the engine loader's own (models/loader/original-keys.ts),
 * so whatever this writes, openCheckpoint reads back key for key.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { ClipTextConfig, KeyMapper, UNetModelConfig, VaeConfig } from "@lora-studio/engine";
import { architectureFor, textEncoderKeyMapper, unetKeyMapper, vaeKeyMapper } from "@lora-studio/engine";
import type { TensorToWrite } from "@lora-studio/prompt-lora";
import { atomicWriteFile, f32ToF16, writeSafetensors } from "@lora-studio/prompt-lora";
import type { StateMap } from "./base-init.ts";
import { type TrainedBpe, writeTokenizerFolder } from "./bpe-trainer.ts";

export const DEMO_BASE_FILE = "demo-base.safetensors";
const TE_PREFIX = "cond_stage_model.transformer.";

export interface DemoBaseParts {
  unet: StateMap;
  vae: StateMap;
  textEncoder: StateMap;
  configs: { unet: UNetModelConfig; vae: VaeConfig; textEncoder: ClipTextConfig };
  tokenizer: TrainedBpe;
  /** Build figures (losses, steps, seconds) recorded in model_info.json. */
  build: Record<string, unknown>;
}

function mapped(component: string, state: StateMap, mapKey: KeyMapper): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const [key, t] of state) {
    const target = mapKey(key);
    if (typeof target !== "string")
      throw new Error(`${component} parameter ${key} has no single tensor in the original layout`);
    // The LDM VAE stores its attention projections as 1x1 convolutions.
    const shape =
      component === "vae" && /mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(target) && t.shape.length === 2
        ? [...t.shape, 1, 1]
        : t.shape;
    out.push({ name: target, dtype: "F16", shape, data: new Uint8Array(f32ToF16(t.data).buffer) });
  }
  return out;
}

/** Writes `<dir>/demo-base.safetensors`, `<dir>/tokenizer/`, `<dir>/model_info.json`; returns the file path. */
export async function writeDemoBase(dir: string, parts: DemoBaseParts): Promise<string> {
  await mkdir(dir, { recursive: true });
  const { unet, vae, textEncoder } = parts.configs;
  const arch = architectureFor(unet, textEncoder, TE_PREFIX, "hf-clip");
  const tensors = [
    ...mapped("unet", parts.unet, unetKeyMapper(arch)),
    ...mapped("vae", parts.vae, vaeKeyMapper(vae.block_out_channels.length)),
    ...mapped("text_encoder", parts.textEncoder, textEncoderKeyMapper(TE_PREFIX)),
  ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const file = join(dir, DEMO_BASE_FILE);
  await writeSafetensors(file, tensors, {
    "modelspec.sai_model_spec": "1.0.0",
    "modelspec.architecture": "stable-diffusion-v1",
    "modelspec.title": "lora-studio demo base (tiny SD1)",
    "modelspec.resolution": "64x64",
    "modelspec.prediction_type": "epsilon",
  });
  await writeTokenizerFolder(join(dir, "tokenizer"), parts.tokenizer);
  const info = {
    name: "lora-studio demo base",
    note: "Built by packages/trainer/scripts/build-demo-base.ts with this engine; not a real Stable Diffusion model.",
    unet: parts.configs.unet,
    vae: parts.configs.vae,
    text_encoder: parts.configs.textEncoder,
    tokenizer: "tokenizer/ (CLIP-format byte-level BPE trained on the demo captions)",
    build: parts.build,
  };
  await atomicWriteFile(join(dir, "model_info.json"), `${JSON.stringify(info, null, 2)}\n`);
  return file;
}
