/**
 * A byte-level BPE trainer that writes a tokenizer in CLIP's file format (vocab.json + merges.txt), for the demo
 * base model. The real CLIP vocabulary (49,408 tokens) cannot ship with the repo (no npm package carries it as a
 * data file, and the fixtures may not be copied), and the demo's text encoder is trained from scratch anyway, so
 * it gets a vocabulary learned from its own captions. Hand-written because it is the inverse of the engine's
 * CLIP tokenizer (tokenizer/clip-bpe.ts) and must match its conventions exactly, which a general BPE library
 * would not:
 * - symbols are the GPT-2/CLIP bytes_to_unicode characters of the UTF-8 bytes, the last one of a word carrying
 *   "</w>";
 * - vocab ids: the 256 byte characters (printable bytes first, as CLIP's vocab.json), then the same with "</w>", then one token per merge in merge order,
 *   then <|startoftext|> and <|endoftext|> (so eos is the largest id, which the text encoder's pooled output
 *   relies on, as with CLIP);
 * - merges.txt starts with a "#version: 0.2" line.
 * Training is the classic algorithm: repeatedly merge the most frequent adjacent pair (ties broken by the pair's
 * text, so the result is deterministic) until every word is one symbol or `maxMerges` is reached.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { bytesToUnicode } from "@lora-studio/engine";
import { atomicWriteFile } from "@lora-studio/prompt-lora";

const END = "</w>";
// CLIP's pre-tokenizer pieces for plain text: letter runs, single digits, runs of other non-space characters.
const PIECE_RE = /\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/gu;

export interface TrainedBpe {
  vocab: Map<string, number>;
  merges: [string, string][];
}

/** Symbols of one pre-token: its UTF-8 bytes as bytes_to_unicode characters, "</w>" on the last. */
function symbolsOf(piece: string, byteChars: string[]): string[] {
  const chars = [...new TextEncoder().encode(piece)].map((b) => byteChars[b]);
  chars[chars.length - 1] += END;
  return chars;
}

/** Word frequencies of `texts` after CLIP's basic cleaning (whitespace collapsed, lower case). */
export function wordCounts(texts: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const t of texts) {
    const clean = t.replace(/\s+/g, " ").trim().toLowerCase();
    for (const m of clean.matchAll(PIECE_RE)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  }
  return counts;
}

export function trainClipBpe(texts: readonly string[], maxMerges = 10_000): TrainedBpe {
  const byteChars = bytesToUnicode();
  const words = [...wordCounts(texts)]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([w, n]) => ({ symbols: symbolsOf(w, byteChars), n }));
  const merges: [string, string][] = [];
  while (merges.length < maxMerges) {
    const pairs = new Map<string, number>();
    for (const w of words)
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const key = `${w.symbols[i]} ${w.symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + w.n);
      }
    let best: string | undefined;
    let bestN = 0;
    for (const [key, n] of pairs)
      if (n > bestN || (n === bestN && best !== undefined && key < best)) {
        best = key;
        bestN = n;
      }
    if (best === undefined) break;
    const [a, b] = best.split(" ") as [string, string];
    merges.push([a, b]);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w.symbols[i]);
      }
      w.symbols = out;
    }
  }
  // CLIP lists the byte symbols in bytes_to_unicode's dict order: the printable bytes first, then the 68
  // remapped ones (U+0100...), which is ascending code point order.
  const base = [...byteChars].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
  const vocab = new Map<string, number>();
  for (const c of base) vocab.set(c, vocab.size);
  for (const c of base) vocab.set(c + END, vocab.size);
  for (const [a, b] of merges) if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
  vocab.set("<|startoftext|>", vocab.size);
  vocab.set("<|endoftext|>", vocab.size);
  return { vocab, merges };
}

/** Writes vocab.json, merges.txt and the special-token configs CLIP tokenizer folders carry. */
export async function writeTokenizerFolder(dir: string, bpe: TrainedBpe): Promise<void> {
  await mkdir(dir, { recursive: true });
  await atomicWriteFile(join(dir, "vocab.json"), `${JSON.stringify(Object.fromEntries(bpe.vocab))}\n`);
  const lines = ["#version: 0.2", ...bpe.merges.map(([a, b]) => `${a} ${b}`)];
  await atomicWriteFile(join(dir, "merges.txt"), `${lines.join("\n")}\n`);
  const special = {
    bos_token: "<|startoftext|>",
    eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>",
    pad_token: "<|endoftext|>",
  };
  await atomicWriteFile(join(dir, "special_tokens_map.json"), `${JSON.stringify(special, null, 2)}\n`);
  const config = { ...special, model_max_length: 77, do_lower_case: true, tokenizer_class: "CLIPTokenizer" };
  await atomicWriteFile(join(dir, "tokenizer_config.json"), `${JSON.stringify(config, null, 2)}\n`);
}
