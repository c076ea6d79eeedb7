/**
 * Which model family a base checkpoint is, from its layout alone (no tensor data read), for commands that
 * need a module tree (`extract`): the text encoder gives it away. Single file: SDXL has
 * `conditioner.embedders.1.*`, SD2 the OpenCLIP `cond_stage_model.model.*`, SD1 the CLIP
 * `cond_stage_model.transformer.*`. Diffusers folder: SDXL has `text_encoder_2/`, SD2's text encoder has
 * hidden size 1024.
 */
import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ModelFamily } from "../../adapters/types.ts";
import { openSafetensors } from "../../safetensors/index.ts";
import { CliError } from "../output.ts";

export async function detectCheckpointFamily(path: string): Promise<Exclude<ModelFamily, "unknown">> {
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, "text_encoder_2"))) return "sdxl";
    const configPath = join(path, "text_encoder", "config.json");
    if (existsSync(configPath)) {
      const config = JSON.parse(await readFile(configPath, "utf8")) as { hidden_size?: number };
      return config.hidden_size === 1024 ? "sd2" : "sd1";
    }
    throw new CliError(`${path}: cannot tell the model family (no text_encoder/config.json): pass --family`);
  }
  const file = await openSafetensors(path);
  try {
    const keys = [...file.tensors.keys()];
    if (keys.some((k) => k.startsWith("conditioner.embedders.1."))) return "sdxl";
    if (keys.some((k) => k.startsWith("cond_stage_model.model."))) return "sd2";
    if (keys.some((k) => k.startsWith("cond_stage_model.transformer."))) return "sd1";
  } finally {
    await file.close();
  }
  throw new CliError(`${path}: cannot tell the model family from its keys: pass --family`);
}
