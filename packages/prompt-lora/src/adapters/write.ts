/**
 * Writing a normalized Adapter as kohya (what A1111, Forge and ComfyUI load) or PEFT/diffusers safetensors.
 * - kohya: `lora_unet_<path>` / `lora_te[1|2]_<path>` + `.lora_down.weight`, `.lora_up.weight`, `.lora_mid.weight`,
 *   LyCORIS tensor names for LoHa/LoKr/full, `.dora_scale`, and a scalar `.alpha` per module. SDXL UNet modules are
 *   named in the SGM layout as kohya's SDXL trainer does (option sdxlUnetNaming: "diffusers" to keep diffusers paths).
 * - peft: `unet.<path>.lora_A.weight` / `.lora_B.weight` (`text_encoder.`, `text_encoder_2.`), the layout
 *   diffusers' load_lora_weights reads. Alphas are stored the way diffusers saves them: the `lora_adapter_metadata`
 *   metadata entry, a JSON object of PEFT LoraConfig fields per component ("unet.r", "unet.lora_alpha",
 *   "unet.rank_pattern", "unet.alpha_pattern", "unet.target_modules"), no extra tensors. Only plain LoRA modules
 *   can be written this way (PEFT's DoRA magnitude and LyCORIS kinds have no diffusers-loadable equivalent).
 * The file's other metadata is kept in both formats.
 */
import { architectureOf } from "../architecture/index.ts";
import { fromFloat32, writeSafetensors } from "../safetensors/index.ts";
import type { TensorToWrite } from "../safetensors/types.ts";
import { AdapterError } from "./errors.ts";
import type { Adapter, AdapterModule, Component, Tensor } from "./types.ts";

export interface WriteAdapterOptions {
  format: "kohya" | "peft";
  dtype?: "F32" | "F16" | "BF16";
  sdxlUnetNaming?: "sgm" | "diffusers";
}

const KOHYA_TENSOR_NAMES: Record<string, string> = {
  down: "lora_down.weight",
  up: "lora_up.weight",
  mid: "lora_mid.weight",
};

const PEFT_PREFIX: Record<Component, string> = {
  unet: "unet",
  te: "text_encoder",
  te1: "text_encoder",
  te2: "text_encoder_2",
};

function tensorOut(name: string, t: Tensor, dtype: "F32" | "F16" | "BF16"): TensorToWrite {
  return { name, dtype, shape: [...t.shape], data: () => fromFloat32(t.data, dtype) };
}

function kohyaTensors(adapter: Adapter, dtype: "F32" | "F16" | "BF16", sgm: boolean): TensorToWrite[] {
  const arch = adapter.family === "unknown" ? undefined : architectureOf(adapter.family);
  const useSgm = sgm && adapter.family === "sdxl";
  const out: TensorToWrite[] = [];
  for (const m of adapter.modules) {
    const base = arch ? arch.kohyaNameOf(m.component, m.path, useSgm) : kohyaNameFallback(m);
    for (const [role, t] of Object.entries(m.tensors))
      out.push(tensorOut(`${base}.${KOHYA_TENSOR_NAMES[role] ?? role}`, t, dtype));
    if (m.doraScale) out.push(tensorOut(`${base}.dora_scale`, m.doraScale, dtype));
    if (m.alpha !== undefined)
      out.push(tensorOut(`${base}.alpha`, { shape: [], data: Float32Array.of(m.alpha) }, dtype));
  }
  return out;
}

function kohyaNameFallback(m: AdapterModule): string {
  const prefix = { unet: "lora_unet_", te: "lora_te_", te1: "lora_te1_", te2: "lora_te2_" }[m.component];
  return prefix + m.path.replaceAll(".", "_");
}

function mostCommon(values: number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0][0];
}

function peftTensors(
  adapter: Adapter,
  dtype: "F32" | "F16" | "BF16",
): { tensors: TensorToWrite[]; config: Record<string, unknown> } {
  const tensors: TensorToWrite[] = [];
  const byPrefix = new Map<string, AdapterModule[]>();
  for (const m of adapter.modules) {
    if (m.kind !== "lora" || m.tensors.mid || m.doraScale) {
      const what = m.kind !== "lora" ? m.kind : m.tensors.mid ? "CP (lora_mid)" : "DoRA";
      throw new AdapterError(
        "UNSUPPORTED_FOR_FORMAT",
        `${m.component} module ${m.path} is ${what}: PEFT/diffusers format holds plain LoRA only; write kohya instead`,
        m.path,
        adapter.source,
      );
    }
    const prefix = PEFT_PREFIX[m.component];
    tensors.push(tensorOut(`${prefix}.${m.path}.lora_A.weight`, m.tensors.down, dtype));
    tensors.push(tensorOut(`${prefix}.${m.path}.lora_B.weight`, m.tensors.up, dtype));
    const list = byPrefix.get(prefix) ?? [];
    list.push(m);
    byPrefix.set(prefix, list);
  }
  const config: Record<string, unknown> = {};
  for (const [prefix, mods] of byPrefix) {
    const ranks = mods.map((m) => m.tensors.down.shape[0]);
    // No alpha means scale 1, i.e. alpha = rank, which is also PEFT's reading of lora_alpha = r.
    const alphas = mods.map((m, i) => m.alpha ?? ranks[i]);
    const r = mostCommon(ranks);
    const alpha = mostCommon(alphas);
    const rankPattern: Record<string, number> = {};
    const alphaPattern: Record<string, number> = {};
    mods.forEach((m, i) => {
      if (ranks[i] !== r) rankPattern[m.path] = ranks[i];
      if (alphas[i] !== alpha) alphaPattern[m.path] = alphas[i];
    });
    config[`${prefix}.r`] = r;
    config[`${prefix}.lora_alpha`] = alpha;
    config[`${prefix}.rank_pattern`] = rankPattern;
    config[`${prefix}.alpha_pattern`] = alphaPattern;
    config[`${prefix}.target_modules`] = mods.map((m) => m.path);
  }
  return { tensors, config };
}

export async function writeAdapter(
  path: string,
  adapter: Adapter,
  options: WriteAdapterOptions = { format: "kohya" },
): Promise<void> {
  const dtype = options.dtype ?? "F32";
  if (options.format === "peft") {
    const { tensors, config } = peftTensors(adapter, dtype);
    const metadata = { ...adapter.metadata, lora_adapter_metadata: JSON.stringify(config) };
    await writeSafetensors(path, tensors, metadata);
    return;
  }
  const sgm = (options.sdxlUnetNaming ?? "sgm") === "sgm";
  const metadata = { ...adapter.metadata };
  // A kohya file must not carry a stale PEFT config from an earlier conversion: alphas now live in tensors.
  delete metadata.lora_adapter_metadata;
  await writeSafetensors(path, kohyaTensors(adapter, dtype, sgm), metadata);
}
