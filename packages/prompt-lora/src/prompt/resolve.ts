/**
 * Matches the LoRA names of a parsed prompt against a library listing exactly as A1111's Lora extension
 * (networks.py list_available_networks / load_networks):
 *  - files are registered in listing order under their name (file stem) and their alias
 *    (`ss_output_name`, else the name), a later file overwriting an earlier one;
 *  - an alias that is already registered (as another file's name or alias) becomes "forbidden", as is
 *    "none": a prompt name whose lower case is forbidden is looked up by file name only;
 *  - lookups are exact (case-sensitive, spaces kept);
 *  - names that match nothing are reported together as "Lora not found: a, b" and the others still apply;
 *  - the same name written twice loads one network object whose multipliers are overwritten by each
 *    token in turn, and which is appended once per token: it is applied as many times as it is named,
 *    every time with the LAST token's te / unet / dyn. We reproduce that and say so in a warning.
 * Hypernetworks are passed through unresolved (this project has no hypernetwork support).
 */
import type { LibraryEntry } from "../library/types.ts";
import type { ParsedPrompt, PromptNetwork } from "./parse.ts";

export interface LibraryIndex {
  byName: Map<string, LibraryEntry>;
  byNameOrAlias: Map<string, LibraryEntry>;
  /** Lower-cased names that must be looked up by file name only. */
  forbidden: Set<string>;
  /** Names (file stems) that belong to more than one file: the last listed wins, as in A1111. */
  ambiguous: Map<string, LibraryEntry[]>;
}

export function indexLibrary(entries: LibraryEntry[]): LibraryIndex {
  const index: LibraryIndex = {
    byName: new Map(),
    byNameOrAlias: new Map(),
    forbidden: new Set(["none"]),
    ambiguous: new Map(),
  };
  const allByName = new Map<string, LibraryEntry[]>();
  for (const e of entries) {
    index.byName.set(e.name, e);
    if (index.byNameOrAlias.has(e.alias)) index.forbidden.add(e.alias.toLowerCase());
    index.byNameOrAlias.set(e.name, e);
    index.byNameOrAlias.set(e.alias, e);
    const list = allByName.get(e.name) ?? [];
    list.push(e);
    allByName.set(e.name, list);
  }
  for (const [name, list] of allByName) if (list.length > 1) index.ambiguous.set(name, list);
  return index;
}

export function lookupNetwork(index: LibraryIndex, name: string): LibraryEntry | undefined {
  return index.forbidden.has(name.toLowerCase()) ? index.byName.get(name) : index.byNameOrAlias.get(name);
}

export interface ResolvedNetwork extends PromptNetwork {
  /** The file the name resolves to; null when missing, and always for hypernetworks. */
  entry: LibraryEntry | null;
  /** te / unet / dyn as written in this token, before A1111's duplicate-name rule replaced them. */
  written: { te: number; unet: number; dyn: number | null };
}

export interface Resolution {
  /** Every network of the prompt in activation order; te / unet / dyn are the values A1111 applies. */
  networks: ResolvedNetwork[];
  /** LoRA names that match no file, each once, in prompt order. */
  missing: string[];
  /** A1111's message for them ("Lora not found: a, b"), or null. */
  notFoundMessage: string | null;
  /** Found, but a format this project cannot apply (pickle files, corrupt files). */
  unusable: Array<{ name: string; path: string; reason: string }>;
  warnings: string[];
}

export function resolveNetworks(parsed: ParsedPrompt, library: LibraryEntry[] | LibraryIndex): Resolution {
  const index = Array.isArray(library) ? indexLibrary(library) : library;
  const out: Resolution = { networks: [], missing: [], notFoundMessage: null, unusable: [], warnings: [] };
  const lastByName = new Map<string, PromptNetwork>();
  const countByName = new Map<string, number>();
  for (const n of parsed.networks) {
    if (n.type !== "lora") continue;
    lastByName.set(n.name, n);
    countByName.set(n.name, (countByName.get(n.name) ?? 0) + 1);
  }
  const warnedNames = new Set<string>();
  const namesByFile = new Map<string, Set<string>>();
  for (const n of parsed.networks) {
    const written = { te: n.te, unet: n.unet, dyn: n.dyn };
    if (n.type !== "lora") {
      out.networks.push({ ...n, entry: null, written });
      continue;
    }
    const entry = lookupNetwork(index, n.name) ?? null;
    if (entry === null) {
      if (!out.missing.includes(n.name)) out.missing.push(n.name);
      const trimmed = n.name.trim();
      if (trimmed !== n.name && lookupNetwork(index, trimmed) !== undefined) {
        out.warnings.push(
          `${n.token}: no LoRA is named "${n.name}", but "${trimmed}" exists (remove the spaces)`,
        );
      }
      out.networks.push({ ...n, entry: null, written });
      continue;
    }
    const last = lastByName.get(n.name)!;
    const count = countByName.get(n.name)!;
    if (count > 1 && !warnedNames.has(n.name)) {
      warnedNames.add(n.name);
      out.warnings.push(
        `LoRA "${n.name}" is named ${count} times: A1111 applies it ${count} times, each with the last ` +
          `token's multipliers (${last.token}: te ${last.te}, unet ${last.unet})`,
      );
    }
    const ambiguous = index.ambiguous.get(entry.name);
    if (ambiguous !== undefined && !warnedNames.has(`file:${entry.name}`)) {
      warnedNames.add(`file:${entry.name}`);
      out.warnings.push(
        `${ambiguous.length} files are named "${entry.name}" (${ambiguous.map((e) => e.path).join(", ")}); ` +
          `like A1111, the last listed is used: ${entry.path}`,
      );
    }
    if (!entry.supported) {
      out.unusable.push({ name: n.name, path: entry.path, reason: entry.reason ?? "unsupported" });
    }
    const names = namesByFile.get(entry.path) ?? new Set<string>();
    names.add(n.name);
    namesByFile.set(entry.path, names);
    out.networks.push({ ...n, te: last.te, unet: last.unet, dyn: last.dyn, entry, written });
  }
  for (const [path, names] of namesByFile) {
    if (names.size > 1) {
      out.warnings.push(
        `${path} is named by ${[...names].map((x) => `"${x}"`).join(" and ")}: A1111 loads it once per name ` +
          `and applies each with its own multipliers`,
      );
    }
  }
  if (out.missing.length > 0) out.notFoundMessage = `Lora not found: ${out.missing.join(", ")}`;
  return out;
}
