// Reads a CLIP tokenizer from disk: vocab.json + merges.txt, plus the special tokens declared in
// tokenizer_config.json / special_tokens_map.json (optional; special_tokens_map wins, as in HF's
// from_pretrained). Accepts a tokenizer folder itself or a diffusers model root that has `tokenizer/`.

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";

export type TokenizerErrorCode =
  | "missing_file"
  | "invalid_json"
  | "invalid_vocab"
  | "invalid_merges"
  | "unknown_special_token";

export class TokenizerError extends Error {
  readonly code: TokenizerErrorCode;
  readonly file: string;
  constructor(code: TokenizerErrorCode, file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "TokenizerError";
    this.code = code;
    this.file = file;
  }
}

/** Contents of the special-token slots (token strings, looked up in the vocab later). */
export interface SpecialTokens {
  bos: string;
  eos: string;
  unk: string;
  pad: string;
}

/** CLIPTokenizer's constructor defaults (SD1's files agree; SD2's set pad to "!"). */
export const CLIP_DEFAULT_SPECIAL_TOKENS: SpecialTokens = {
  bos: "<|startoftext|>",
  eos: "<|endoftext|>",
  unk: "<|endoftext|>",
  pad: "<|endoftext|>",
};

export interface TokenizerFiles {
  /** The folder the files were read from. */
  dir: string;
  vocab: Map<string, number>;
  /** merges.txt without its "#version" header, in rank order, each as [first, second]. */
  merges: [string, string][];
  special: SpecialTokens;
  /** tokenizer_config.json's model_max_length when present (informational; SD always uses 77). */
  modelMaxLength?: number;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError("invalid_json", path, `not valid JSON (${(e as Error).message})`);
  }
}

/** Finds the folder holding vocab.json: `dir` itself, or `dir/tokenizer` (a diffusers model root). */
export async function resolveTokenizerDir(dir: string): Promise<string> {
  if (await isFile(join(dir, "vocab.json"))) return dir;
  const sub = join(dir, "tokenizer");
  if (await isFile(join(sub, "vocab.json"))) return sub;
  const isDiffusersRoot = await isFile(join(dir, "model_index.json"));
  const expected = isDiffusersRoot ? join(sub, "vocab.json") : join(dir, "vocab.json");
  throw new TokenizerError(
    "missing_file",
    expected,
    `missing CLIP vocabulary file (looked for ${join(dir, "vocab.json")} and ${join(sub, "vocab.json")})`,
  );
}

export function parseVocab(json: unknown, file: string): Map<string, number> {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new TokenizerError("invalid_vocab", file, "expected an object mapping token -> id");
  }
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(json as Record<string, unknown>)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new TokenizerError(
        "invalid_vocab",
        file,
        `token ${JSON.stringify(token)} has non-integer id ${id}`,
      );
    }
    vocab.set(token, id);
  }
  return vocab;
}

/**
 * Parses merges.txt as HF's CLIPTokenizer does: strip, split on "\n", skip the header line, keep at most
 * 49152 - 256 - 2 merges (the CLIP vocabulary budget), split each line on whitespace.
 */
export function parseMerges(text: string, file: string): [string, string][] {
  const lines = text
    .trim()
    .split("\n")
    .slice(1, 49152 - 256 - 2 + 1);
  return lines.map((line, i) => {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2 || parts[0] === "") {
      throw new TokenizerError("invalid_merges", file, `line ${i + 2} is not "<first> <second>": ${line}`);
    }
    return [parts[0], parts[1]];
  });
}

/** A special-token entry is either a string or an AddedToken object {content, ...}. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (
    value !== null &&
    typeof value === "object" &&
    typeof (value as { content?: unknown }).content === "string"
  ) {
    return (value as { content: string }).content;
  }
  return undefined;
}

function applySpecialTokens(target: SpecialTokens, json: unknown): void {
  if (json === null || typeof json !== "object") return;
  const record = json as Record<string, unknown>;
  const slots: [keyof SpecialTokens, string][] = [
    ["bos", "bos_token"],
    ["eos", "eos_token"],
    ["unk", "unk_token"],
    ["pad", "pad_token"],
  ];
  for (const [slot, key] of slots) {
    const content = tokenContent(record[key]);
    if (content !== undefined) target[slot] = content;
  }
}

/** Loads vocab, merges and special tokens from a tokenizer folder or a diffusers model root. */
export async function loadTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const tokDir = await resolveTokenizerDir(dir);
  const vocabPath = join(tokDir, "vocab.json");
  const mergesPath = join(tokDir, "merges.txt");
  if (!(await isFile(mergesPath))) {
    throw new TokenizerError(
      "missing_file",
      mergesPath,
      "missing CLIP merges file (merges.txt next to vocab.json)",
    );
  }
  const vocab = parseVocab(await readJson(vocabPath), vocabPath);
  const merges = parseMerges(await readFile(mergesPath, "utf8"), mergesPath);

  const special: SpecialTokens = { ...CLIP_DEFAULT_SPECIAL_TOKENS };
  let modelMaxLength: number | undefined;
  const configPath = join(tokDir, "tokenizer_config.json");
  if (await isFile(configPath)) {
    const config = await readJson(configPath);
    applySpecialTokens(special, config);
    const mml = (config as { model_max_length?: unknown } | null)?.model_max_length;
    if (typeof mml === "number") modelMaxLength = mml;
  }
  const mapPath = join(tokDir, "special_tokens_map.json");
  if (await isFile(mapPath)) applySpecialTokens(special, await readJson(mapPath));

  for (const [slot, token] of Object.entries(special)) {
    if (!vocab.has(token)) {
      throw new TokenizerError(
        "unknown_special_token",
        vocabPath,
        `${slot}_token ${JSON.stringify(token)} (from the tokenizer config) is not in the vocabulary`,
      );
    }
  }
  return { dir: tokDir, vocab, merges, special, modelMaxLength };
}
