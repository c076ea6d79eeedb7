// AUTOMATIC1111's long-prompt handling (modules/sd_hijack_clip.py, FrozenCLIPEmbedderWithCustomWordsBase):
// a prompt of any length becomes chunks of 75 text tokens, each wrapped as [bos, 75 tokens, eos] = 77 ids and
// encoded separately by the text encoder; the per-chunk outputs are concatenated along the sequence axis.
// Each token carries its emphasis multiplier from prompt-weighting.ts; applyEmphasis() applies them to the
// encoder output as A1111's "Original" emphasis does. Textual-inversion embeddings are not handled here.

import type { ClipTokenizer } from "./clip-bpe.ts";
import { isBreakMarker, parsePromptAttention, type WeightedText } from "./prompt-weighting.ts";

/** A1111's opts.emphasis: how bracket syntax is interpreted and how multipliers are applied. */
export type EmphasisMode = "original" | "noNorm" | "ignore" | "none";

export interface ChunkOptions {
  /**
   * "original" (default) and "noNorm": parse the emphasis syntax (they differ only in applyEmphasis);
   * "ignore": parse it (brackets vanish) but all multipliers are later ignored; "none": brackets are text.
   */
  emphasis?: EmphasisMode;
  /** A1111's comma_padding_backtrack (default 20; 0 disables): see tokenizePromptChunks. */
  commaPaddingBacktrack?: number;
  /** Text tokens per chunk (default 75, leaving room for bos and eos). */
  chunkLength?: number;
}

/** One encoder call's worth of prompt: ids and per-token multipliers, chunkLength + 2 long. */
export interface PromptChunk {
  ids: number[];
  weights: number[];
}

export interface ChunkedPrompt {
  chunks: PromptChunk[];
  /** A1111's token count: 75 per finished chunk plus the tokens of the last one. */
  tokenCount: number;
}

/**
 * SD2's tokenizer pads with a different id than eos: A1111 (process_tokens) overwrites everything after the
 * first eos with the pad id, which yields what HF's padding would. SD1 pads with eos, so nothing changes.
 */
function finalizeIds(tokenizer: ClipTokenizer, ids: number[]): number[] {
  if (tokenizer.padId === tokenizer.eosId) return ids;
  const end = ids.indexOf(tokenizer.eosId);
  return ids.map((id, i) => (i > end ? tokenizer.padId : id));
}

/** A1111's empty_chunk: bos followed by eos padding, all multipliers 1. */
export function emptyChunk(tokenizer: ClipTokenizer, chunkLength = 75): PromptChunk {
  const ids = [tokenizer.bosId, ...new Array<number>(chunkLength + 1).fill(tokenizer.eosId)];
  return { ids: finalizeIds(tokenizer, ids), weights: new Array<number>(chunkLength + 2).fill(1.0) };
}

/**
 * Extends a prompt's chunk list to `count` chunks with empty chunks, as A1111 does when prompts of different
 * chunk counts are batched together (and, equivalently, when cond and uncond are padded with the encoding of
 * the empty prompt).
 */
export function padChunks(
  tokenizer: ClipTokenizer,
  chunks: PromptChunk[],
  count: number,
  chunkLength = 75,
): PromptChunk[] {
  const out = chunks.slice();
  while (out.length < count) out.push(emptyChunk(tokenizer, chunkLength));
  return out;
}

/**
 * A1111's tokenize_line. Each parsed run is tokenized on its own (so brackets always split words); tokens
 * fill the current chunk; a BREAK starts a new chunk. When a chunk is full (75 tokens) and the next token is
 * not a comma, and the chunk's last comma is at most `commaPaddingBacktrack` tokens back, the tokens after
 * that comma move to the next chunk so that a comma-separated phrase is not cut in half. Short chunks are
 * padded with eos (multiplier 1) and wrapped with bos/eos.
 */
export function tokenizePromptChunks(
  tokenizer: ClipTokenizer,
  prompt: string,
  options: ChunkOptions = {},
): ChunkedPrompt {
  const chunkLength = options.chunkLength ?? 75;
  const backtrack = options.commaPaddingBacktrack ?? 20;
  const parsed: WeightedText[] =
    options.emphasis === "none" ? [{ text: prompt, weight: 1.0 }] : parsePromptAttention(prompt);
  const commaToken = tokenizer.vocab.get(",</w>");

  const chunks: PromptChunk[] = [];
  let tokens: number[] = [];
  let multipliers: number[] = [];
  let tokenCount = 0;
  let lastComma = -1;

  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? tokens.length : chunkLength;
    const toAdd = chunkLength - tokens.length;
    if (toAdd > 0) {
      for (let i = 0; i < toAdd; i++) {
        tokens.push(tokenizer.eosId);
        multipliers.push(1.0);
      }
    }
    const ids = finalizeIds(tokenizer, [tokenizer.bosId, ...tokens, tokenizer.eosId]);
    chunks.push({ ids, weights: [1.0, ...multipliers, 1.0] });
    lastComma = -1;
    tokens = [];
    multipliers = [];
  };

  for (const run of parsed) {
    if (isBreakMarker(run)) {
      nextChunk();
      continue;
    }
    for (const token of tokenizer.encodeText(run.text)) {
      if (token === commaToken) {
        lastComma = tokens.length;
      } else if (
        backtrack !== 0 &&
        tokens.length === chunkLength &&
        lastComma !== -1 &&
        tokens.length - lastComma <= backtrack
      ) {
        const breakLocation = lastComma + 1;
        const relocTokens = tokens.slice(breakLocation);
        const relocMultipliers = multipliers.slice(breakLocation);
        tokens = tokens.slice(0, breakLocation);
        multipliers = multipliers.slice(0, breakLocation);
        nextChunk();
        tokens = relocTokens;
        multipliers = relocMultipliers;
      }
      if (tokens.length === chunkLength) nextChunk();
      tokens.push(token);
      multipliers.push(run.weight);
    }
  }
  if (tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount };
}

export interface EmphasisOptions {
  /** Width of one token's embedding (768 for SD1, 1024 for SD2). */
  dim: number;
  mode?: EmphasisMode;
}

/**
 * Applies per-token multipliers to text-encoder output z, laid out [rows, dim] row-major, where rows is
 * weights.length (77 for one chunk, or batch x 77 when A1111 encodes a batch of prompts' i-th chunks
 * together - its mean is then taken over the whole batch tensor). A1111's "Original" emphasis, in float32:
 *   m0 = mean(z);  z' = z * w[row];  m1 = mean(z');  out = z' * (m0 / m1)
 * "noNorm" returns z' (A1111's "No norm"); "ignore" and "none" return z unchanged (as a copy).
 * Means are accumulated in float64 and rounded once to float32 (torch's float32 mean is a pairwise sum; the
 * two agree to within a unit or two in the last place); every elementwise step is rounded to float32 as
 * torch does. Returns a new array.
 */
export function applyEmphasis(
  z: Float32Array,
  weights: ArrayLike<number>,
  options: EmphasisOptions,
): Float32Array {
  const { dim } = options;
  const mode = options.mode ?? "original";
  const rows = weights.length;
  if (z.length !== rows * dim) {
    throw new RangeError(
      `applyEmphasis: z has ${z.length} values, expected ${rows} weights x ${dim} = ${rows * dim}`,
    );
  }
  if (mode === "ignore" || mode === "none") return z.slice();

  const f32 = Math.fround;
  const out = new Float32Array(z.length);
  let sum0 = 0;
  let sum1 = 0;
  for (let r = 0; r < rows; r++) {
    const w = f32(weights[r]);
    for (let d = r * dim, end = d + dim; d < end; d++) {
      sum0 += z[d];
      out[d] = z[d] * w; // the Float32Array store rounds like torch's float32 multiply
      sum1 += out[d];
    }
  }
  if (mode === "noNorm") return out;
  const ratio = f32(f32(sum0 / z.length) / f32(sum1 / z.length));
  for (let i = 0; i < out.length; i++) out[i] = out[i] * ratio;
  return out;
}
