/**
 * `<lora:name:te:unet:dyn>` tokens of a prompt -> one stacked adapter: prompt-lora parses the tokens (A1111's
 * grammar), resolves the names against a Lora folder (A1111's name/alias rules), reads the files and stacks them
 * (rank concatenation with the te / unet multipliers folded into the up factors).
 */

import type { StackEntry } from "@lora-studio/prompt-lora";
import {
  type Adapter,
  parsePrompt,
  readAdapter,
  resolveNetworks,
  scanLibrary,
  stackAdapters,
} from "@lora-studio/prompt-lora";
import { PipelineError } from "./sd-model.ts";

export interface AppliedLora {
  /** The name as written in the prompt (what A1111 lists in "Lora hashes"). */
  name: string;
  path: string;
  te: number;
  unet: number;
  dyn: number | null;
  /** A1111's 12-hex short hash (sshs_model_hash or addnet hash), or null. */
  shortHash: string | null;
}

export interface PromptLoras {
  /** The prompt with every `<...>` token removed: what the text encoder sees. */
  prompt: string;
  /** The stack (null when the prompt names no LoRA). */
  stack: Adapter | null;
  loras: AppliedLora[];
  /** Names that match no file ("Lora not found: a, b" in A1111). */
  missing: string[];
  warnings: string[];
}

export interface PromptLoraOptions {
  /** Lora folder; required when the prompt names a LoRA. */
  loraDir?: string;
  /** Cache folder for the library scan (headers and hashes). */
  cacheDir?: string;
  /** Fail on names that match no file (default: warn and go on, as A1111). */
  strict?: boolean;
}

/** Parses, resolves, reads and stacks the LoRAs a prompt names. */
export async function lorasFromPrompt(text: string, o: PromptLoraOptions = {}): Promise<PromptLoras> {
  const parsed = parsePrompt(text);
  if (parsed.errors.length > 0) {
    const e = parsed.errors[0];
    throw new PipelineError(`prompt token ${e.token} (column ${e.column}): ${e.message}`);
  }
  const warnings = [...parsed.warnings];
  for (const u of parsed.unknown) warnings.push(`unknown extra-network token ${u.token} ignored`);
  for (const n of parsed.networks)
    if (n.type === "hypernet") warnings.push(`hypernetworks are not supported: ${n.token} ignored`);
  const loraTokens = parsed.networks.filter((n) => n.type === "lora");
  if (loraTokens.length === 0)
    return { prompt: parsed.prompt, stack: null, loras: [], missing: [], warnings };
  if (!o.loraDir)
    throw new PipelineError(
      `the prompt names LoRAs (${loraTokens.map((n) => n.name).join(", ")}) but no Lora folder was given`,
    );
  const listing = await scanLibrary(o.loraDir, { cacheDir: o.cacheDir });
  const res = resolveNetworks(parsed, listing.entries);
  warnings.push(...res.warnings);
  if (res.notFoundMessage) {
    if (o.strict) throw new PipelineError(res.notFoundMessage);
    warnings.push(res.notFoundMessage);
  }
  if (res.unusable.length > 0) {
    const u = res.unusable[0];
    throw new PipelineError(`${u.path}: ${u.reason}`);
  }
  const entries: StackEntry[] = [];
  const loras: AppliedLora[] = [];
  const cache = new Map<string, Adapter>();
  for (const n of res.networks) {
    if (n.type !== "lora" || !n.entry) continue;
    let adapter = cache.get(n.entry.path);
    if (!adapter) {
      adapter = await readAdapter(n.entry.path);
      cache.set(n.entry.path, adapter);
    }
    entries.push({ adapter, te: n.te, unet: n.unet, dyn: n.dyn });
    loras.push({
      name: n.name,
      path: n.entry.path,
      te: n.te,
      unet: n.unet,
      dyn: n.dyn,
      shortHash: n.entry.shortHash,
    });
  }
  const stack = entries.length > 0 ? stackAdapters(entries) : null;
  return { prompt: parsed.prompt, stack, loras, missing: res.missing, warnings };
}
