/**
 * Header-only description of an adapter file for the library listing: key names and shapes from the header, plus
 * the few scalar alpha tensors (4 bytes each); no weight data is read.
 */
import type { SafetensorsFile } from "../safetensors/index.ts";
import { groupKeys, rankOf } from "./group.ts";
import type { Adapter, Component, ModelFamily } from "./types.ts";

export interface AdapterSummary {
  format: Adapter["format"];
  family: ModelFamily;
  /** Distinct ranks, ascending. */
  ranks: number[];
  /** Distinct alphas, ascending (from .alpha tensors, else PEFT metadata). */
  alphas: number[];
  moduleCount: number;
  components: Component[];
  kinds: Adapter["modules"][number]["kind"][];
  unknownKeys: string[];
}

export async function summarizeAdapterFile(file: SafetensorsFile): Promise<AdapterSummary> {
  const shapes = new Map([...file.tensors].map(([k, v]) => [k, v.shape]));
  const { family, format, groups, unknownKeys } = groupKeys(shapes, file.metadata);
  const ranks = new Set<number>();
  const alphas = new Set<number>();
  const components = new Set<Component>();
  const kinds = new Set<Adapter["modules"][number]["kind"]>();
  let peft: Record<string, unknown> | undefined;
  try {
    peft = file.metadata.lora_adapter_metadata ? JSON.parse(file.metadata.lora_adapter_metadata) : undefined;
  } catch {
    peft = undefined;
  }
  for (const g of groups) {
    const r = rankOf(g, shapes);
    if (r !== undefined) ranks.add(r);
    components.add(g.component);
    kinds.add(g.kind);
    const alphaKey = g.keys.get("alpha");
    if (alphaKey !== undefined) {
      const a = await file.readFloat32(alphaKey);
      if (a.length === 1) alphas.add(a[0]);
    }
  }
  if (peft) {
    for (const [k, v] of Object.entries(peft)) {
      if (k.endsWith("lora_alpha") && typeof v === "number") alphas.add(v);
      if (k.endsWith("alpha_pattern") && v && typeof v === "object") {
        for (const a of Object.values(v)) if (typeof a === "number") alphas.add(a);
      }
    }
  }
  const asc = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return {
    format,
    family,
    ranks: asc(ranks),
    alphas: asc(alphas),
    moduleCount: groups.length,
    components: [...components],
    kinds: [...kinds],
    unknownKeys,
  };
}
