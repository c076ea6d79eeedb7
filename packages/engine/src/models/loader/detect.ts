/**
 * Model family from a checkpoint's keys and shapes (single file) or configs (diffusers folder).
 *
 * SD2-512 (stable-diffusion-2-base, epsilon) and SD2-768-v (v-prediction) have identical tensors; the safetensors
 * "modelspec" metadata says which, otherwise the file name ("512"/"base" vs "768"/"-v"); failing both, 768-v is
 * assumed (the common SD2.x release) and the evidence says so. Callers can override the prediction type.
 */
import { basename } from "node:path";
import type { ShapeMap } from "./derive-configs.ts";

export type ModelFamilyId = "sd1" | "sd2-512" | "sd2-768-v" | "sdxl" | "unknown";

export interface FamilyDetection {
  family: ModelFamilyId;
  /** Human-readable reason, shown in reports ("keys cond_stage_model.transformer.* + context width 768"). */
  evidence: string;
}

const CONTEXT_KEY = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight";

function sd2Variant(metadata: Record<string, string>, path: string, why: string): FamilyDetection {
  const spec =
    `${metadata["modelspec.architecture"] ?? ""} ${metadata["modelspec.prediction_type"] ?? ""}`.toLowerCase();
  if (/\bv\b|v[-_]?pred|768-v/.test(spec))
    return { family: "sd2-768-v", evidence: `${why}; modelspec metadata says v-prediction` };
  if (/epsilon|512/.test(spec))
    return { family: "sd2-512", evidence: `${why}; modelspec metadata says epsilon/512` };
  const name = basename(path).toLowerCase();
  if (/512|base/.test(name))
    return { family: "sd2-512", evidence: `${why}; file name suggests the 512 (epsilon) model` };
  if (/768|-v\b|_v\b/.test(name))
    return { family: "sd2-768-v", evidence: `${why}; file name suggests the 768-v model` };
  return { family: "sd2-768-v", evidence: `${why}; 512 vs 768-v cannot be told from tensors, assumed 768-v` };
}

export function detectSingleFileFamily(
  shapes: ShapeMap,
  metadata: Record<string, string>,
  path: string,
): FamilyDetection {
  const keys = [...shapes.keys()];
  const has = (prefix: string) => keys.some((k) => k.startsWith(prefix));
  if (has("conditioner.embedders."))
    return { family: "sdxl", evidence: "keys conditioner.embedders.* (SGM layout)" };
  if (has("cond_stage_model.model."))
    return sd2Variant(metadata, path, "keys cond_stage_model.model.* (OpenCLIP-H)");
  const ctx = shapes.get(CONTEXT_KEY)?.[1];
  if (has("cond_stage_model.transformer.")) {
    return {
      family: "sd1",
      evidence: `keys cond_stage_model.transformer.* (CLIP ViT-L layout), context width ${ctx ?? "?"}`,
    };
  }
  if (ctx === 768)
    return { family: "sd1", evidence: "UNet cross-attention width 768 (no text encoder in file)" };
  if (ctx === 1024)
    return sd2Variant(metadata, path, "UNet cross-attention width 1024 (no text encoder in file)");
  if (ctx === 2048)
    return { family: "sdxl", evidence: "UNet cross-attention width 2048 (no text encoder in file)" };
  return { family: "unknown", evidence: "no Stable Diffusion key layout recognised" };
}

/** From a diffusers folder's parsed configs. */
export function detectDiffusersFamily(
  hasTextEncoder2: boolean,
  crossAttentionDim: number,
  predictionType: string,
): FamilyDetection {
  if (hasTextEncoder2) return { family: "sdxl", evidence: "model_index.json has text_encoder_2" };
  if (crossAttentionDim === 1024) {
    return predictionType === "v_prediction"
      ? { family: "sd2-768-v", evidence: "cross_attention_dim 1024, scheduler prediction_type v_prediction" }
      : {
          family: "sd2-512",
          evidence: `cross_attention_dim 1024, scheduler prediction_type ${predictionType}`,
        };
  }
  if (crossAttentionDim === 768) return { family: "sd1", evidence: "cross_attention_dim 768" };
  return {
    family: "sd1",
    evidence: `cross_attention_dim ${crossAttentionDim}: SD1-style UNet of a custom size`,
  };
}
