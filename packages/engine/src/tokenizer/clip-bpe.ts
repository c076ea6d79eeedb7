// CLIP's byte-level BPE tokenizer, reproducing HF transformers' (slow) CLIPTokenizer as StableDiffusionPipeline
// calls it: tokenizer(text, padding="max_length", max_length=77, truncation=True). Written by hand because
// the only JavaScript tokenizer libraries pull in WASM/native builds of the Rust `tokenizers` crate, and the
// algorithm is small. Steps, in HF's order:
//  1. split the raw text on the special tokens' literal text (HF's added-token trie; bos/eos/unk/pad - which
//     for SD2's tokenizer includes its pad token "!", so "wow!" gives [wow, 0] there, diffusers issue #4153);
//  2. per remaining piece: ftfy-like fix, whitespace collapse, lowercase (text-cleaning.ts);
//  3. pre-tokenize with CLIP's pattern (special tokens, 's 't 're 've 'm 'll 'd, letter runs, ONE digit,
//     runs of other non-space characters);
//  4. map each piece's UTF-8 bytes to printable characters (bytes_to_unicode), apply the merges by rank with
//     "</w>" glued to the last symbol, look the resulting symbols up in vocab.json (unknown -> unk id).
// The merge result per piece is cached (HF caches too); the cache is bounded so long sessions cannot grow it
// without limit.

import { type CleanTextMode, cleanText, PY_WHITESPACE_CLASS } from "./text-cleaning.ts";
import {
  loadTokenizerFiles,
  type SpecialTokens,
  TokenizerError,
  type TokenizerFiles,
} from "./tokenizer-files.ts";

/** GPT-2/CLIP bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 upwards. */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = printable(b) ? String.fromCharCode(b) : String.fromCharCode(256 + next++);
  }
  return table;
}

const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
const UTF8 = new TextEncoder();
const END_OF_WORD = "</w>";
// The two strings HF's bpe() cache is seeded with: they come out whole, without "</w>".
const BPE_VERBATIM = new Set(["<|startoftext|>", "<|endoftext|>"]);
const PRE_TOKEN_RE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${PY_WHITESPACE_CLASS}\\p{L}\\p{N}]+`,
  "giu",
);

export interface ClipTokenizerOptions {
  /** Text cleaning before BPE: "ftfy" (default, as HF with ftfy installed) or "whitespace" only. */
  cleaning?: CleanTextMode;
  /** Maximum number of cached BPE results (default 100,000; 0 disables the cache). */
  cacheLimit?: number;
}

export interface EncodeOptions {
  /** Total length including <|startoftext|> and <|endoftext|> (default 77). */
  maxLength?: number;
  /** Cut the text to maxLength - 2 tokens (default true, as SD pipelines do). */
  truncation?: boolean;
  /** Pad with the pad token up to maxLength (default true). */
  padding?: boolean;
}

export interface Encoding {
  inputIds: number[];
  /** 1 for bos, text and eos positions, 0 for padding. */
  attentionMask: number[];
}

interface BpeResult {
  tokens: string[];
  ids: number[];
}

export class ClipTokenizer {
  readonly vocab: ReadonlyMap<string, number>;
  readonly special: Readonly<SpecialTokens>;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId: number;
  readonly modelMaxLength: number | undefined;
  private readonly ranks = new Map<string, number>();
  private readonly idToTokenTable: string[] = [];
  private readonly splitTokens: string[];
  private readonly splitFirstChars: Set<string>;
  private readonly cache = new Map<string, BpeResult>();
  private readonly cacheLimit: number;
  private readonly cleaning: CleanTextMode;

  constructor(files: Omit<TokenizerFiles, "dir"> & { dir?: string }, options: ClipTokenizerOptions = {}) {
    this.vocab = files.vocab;
    this.special = { ...files.special };
    const idOf = (slot: keyof SpecialTokens) => {
      const id = files.vocab.get(files.special[slot]);
      if (id === undefined) {
        throw new TokenizerError(
          "unknown_special_token",
          files.dir ?? "<in-memory vocab>",
          `${slot}_token ${JSON.stringify(files.special[slot])} is not in the vocabulary`,
        );
      }
      return id;
    };
    this.bosId = idOf("bos");
    this.eosId = idOf("eos");
    this.unkId = idOf("unk");
    this.padId = idOf("pad");
    this.modelMaxLength = files.modelMaxLength;
    files.merges.forEach(([a, b], rank) => {
      const key = `${a} ${b}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank); // dict(zip(...)) keeps the last; merges are unique
    });
    for (const [token, id] of files.vocab) this.idToTokenTable[id] = token;
    // Longest first so that a special token containing another (none in CLIP's files) wins, as in HF's trie.
    this.splitTokens = [...new Set(Object.values(files.special))].sort((a, b) => b.length - a.length);
    this.splitFirstChars = new Set(this.splitTokens.map((t) => t[0]));
    this.cacheLimit = options.cacheLimit ?? 100_000;
    this.cleaning = options.cleaning ?? "ftfy";
  }

  /** Loads vocab.json + merges.txt (+ special-token configs) from a tokenizer folder or diffusers root. */
  static async fromDirectory(dir: string, options?: ClipTokenizerOptions): Promise<ClipTokenizer> {
    return new ClipTokenizer(await loadTokenizerFiles(dir), options);
  }

  get vocabSize(): number {
    return this.vocab.size;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  clearCache(): void {
    this.cache.clear();
  }

  /** The token string for an id (e.g. 320 -> "a</w>"), or undefined. */
  idToToken(id: number): string | undefined {
    return this.idToTokenTable[id];
  }

  /** BPE token strings of the text, without bos/eos (HF's tokenizer.tokenize). */
  tokenize(text: string): string[] {
    const out: string[] = [];
    this.run(text, (r) => {
      for (const t of r.tokens) out.push(t);
    });
    return out;
  }

  /** Ids of the text without bos/eos, untruncated (HF: add_special_tokens=False, truncation=False). */
  encodeText(text: string): number[] {
    const out: number[] = [];
    this.run(text, (r) => {
      for (const id of r.ids) out.push(id);
    });
    return out;
  }

  /** HF tokenizer(text, padding="max_length", max_length=77, truncation=True) by default. */
  encode(text: string, options: EncodeOptions = {}): Encoding {
    const maxLength = options.maxLength ?? 77;
    if (maxLength < 2) throw new RangeError(`maxLength must be at least 2, got ${maxLength}`);
    let body = this.encodeText(text);
    if ((options.truncation ?? true) && body.length > maxLength - 2) body = body.slice(0, maxLength - 2);
    const inputIds = [this.bosId, ...body, this.eosId];
    const attentionMask = inputIds.map(() => 1);
    if (options.padding ?? true) {
      while (inputIds.length < maxLength) {
        inputIds.push(this.padId);
        attentionMask.push(0);
      }
    }
    return { inputIds, attentionMask };
  }

  /** Inverse mapping for inspection: ids -> text ("</w>" becomes a space, bytes decoded as UTF-8). */
  decode(ids: readonly number[]): string {
    const text = ids.map((id) => this.idToTokenTable[id] ?? "").join("");
    const pieces = text.split(END_OF_WORD);
    const bytes: number[] = [];
    pieces.forEach((piece, i) => {
      if (i > 0) bytes.push(0x20);
      for (const ch of piece) bytes.push(CHAR_TO_BYTE.get(ch) ?? 0x3f);
    });
    return new TextDecoder().decode(Uint8Array.from(bytes)).trim();
  }

  /** Splits on special-token text, cleans each other piece, pre-tokenizes, and BPE-encodes each word. */
  private run(text: string, emit: (r: BpeResult) => void): void {
    for (const piece of this.splitOnSpecialTokens(text)) {
      if (piece.special) {
        emit({ tokens: [piece.text], ids: [this.vocab.get(piece.text)!] });
        continue;
      }
      const cleaned = cleanText(piece.text, this.cleaning);
      if (cleaned === "") continue;
      for (const match of cleaned.matchAll(PRE_TOKEN_RE)) emit(this.bpe(this.byteEncode(match[0])));
    }
  }

  private splitOnSpecialTokens(text: string): { text: string; special: boolean }[] {
    const out: { text: string; special: boolean }[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const hit = this.splitFirstChars.has(text[i])
        ? this.splitTokens.find((t) => text.startsWith(t, i))
        : undefined;
      if (hit === undefined) {
        i++;
        continue;
      }
      if (i > start) out.push({ text: text.slice(start, i), special: false });
      out.push({ text: hit, special: true });
      i += hit.length;
      start = i;
    }
    if (start < text.length) out.push({ text: text.slice(start), special: false });
    return out;
  }

  private byteEncode(word: string): string {
    if (/^[\x21-\x7e]*$/.test(word)) return word; // printable ASCII maps to itself
    let s = "";
    for (const b of UTF8.encode(word)) s += BYTE_TO_CHAR[b];
    return s;
  }

  private bpe(word: string): BpeResult {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    const tokens = BPE_VERBATIM.has(word) ? [word] : this.merge(word);
    const result = { tokens, ids: tokens.map((t) => this.vocab.get(t) ?? this.unkId) };
    if (this.cacheLimit > 0) {
      if (this.cache.size >= this.cacheLimit) this.cache.clear();
      this.cache.set(word, result);
    }
    return result;
  }

  /** Applies merges lowest rank first until none applies (HF CLIPTokenizer.bpe). */
  private merge(word: string): string[] {
    let symbols = word.split("");
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let bestRank = Number.POSITIVE_INFINITY;
      let first = "";
      let second = "";
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          first = symbols[i];
          second = symbols[i + 1];
        }
      }
      if (bestRank === Number.POSITIVE_INFINITY) break;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    return symbols;
  }
}
