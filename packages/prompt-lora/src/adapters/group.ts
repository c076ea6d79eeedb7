/**
 * Groups an adapter file's tensor names into modules and decides each module's kind, from names and shapes only,
 * so that both the full reader and the header-only summary share one set of rules.
 */
import { detectFamily } from "./family.ts";
import { decodeKey, type Role } from "./keys.ts";
import type { Adapter, AdapterModule, Component, ModelFamily } from "./types.ts";

export interface KeyGroup {
  component: Component;
  path: string;
  kind: AdapterModule["kind"];
  styles: Set<"kohya" | "peft" | "diffusers">;
  /** role -> tensor name in the file */
  keys: Map<Role, string>;
}

export interface Grouping {
  family: ModelFamily;
  format: Adapter["format"];
  groups: KeyGroup[];
  unknownKeys: string[];
}

const has = (g: KeyGroup, ...roles: Role[]) => roles.every((r) => g.keys.has(r));

function kindOf(g: KeyGroup): AdapterModule["kind"] | undefined {
  const roles = [...g.keys.keys()];
  if (roles.some((r) => r.startsWith("hada_"))) {
    return has(g, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b") ? "loha" : undefined;
  }
  if (roles.some((r) => r.startsWith("lokr_"))) {
    const w1 = has(g, "lokr_w1") || has(g, "lokr_w1_a", "lokr_w1_b");
    const w2 = has(g, "lokr_w2") || has(g, "lokr_w2_a", "lokr_w2_b");
    return w1 && w2 ? "lokr" : undefined;
  }
  if (has(g, "diff")) return "full";
  if (has(g, "down", "up")) return "lora";
  return undefined;
}

export function groupKeys(shapes: Map<string, number[]>, metadata: Record<string, string>): Grouping {
  const family = detectFamily(metadata, shapes);
  const byModule = new Map<string, KeyGroup>();
  const unknownKeys: string[] = [];
  for (const name of shapes.keys()) {
    const d = decodeKey(name, family);
    if (!d) {
      unknownKeys.push(name);
      continue;
    }
    const id = `${d.component}:${d.path}`;
    let g = byModule.get(id);
    if (!g) {
      g = { component: d.component, path: d.path, kind: "lora", styles: new Set(), keys: new Map() };
      byModule.set(id, g);
    }
    if (g.keys.has(d.role)) {
      // Two names for one role (e.g. lora_A and lora.down of the same module): keep the first, report the other.
      unknownKeys.push(name);
      continue;
    }
    g.styles.add(d.style);
    g.keys.set(d.role, name);
  }
  const groups: KeyGroup[] = [];
  for (const g of byModule.values()) {
    const kind = kindOf(g);
    if (!kind) {
      // An incomplete module (an alpha without weights, a down without up): nothing can be applied, say so.
      unknownKeys.push(...g.keys.values());
      continue;
    }
    g.kind = kind;
    groups.push(g);
  }
  const lycoris = groups.some((g) => g.kind !== "lora");
  const styles = new Set(groups.flatMap((g) => [...g.styles]));
  const format: Adapter["format"] = lycoris
    ? "lycoris"
    : styles.has("kohya")
      ? "kohya"
      : styles.has("peft")
        ? "peft"
        : styles.has("diffusers")
          ? "diffusers"
          : "kohya";
  return { family, format, groups, unknownKeys };
}

/** Rank of a module from its shapes (rows of the first low-rank factor); undefined for full / undecomposed kinds. */
export function rankOf(g: KeyGroup, shapes: Map<string, number[]>): number | undefined {
  const rows = (role: Role) => {
    const k = g.keys.get(role);
    return k === undefined ? undefined : shapes.get(k)?.[0];
  };
  switch (g.kind) {
    case "lora":
      return rows("down");
    case "loha":
      return rows("hada_w1_b");
    case "lokr":
      return rows("lokr_w2_b") ?? rows("lokr_w1_b");
    case "full":
      return undefined;
  }
}
