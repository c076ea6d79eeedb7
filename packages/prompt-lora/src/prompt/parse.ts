/**
 * Extra-network prompt tokens (`<lora:name:0.8>`), parsed exactly as AUTOMATIC1111 does:
 *  - modules/extra_networks.py `parse_prompt`: regex `<(\w+):([^>]+)>` over the whole prompt (after the
 *    default-on comment stripping); every match is removed from the text whatever its type; its argument
 *    string is split on ":"; an item that `split("=", 2)` cuts into exactly two parts is named, any other
 *    item is positional. Tokens inside AND / BREAK / [a:b:10] are found too: that syntax is parsed later,
 *    on the text with the tokens already removed.
 *  - extensions-builtin/Lora (types "lora" and its alias "lyco"): name = positional[0];
 *    te = float(positional[1]) or 1.0, then named te= overrides; unet = float(positional[2]) or the
 *    resolved te, then named unet= overrides; dyn = int(positional[3]) or None, then named dyn= overrides.
 *  - modules/extra_networks_hypernet.py: name = items[0], multiplier = float(items[1]) or 1.0.
 * Numbers follow Python's float()/int() grammar (see numbers.ts). Where A1111 would raise (a malformed
 * number, a LoRA token without a name) we report an error naming the token and its column and keep
 * every other token; A1111 itself would apply no network of that kind at all, which a warning says.
 */

import { identityMapped, stripComments } from "./comments.ts";
import { parsePythonFloat, parsePythonInt } from "./numbers.ts";

export type NetworkType = "lora" | "hypernet";

export interface PromptNetwork {
  /** "lora" for both `<lora:...>` and `<lyco:...>`, "hypernet" for `<hypernet:...>`. */
  type: NetworkType;
  /** The type exactly as written in the token ("lora", "lyco", "hypernet"). */
  tokenType: string;
  /** The name as written (not trimmed: A1111 looks it up verbatim). */
  name: string;
  /** Text-encoder multiplier (hypernet: its multiplier). */
  te: number;
  /** UNet multiplier (hypernet: its multiplier). */
  unet: number;
  /** DyLoRA rank limit, or null. */
  dyn: number | null;
  /** The whole token as written, e.g. `<lora:ink:0.7>`. */
  token: string;
  /** 1-based column of the token's `<` in the original text, counted in Unicode code points. */
  column: number;
}

export interface PromptError {
  token: string;
  column: number;
  message: string;
}

export interface UnknownToken {
  type: string;
  token: string;
  column: number;
}

export interface ParsedPrompt {
  /** The prompt with every token (and comment) removed, exactly the text A1111 passes on. */
  prompt: string;
  /** Networks in A1111's activation order (see `activationOrder`). */
  networks: PromptNetwork[];
  errors: PromptError[];
  /** Tokens of a type A1111 has no handler for (stripped from the text, never applied). */
  unknown: UnknownToken[];
  /** Things A1111 silently ignores or does differently, worth telling the user. */
  warnings: string[];
}

export interface ParseOptions {
  /** Apply A1111's comment stripping (`# ...` to end of line) first. Default true, as A1111's default. */
  stripComments?: boolean;
}

/** Extra-network type names A1111 registers out of the box, and which network handles each. */
const HANDLERS: Record<string, NetworkType> = { lora: "lora", lyco: "lora", hypernet: "hypernet" };

// Python's \w on str is Unicode-aware: letters, digits and underscore of any script.
const TOKEN_RE = /<([\p{L}\p{N}_]+):([^>]+)>/gu;

interface RawToken {
  type: string;
  args: string;
  token: string;
  column: number;
  order: number;
}

interface Items {
  items: string[];
  positional: string[];
  named: Map<string, string>;
}

export function parsePrompt(text: string, options: ParseOptions = {}): ParsedPrompt {
  const source = options.stripComments === false ? identityMapped(text) : stripComments(identityMapped(text));
  const raw: RawToken[] = [];
  let prompt = "";
  let last = 0;
  for (const m of source.text.matchAll(TOKEN_RE)) {
    prompt += source.text.slice(last, m.index);
    last = m.index + m[0].length;
    const start = source.origin[m.index];
    raw.push({
      type: m[1],
      args: m[2],
      token: m[0],
      column: codePointColumn(text, start),
      order: raw.length,
    });
  }
  prompt += source.text.slice(last);

  const result: ParsedPrompt = { prompt, networks: [], errors: [], unknown: [], warnings: [] };
  const failedKinds = new Set<NetworkType>();
  for (const t of activationOrder(raw)) {
    const kind = HANDLERS[t.type];
    if (kind === undefined) {
      result.unknown.push({ type: t.type, token: t.token, column: t.column });
      continue;
    }
    const items = splitItems(t.args);
    const parsed = kind === "lora" ? loraNetwork(t, items, result.warnings) : hypernetNetwork(t, items);
    if (typeof parsed === "string") {
      result.errors.push({ token: t.token, column: t.column, message: parsed });
      failedKinds.add(kind);
    } else {
      result.networks.push(parsed);
    }
  }
  for (const kind of failedKinds) {
    result.warnings.push(
      `A1111 would apply no ${kind === "lora" ? "LoRA" : "hypernetwork"} at all for this prompt ` +
        `(its activation stops at the first bad token); here only the bad token is dropped`,
    );
  }
  result.errors.sort((a, b) => a.column - b.column);
  return result;
}

/**
 * A1111 groups arguments per type name in order of first appearance, then hands each handler the lists
 * of all its type names in that same order (`lookup_extra_networks`): `<lora:b> <lyco:a> <lora:c>`
 * activates b, c, a. Unknown types keep their place among themselves.
 */
function activationOrder(tokens: RawToken[]): RawToken[] {
  const firstOfType = new Map<string, number>();
  const firstOfHandler = new Map<string, number>();
  for (const t of tokens) {
    if (!firstOfType.has(t.type)) firstOfType.set(t.type, t.order);
    const handler = HANDLERS[t.type] ?? `?${t.type}`;
    if (!firstOfHandler.has(handler)) firstOfHandler.set(handler, t.order);
  }
  const key = (t: RawToken): [number, number, number] => [
    firstOfHandler.get(HANDLERS[t.type] ?? `?${t.type}`)!,
    firstOfType.get(t.type)!,
    t.order,
  ];
  return [...tokens].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka[0] - kb[0] || ka[1] - kb[1] || ka[2] - kb[2];
  });
}

/** `ExtraNetworkParams`: items split on ":"; `item.split("=", 2)` of exactly two parts is named. */
function splitItems(args: string): Items {
  const items = args.split(":");
  const positional: string[] = [];
  const named = new Map<string, string>();
  for (const item of items) {
    const parts = item.split("=");
    // Python's split("=", 2) yields at most 3 parts; "exactly 2" means exactly one "=".
    if (parts.length === 2) named.set(parts[0], parts[1]);
    else positional.push(item);
  }
  return { items, positional, named };
}

const LORA_NAMED = new Set(["te", "unet", "dyn"]);

function loraNetwork(t: RawToken, p: Items, warnings: string[]): PromptNetwork | string {
  if (p.positional.length === 0) {
    return "no LoRA name: every argument has the form key=value, and the name is the first one without '='";
  }
  let te = 1.0;
  if (p.positional.length > 1) {
    const r = parsePythonFloat(p.positional[1]);
    if (!r.ok) return `te multiplier (argument 2): ${r.message}`;
    te = r.value;
  }
  if (p.named.has("te")) {
    const r = parsePythonFloat(p.named.get("te")!);
    if (!r.ok) return `te=: ${r.message}`;
    te = r.value;
  }
  let unet = te;
  if (p.positional.length > 2) {
    const r = parsePythonFloat(p.positional[2]);
    if (!r.ok) return `unet multiplier (argument 3): ${r.message}`;
    unet = r.value;
  }
  if (p.named.has("unet")) {
    const r = parsePythonFloat(p.named.get("unet")!);
    if (!r.ok) return `unet=: ${r.message}`;
    unet = r.value;
  }
  let dyn: number | null = null;
  if (p.positional.length > 3) {
    const r = parsePythonInt(p.positional[3]);
    if (!r.ok) return `dyn (argument 4): ${r.message}`;
    dyn = r.value;
  }
  if (p.named.has("dyn")) {
    const r = parsePythonInt(p.named.get("dyn")!);
    if (!r.ok) return `dyn=: ${r.message}`;
    dyn = r.value;
  }
  for (const key of p.named.keys()) {
    if (!LORA_NAMED.has(key))
      warnings.push(`${t.token}: named argument "${key}" is ignored (A1111 reads te, unet, dyn)`);
  }
  if (p.positional.length > 4) {
    warnings.push(`${t.token}: arguments after the 4th positional one are ignored`);
  }
  return {
    type: "lora",
    tokenType: t.type,
    name: p.positional[0],
    te,
    unet,
    dyn,
    token: t.token,
    column: t.column,
  };
}

function hypernetNetwork(t: RawToken, p: Items): PromptNetwork | string {
  // The hypernetwork handler reads raw items, not positional/named: `<hypernet:a=b>` is named "a=b".
  let multiplier = 1.0;
  if (p.items.length > 1) {
    const r = parsePythonFloat(p.items[1]);
    if (!r.ok) return `multiplier (argument 2): ${r.message}`;
    multiplier = r.value;
  }
  return {
    type: "hypernet",
    tokenType: t.type,
    name: p.items[0],
    te: multiplier,
    unet: multiplier,
    dyn: null,
    token: t.token,
    column: t.column,
  };
}

/** 1-based column of UTF-16 index `index`, counted in code points like Python string indices. */
function codePointColumn(text: string, index: number): number {
  let column = 1;
  for (let i = 0; i < index; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is a single code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < index) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    column++;
  }
  return column;
}
