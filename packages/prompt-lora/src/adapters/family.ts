/**
 * Base-model family of an adapter: from kohya / modelspec metadata when present, else from key names and shapes.
 * Shape evidence: the width fed to a cross-attention to_k/to_v (768 SD1, 1024 SD2, 2048 SDXL), the text encoder
 * width (768 SD1, 1024 SD2), and proj_in as a 1x1 conv (SD1) or a Linear (SD2/SDXL).
 */
import type { ModelFamily } from "./types.ts";

export function familyFromMetadata(metadata: Record<string, string>): ModelFamily | undefined {
  const version = (metadata.ss_base_model_version ?? "").toLowerCase();
  if (version.startsWith("sdxl")) return "sdxl";
  if (version.startsWith("sd_v2") || version.startsWith("sd_2")) return "sd2";
  if (version.startsWith("sd_v1") || version.startsWith("sd_1")) return "sd1";
  const arch = (metadata["modelspec.architecture"] ?? "").toLowerCase();
  if (arch.startsWith("stable-diffusion-xl")) return "sdxl";
  if (arch.startsWith("stable-diffusion-v2")) return "sd2";
  if (arch.startsWith("stable-diffusion-v1")) return "sd1";
  return undefined;
}

/** `shapes`: tensor name -> shape (header only, no data needed). */
export function detectFamily(metadata: Record<string, string>, shapes: Map<string, number[]>): ModelFamily {
  const fromMeta = familyFromMetadata(metadata);
  if (fromMeta) return fromMeta;
  const names = [...shapes.keys()];
  if (
    names.some((k) =>
      /^lora_te[12]_|(^|\.)text_encoder_2\.|(^|_)add_embedding[._]|^lora_unet_(input_blocks|output_blocks|middle_block)_/.test(
        k,
      ),
    )
  ) {
    return "sdxl";
  }
  if (metadata.ss_v2 === "True") return "sd2";
  let evidence: ModelFamily | undefined;
  for (const [name, shape] of shapes) {
    // Input width of an adapter's first factor: down [r, in(, k, k)], lora_A, LoHa w1_b [r, in].
    const isInput = /(lora_down\.weight|lora_A(\.\w+)?\.weight|\.down\.weight|hada_w1_b)$/.test(name);
    if (!isInput || shape.length < 2) continue;
    const width = shape[1];
    if (/attn2[._]to_[kv]/.test(name)) {
      if (width === 2048) return "sdxl";
      if (width === 1024) return "sd2";
      if (width === 768) evidence = "sd1";
    } else if (
      /(te_|text_encoder\.|text_model)/.test(name) &&
      /(q_proj|k_proj|v_proj|out_proj|fc1)/.test(name)
    ) {
      if (width === 1024) return "sd2";
      if (width === 768) evidence = "sd1";
    } else if (/proj_in/.test(name)) {
      if (shape.length === 4) evidence = "sd1";
      else if (shape.length === 2 && evidence === undefined) evidence = "sd2";
    }
  }
  if (evidence) return evidence;
  // One text encoder, no SD2/SDXL evidence: SD1, the family kohya writes without version metadata.
  return names.some((k) => /^lora_(unet|te)_|^(base_model\.model\.)?(unet|text_encoder)\./.test(k))
    ? "sd1"
    : "unknown";
}
