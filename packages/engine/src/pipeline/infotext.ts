/**
 * The WebUI's "infotext" (AUTOMATIC1111 processing.create_infotext), the `parameters` text of its PNGs, so an
 * image made here can be dropped into the WebUI's PNG Info tab:
 *
 *   <prompt as written, LoRA tokens included>
 *   Negative prompt: <negative>                       (line omitted when empty)
 *   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 0123456789, Model: v1-5, Lora hashes: "a: 0123456789ab, b: ..."
 *
 * Values containing ",", ":" or a newline are JSON-quoted (infotext_utils.quote); entries whose value is
 * missing are left out; "Lora hashes" lists `name: shorthash` with ":" and "," removed from names, as the
 * Lora extension writes it.
 */

export interface InfotextParams {
  prompt: string;
  negative?: string;
  steps: number;
  sampler: string;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  /** AutoV2: first 10 hex of the checkpoint file's SHA-256. */
  modelHash?: string;
  /** Checkpoint file name without extension. */
  modelName?: string;
  /** Shown only when > 1, as the WebUI does. */
  clipSkip?: number;
  loraHashes?: { name: string; hash: string | null }[];
  /** Further `key: value` pairs, appended in order. */
  extra?: Record<string, string | number | undefined>;
}

/** infotext_utils.quote: JSON-quote a value that would break the comma/colon list. */
export function quoteInfotextValue(v: string): string {
  if (!v.includes(",") && !v.includes("\n") && !v.includes(":")) return v;
  return JSON.stringify(v);
}

/** Numbers as the WebUI's infotexts show them ("7", "7.5"): integral values without a trailing ".0". */
const num = (v: number): string => String(v);

export function loraHashesValue(loras: { name: string; hash: string | null }[]): string | undefined {
  const parts = loras
    .filter((l) => l.hash && l.name)
    .map((l) => `${l.name.replaceAll(":", "").replaceAll(",", "")}: ${l.hash}`);
  return parts.length > 0 ? parts.join(", ") : undefined;
}

export function createInfotext(p: InfotextParams): string {
  const params: [string, string | undefined][] = [
    ["Steps", num(p.steps)],
    ["Sampler", p.sampler],
    ["CFG scale", num(p.cfg)],
    ["Seed", num(p.seed)],
    ["Size", `${p.width}x${p.height}`],
    ["Model hash", p.modelHash],
    ["Model", p.modelName],
    ["Clip skip", p.clipSkip !== undefined && p.clipSkip > 1 ? num(p.clipSkip) : undefined],
    ["Lora hashes", p.loraHashes ? loraHashesValue(p.loraHashes) : undefined],
  ];
  for (const [k, v] of Object.entries(p.extra ?? {}))
    params.push([k, v === undefined ? undefined : String(v)]);
  const list = params
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => (k === v ? k : `${k}: ${quoteInfotextValue(v)}`))
    .join(", ");
  const negative = p.negative ? `\nNegative prompt: ${p.negative}` : "";
  return `${p.prompt}${negative}\n${list}`.trim();
}
