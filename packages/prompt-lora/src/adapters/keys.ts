/**
 * Decoding one tensor name of an adapter file into (module, role), for every layout we read:
 * - kohya / LyCORIS: `lora_{unet,te,te1,te2}_<path with _>.<suffix>` (kohya names mapped back through the module tree);
 * - diffusers / PEFT: `[base_model.model.][unet.|text_encoder.|text_encoder_2.]<dotted path>.<suffix>` with
 *   lora_A/lora_B (optionally with a PEFT adapter name), lora.down/up, lora_linear_layer.down/up, and the old
 *   attention-processor form `attn1.processor.to_q_lora.down.weight`.
 */

import { parseKohyaName } from "../architecture/index.ts";
import type { Component, ModelFamily } from "./types.ts";

/** Normalized tensor roles. lora: down/up/mid; LyCORIS keeps its own names. */
export type Role =
  | "down"
  | "up"
  | "mid"
  | "alpha"
  | "dora_scale"
  | "hada_w1_a"
  | "hada_w1_b"
  | "hada_w2_a"
  | "hada_w2_b"
  | "hada_t1"
  | "hada_t2"
  | "lokr_w1"
  | "lokr_w1_a"
  | "lokr_w1_b"
  | "lokr_w2"
  | "lokr_w2_a"
  | "lokr_w2_b"
  | "lokr_t2"
  | "diff"
  | "diff_b";

export interface DecodedKey {
  /** kohya (incl. LyCORIS), PEFT (lora_A/lora_B), or the older diffusers forms (lora.down, lora_linear_layer, processor). */
  style: "kohya" | "peft" | "diffusers";
  component: Component;
  path: string;
  role: Role;
}

const KOHYA_SUFFIXES: Record<string, Role> = {
  "lora_down.weight": "down",
  "lora_up.weight": "up",
  "lora_mid.weight": "mid",
  alpha: "alpha",
  dora_scale: "dora_scale",
  hada_w1_a: "hada_w1_a",
  hada_w1_b: "hada_w1_b",
  hada_w2_a: "hada_w2_a",
  hada_w2_b: "hada_w2_b",
  hada_t1: "hada_t1",
  hada_t2: "hada_t2",
  lokr_w1: "lokr_w1",
  lokr_w1_a: "lokr_w1_a",
  lokr_w1_b: "lokr_w1_b",
  lokr_w2: "lokr_w2",
  lokr_w2_a: "lokr_w2_a",
  lokr_w2_b: "lokr_w2_b",
  lokr_t2: "lokr_t2",
  diff: "diff",
  diff_b: "diff_b",
};

/** diffusers/PEFT suffixes after the module path; `(?:\.\w+)?` admits a PEFT adapter name ("lora_A.default.weight"). */
const PEFT_SUFFIXES: [RegExp, Role, "peft" | "diffusers"][] = [
  [/\.lora_A(?:\.[A-Za-z]\w*)?\.weight$/, "down", "peft"],
  [/\.lora_B(?:\.[A-Za-z]\w*)?\.weight$/, "up", "peft"],
  [/\.lora_linear_layer\.down\.weight$/, "down", "diffusers"],
  [/\.lora_linear_layer\.up\.weight$/, "up", "diffusers"],
  [/\.lora\.down\.weight$/, "down", "diffusers"],
  [/\.lora\.up\.weight$/, "up", "diffusers"],
  [/\.lora_magnitude_vector(?:\.[A-Za-z]\w*)?(?:\.weight)?$/, "dora_scale", "peft"],
  [/\.alpha$/, "alpha", "peft"],
];

/** Old diffusers attention processors: `<attn>.processor.to_q_lora.down.weight` targets `<attn>.to_q`. */
const PROCESSOR = /^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;

function kohyaComponentOf(name: string): boolean {
  return /^lora_(unet|te|te1|te2)_/.test(name);
}

function peftComponent(
  rest: string,
  family: ModelFamily,
): { component: Component; path: string } | undefined {
  const te = family === "sdxl" ? "te1" : "te";
  if (rest.startsWith("unet.")) return { component: "unet", path: rest.slice(5) };
  if (rest.startsWith("text_encoder_2.")) return { component: "te2", path: rest.slice(15) };
  if (rest.startsWith("text_encoder.")) return { component: te, path: rest.slice(13) };
  // A bare PEFT model state dict: the path itself tells the network apart.
  if (rest.startsWith("text_model.")) return { component: te, path: rest };
  if (/^(down_blocks|mid_block|up_blocks|conv_in|conv_out|time_embedding|add_embedding)\./.test(rest)) {
    return { component: "unet", path: rest };
  }
  return undefined;
}

export function decodeKey(key: string, family: ModelFamily): DecodedKey | undefined {
  if (kohyaComponentOf(key)) {
    const dot = key.indexOf(".");
    if (dot < 0) return undefined;
    const role = KOHYA_SUFFIXES[key.slice(dot + 1)];
    const mod = parseKohyaName(key.slice(0, dot), family);
    if (!role || !mod) return undefined;
    return { style: "kohya", ...mod, role };
  }
  const rest = key.startsWith("base_model.model.") ? key.slice("base_model.model.".length) : key;
  const proc = PROCESSOR.exec(rest);
  if (proc) {
    const target = proc[2] === "to_out" ? "to_out.0" : proc[2];
    const where = peftComponent(`${proc[1]}.${target}`, family);
    return where && { style: "diffusers", ...where, role: proc[3] === "down" ? "down" : "up" };
  }
  for (const [re, role, style] of PEFT_SUFFIXES) {
    const m = re.exec(rest);
    if (!m) continue;
    const where = peftComponent(rest.slice(0, m.index), family);
    return where && { style, ...where, role };
  }
  return undefined;
}
