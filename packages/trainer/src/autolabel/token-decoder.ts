/**
 * Ids -> text for the captioners' `tokenizer.json` (Hugging Face tokenizers format). A captioner only ever
 * decodes, so this reads the vocabulary, the added tokens and the `decoder` section and nothing else: no
 * normalizer, pre-tokenizer or merges. Hand-written because the one library that reads this format in Node
 * (@huggingface/transformers / tokenizers bindings) would bring a second onnxruntime and native builds.
 *
 * As `tokenizer.decode(ids, skip_special_tokens=True)` does it:
 * - ids -> token strings (model vocab, then added tokens); ids with no token are dropped; added tokens marked
 *   `special` are dropped when skipping special tokens;
 * - the `decoder` turns the token strings into text: `ByteLevel` (GPT-2, BART: each character stands for one
 *   byte through bytes_to_unicode, the bytes are UTF-8), `WordPiece` (BERT, BLIP: `##` pieces glue to the
 *   previous token, others get a space; `cleanup` removes spaces before punctuation), `BPEDecoder` (suffix
 *   such as `</w>` becomes a space), `Metaspace` (▁ becomes a space), `Sequence` of these, and none (tokens
 *   joined by spaces, the library's behaviour without a decoder);
 * - then transformers' `clean_up_tokenization` when `clean_up_tokenization_spaces` (tokenizer_config.json,
 *   default true as in the transformers versions these models were released with).
 */
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { bytesToUnicode } from "@lora-studio/engine";

export class TokenizerFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "TokenizerFileError";
  }
}

type DecoderSpec =
  | { type: "ByteLevel" }
  | { type: "WordPiece"; prefix: string; cleanup: boolean }
  | { type: "BPEDecoder"; suffix: string }
  | { type: "Metaspace"; replacement: string; addPrefixSpace: boolean }
  | { type: "Sequence"; decoders: DecoderSpec[] }
  | { type: "None" };

const CHAR_TO_BYTE = new Map(bytesToUnicode().map((ch, byte) => [ch, byte]));

export class TokenDecoder {
  private constructor(
    readonly file: string,
    private readonly tokens: Map<number, string>,
    private readonly special: Set<number>,
    private readonly decoder: DecoderSpec,
    private readonly cleanUpSpaces: boolean,
  ) {}

  /** Reads `tokenizer.json` (and `tokenizer_config.json` next to it when present). */
  static async load(path: string): Promise<TokenDecoder> {
    const json = await readJson(path);
    const model = json.model as { type?: string; vocab?: unknown } | undefined;
    if (!model || typeof model !== "object")
      throw new TokenizerFileError(path, 'no "model" section (is it a Hugging Face tokenizer.json?)');
    const tokens = new Map<number, string>();
    if (Array.isArray(model.vocab)) {
      // Unigram: [[piece, score], ...], the id is the position.
      model.vocab.forEach((entry, id) => {
        if (Array.isArray(entry) && typeof entry[0] === "string") tokens.set(id, entry[0]);
      });
    } else if (model.vocab && typeof model.vocab === "object") {
      for (const [token, id] of Object.entries(model.vocab as Record<string, unknown>)) {
        if (typeof id !== "number")
          throw new TokenizerFileError(path, `model.vocab["${token}"] is not an id`);
        tokens.set(id, token);
      }
    } else throw new TokenizerFileError(path, "model.vocab is missing");
    const special = new Set<number>();
    const added = json.added_tokens ?? [];
    if (!Array.isArray(added)) throw new TokenizerFileError(path, "added_tokens is not a list");
    for (const [i, t] of added.entries()) {
      if (typeof t?.id !== "number" || typeof t?.content !== "string")
        throw new TokenizerFileError(path, `added_tokens[${i}] needs "id" and "content"`);
      tokens.set(t.id, t.content);
      if (t.special === true) special.add(t.id);
    }
    const decoder = parseDecoder(json.decoder, path, "decoder");
    let cleanUp = true;
    const configPath = join(dirname(path), "tokenizer_config.json");
    const config = await readJson(configPath).catch((e: unknown) => {
      if (e instanceof TokenizerFileError && /not found/.test(e.message)) return undefined;
      throw e;
    });
    if (typeof config?.clean_up_tokenization_spaces === "boolean")
      cleanUp = config.clean_up_tokenization_spaces;
    return new TokenDecoder(path, tokens, special, decoder, cleanUp);
  }

  /** The token string of an id (undefined when the tokenizer has none). */
  token(id: number): string | undefined {
    return this.tokens.get(id);
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const skip = opts.skipSpecialTokens ?? true;
    const pieces: string[] = [];
    for (const id of ids) {
      const t = this.tokens.get(id);
      if (t === undefined || (skip && this.special.has(id))) continue;
      pieces.push(t);
    }
    const text = applyDecoder(this.decoder, pieces).join("");
    return this.cleanUpSpaces ? cleanUpTokenization(text) : text;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: tokenizer.json is checked field by field where it is read.
async function readJson(path: string): Promise<Record<string, any>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TokenizerFileError(path, code === "ENOENT" ? "not found" : `cannot read (${code})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerFileError(path, `not valid JSON (${(e as Error).message})`);
  }
}

function parseDecoder(spec: unknown, file: string, where: string): DecoderSpec {
  if (spec === null || spec === undefined) return { type: "None" };
  const s = spec as Record<string, unknown>;
  switch (s.type) {
    case "ByteLevel":
      return { type: "ByteLevel" };
    case "WordPiece":
      return {
        type: "WordPiece",
        prefix: typeof s.prefix === "string" ? s.prefix : "##",
        cleanup: s.cleanup !== false,
      };
    case "BPEDecoder":
      return { type: "BPEDecoder", suffix: typeof s.suffix === "string" ? s.suffix : "</w>" };
    case "Metaspace":
      return {
        type: "Metaspace",
        replacement: typeof s.replacement === "string" ? s.replacement : "\u2581",
        addPrefixSpace: s.prepend_scheme !== "never" && s.add_prefix_space !== false,
      };
    case "Sequence": {
      if (!Array.isArray(s.decoders)) throw new TokenizerFileError(file, `${where}.decoders is not a list`);
      return {
        type: "Sequence",
        decoders: s.decoders.map((d, i) => parseDecoder(d, file, `${where}.decoders[${i}]`)),
      };
    }
    default:
      throw new TokenizerFileError(
        file,
        `${where}.type "${String(s.type)}" is not supported (ByteLevel, WordPiece, BPEDecoder, Metaspace, Sequence)`,
      );
  }
}

/** The decoders work token by token (a chain), as the tokenizers library's `decode_chain`. */
function applyDecoder(d: DecoderSpec, tokens: string[]): string[] {
  switch (d.type) {
    case "None":
      return tokens.map((t, i) => (i === 0 ? t : ` ${t}`));
    case "ByteLevel": {
      const bytes: number[] = [];
      for (const t of tokens)
        for (const ch of t) {
          const b = CHAR_TO_BYTE.get(ch);
          // A character outside the byte map (an added token's text) stands for its own UTF-8 bytes.
          if (b !== undefined) bytes.push(b);
          else bytes.push(...new TextEncoder().encode(ch));
        }
      return [new TextDecoder("utf-8", { fatal: false }).decode(Uint8Array.from(bytes))];
    }
    case "WordPiece":
      return tokens.map((t, i) => {
        let out = t;
        if (i !== 0) out = t.startsWith(d.prefix) ? t.slice(d.prefix.length) : ` ${t}`;
        return d.cleanup ? wordPieceCleanup(out) : out;
      });
    case "BPEDecoder":
      return tokens.map((t, i) => t.split(d.suffix).join(i === tokens.length - 1 ? "" : " "));
    case "Metaspace":
      return tokens.map((t, i) => {
        const out = t.split(d.replacement).join(" ");
        return i === 0 && d.addPrefixSpace && out.startsWith(" ") ? out.slice(1) : out;
      });
    case "Sequence":
      return d.decoders.reduce((acc, sub) => applyDecoder(sub, acc), tokens);
  }
}

const CLEANUP: [string, string][] = [
  [" .", "."],
  [" ?", "?"],
  [" !", "!"],
  [" ,", ","],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

/** transformers' `clean_up_tokenization`: no space before punctuation and English contractions. */
export function cleanUpTokenization(text: string): string {
  return CLEANUP.reduce((t, [from, to]) => t.split(from).join(to), text);
}

/** The WordPiece decoder's `cleanup` (tokenizers): the same list plus " do not" -> " don't". */
function wordPieceCleanup(text: string): string {
  return cleanUpTokenization(text.split(" do not").join(" don't"));
}
