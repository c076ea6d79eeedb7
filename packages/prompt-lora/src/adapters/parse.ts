/** Reading any supported adapter layout into the normalized Adapter (float32 tensors, diffusers module paths). */
import { architectureOf } from "../architecture/index.ts";
import { readSafetensors } from "../safetensors/index.ts";
import { AdapterError } from "./errors.ts";
import { groupKeys, type KeyGroup } from "./group.ts";
import type { Role } from "./keys.ts";
import type { Adapter, AdapterModule, ModelFamily, Tensor } from "./types.ts";

/** Tensors as readSafetensors returns them (dtype optional: only shape and data are used). */
export type TensorMap = Map<string, { shape: number[]; data: Float32Array; dtype?: string }>;

/** diffusers' `lora_adapter_metadata`: PEFT LoraConfig fields per component prefix ("unet.lora_alpha", ...). */
interface PeftConfigs {
  [prefixedField: string]: unknown;
}

const PEFT_PREFIX: Record<AdapterModule["component"], string> = {
  unet: "unet",
  te: "text_encoder",
  te1: "text_encoder",
  te2: "text_encoder_2",
};

function peftAlpha(meta: PeftConfigs | undefined, g: KeyGroup): number | undefined {
  if (!meta) return undefined;
  const prefix = PEFT_PREFIX[g.component];
  const field = (name: string) => meta[`${prefix}.${name}`] ?? meta[name];
  const pattern = field("alpha_pattern");
  if (pattern && typeof pattern === "object") {
    const entries = Object.entries(pattern as Record<string, unknown>);
    const hit = entries.find(([k]) => k === g.path) ?? entries.find(([k]) => g.path.endsWith(`.${k}`));
    if (hit && typeof hit[1] === "number") return hit[1];
  }
  const alpha = field("lora_alpha");
  return typeof alpha === "number" ? alpha : undefined;
}

function parsePeftMetadata(metadata: Record<string, string>, source?: string): PeftConfigs | undefined {
  const raw = metadata.lora_adapter_metadata;
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw);
    return v && typeof v === "object" ? (v as PeftConfigs) : undefined;
  } catch {
    throw new AdapterError(
      "BAD_SHAPE",
      "metadata lora_adapter_metadata is not valid JSON",
      "lora_adapter_metadata",
      source,
    );
  }
}

const TENSOR_ROLES: Role[] = [
  "down",
  "up",
  "mid",
  "hada_w1_a",
  "hada_w1_b",
  "hada_w2_a",
  "hada_w2_b",
  "hada_t1",
  "hada_t2",
  "lokr_w1",
  "lokr_w1_a",
  "lokr_w1_b",
  "lokr_w2",
  "lokr_w2_a",
  "lokr_w2_b",
  "lokr_t2",
  "diff",
  "diff_b",
];

/** Target shape of a LoHa/LoKr whose factors flatten a k x k conv: the kernel comes from the module tree. */
function flattenedTarget(m: AdapterModule, family: ModelFamily): number[] | undefined {
  if (m.kind !== "loha" && m.kind !== "lokr") return undefined;
  const t = m.tensors;
  if (t.hada_t1 || t.lokr_t2 || (t.lokr_w2 && t.lokr_w2.shape.length === 4)) return undefined;
  if (family === "unknown") return undefined;
  const spec = architectureOf(family).find(m.component, m.path);
  if (spec?.layer !== "conv") return undefined;
  const [kh, kw] = spec.kernel;
  let out: number;
  let flatIn: number;
  if (m.kind === "loha") {
    out = t.hada_w1_a.shape[0];
    flatIn = t.hada_w1_b.shape[1];
  } else {
    const rows = (w: Tensor | undefined, a: Tensor | undefined) => (w ? w.shape[0] : (a as Tensor).shape[0]);
    const cols = (w: Tensor | undefined, b: Tensor | undefined) => (w ? w.shape[1] : (b as Tensor).shape[1]);
    out = rows(t.lokr_w1, t.lokr_w1_a) * rows(t.lokr_w2, t.lokr_w2_a);
    flatIn = cols(t.lokr_w1, t.lokr_w1_b) * cols(t.lokr_w2, t.lokr_w2_b);
  }
  if (flatIn % (kh * kw) !== 0) return undefined;
  return [out, flatIn / (kh * kw), kh, kw];
}

export function parseAdapter(tensors: TensorMap, metadata: Record<string, string>, source?: string): Adapter {
  const shapes = new Map([...tensors].map(([k, v]) => [k, v.shape]));
  const { family, format, groups, unknownKeys } = groupKeys(shapes, metadata);
  const peftMeta = parsePeftMetadata(metadata, source);
  const modules: AdapterModule[] = [];
  for (const g of groups) {
    const get = (role: Role): Tensor | undefined => {
      const key = g.keys.get(role);
      if (key === undefined) return undefined;
      const t = tensors.get(key);
      return t && { shape: [...t.shape], data: t.data };
    };
    const m: AdapterModule = {
      component: g.component,
      path: g.path,
      kind: g.kind,
      layer: "linear",
      tensors: {},
    };
    for (const role of TENSOR_ROLES) {
      const t = get(role);
      if (t) m.tensors[role] = t;
    }
    const alpha = get("alpha");
    if (alpha) {
      if (alpha.data.length !== 1) {
        throw new AdapterError(
          "BAD_SHAPE",
          `alpha of ${g.path} has ${alpha.data.length} values`,
          g.keys.get("alpha"),
          source,
        );
      }
      m.alpha = alpha.data[0];
    } else {
      const a = peftAlpha(peftMeta, g);
      if (a !== undefined) m.alpha = a;
    }
    const dora = get("dora_scale");
    if (dora) m.doraScale = dora;
    const spec = family === "unknown" ? undefined : architectureOf(family).find(g.component, g.path);
    const is4d = Object.values(m.tensors).some((t) => t.shape.length === 4);
    m.layer = is4d || spec?.layer === "conv" ? "conv" : "linear";
    const target = flattenedTarget(m, family);
    if (target) m.targetShape = target;
    modules.push(m);
  }
  const adapter: Adapter = { format, family, modules, metadata: { ...metadata }, unknownKeys };
  if (source !== undefined) adapter.source = source;
  return adapter;
}

export async function readAdapter(path: string): Promise<Adapter> {
  const { metadata, tensors } = await readSafetensors(path);
  return parseAdapter(tensors, metadata, path);
}
