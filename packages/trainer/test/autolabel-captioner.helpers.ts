/**
 * A tiny image-to-text captioner in the exact Hugging Face optimum layout (config.json,
 * preprocessor_config.json, tokenizer.json, onnx/encoder_model.onnx, onnx/decoder_model.onnx or
 * onnx/decoder_model_merged.onnx), built with the engine's GraphBuilder, whose answers are known by design:
 *
 * - encoder: pixel_values [N,3,H,W] -> per-channel mean -> last_hidden_state [N,1,3] (the picture's mean
 *   colour after the preprocessor's normalisation, so a pure red picture gives (1, -1, -1) with mean/std 0.5);
 * - decoder: logits[n,s,:] = TABLE[input_ids[n,s]] + GATE[input_ids[n,s]] * (last_hidden_state[n] @ COLOUR)
 *   (+ RECALL_GATE[input_ids[n,s]] * count(RECALL token in the whole sequence) * BONUS): a fixed next-token
 *   table, a colour term only after the token(s) whose GATE is 1, and a term that remembers the prefix.
 *   The count comes from the decoder's `present.0.key` = concat(past_key_values.0.key, one-hot of the new
 *   tokens) [N, 2 heads, length, 4], the way a real decoder's KV cache grows, so a merged decoder fed a wrong or
 *   missing cache gives other captions than the plain decoder reading the whole prefix.
 *
 * So the next-token distribution after any prefix is a closed-form function the tests compute on their own.
 * Batch and sequence dimensions are made symbolic in the files (as optimum exports them) by a protobuf rewrite.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  add,
  cast,
  concat,
  encodeModel,
  GraphBuilder,
  gather,
  identity,
  matmul,
  mul,
  reduceMean,
  reduceSum,
  transpose,
  unsqueeze,
  type Value,
} from "@lora-studio/engine";
import { encode, type Field, fields, solidPng } from "./autolabel.helpers.ts";

export interface TinyCaptionerSpec {
  /** Token strings by id (index = id). */
  vocab: string[];
  /** Ids of added tokens marked special. */
  special: number[];
  /** Next-token logits per previous token: TABLE[prev][next]. */
  table: number[][];
  /** 1 where the colour term applies after that token. */
  gate: number[];
  /** [3][V]: logits added per unit of the R, G, B features. */
  colour: number[][];
  tokenizer: "bpe" | "wordpiece";
  /** config.json contents. */
  config: Record<string, unknown>;
  size: number;
  /** "plain": decoder_model.onnx; "merged": decoder_model_merged.onnx with use_cache_branch + past inputs. */
  decoder?: "plain" | "merged";
  /** Adds encoder_attention_mask and attention_mask inputs (BLIP's text decoder takes both). */
  masks?: boolean;
  /** Put the .onnx files in the folder itself instead of onnx/. */
  flat?: boolean;
  /** The prefix-memory term (see above). */
  recall?: { token: number; gate: number[]; bonus: number[] };
}

/** Probabilities -> logits (ln p), so softmax gives back exactly these probabilities. */
export function logitsOf(probs: Record<number, number>, vocab: number): number[] {
  const given = Object.values(probs).reduce((a, b) => a + b, 0);
  const rest = vocab - Object.keys(probs).length;
  const fill = rest > 0 ? Math.max(1e-9, (1 - given) / rest) : 0;
  return Array.from({ length: vocab }, (_, i) => Math.log(probs[i] ?? fill));
}

export async function writeTinyCaptioner(dir: string, spec: TinyCaptionerSpec): Promise<string> {
  const onnxDir = spec.flat ? dir : join(dir, "onnx");
  await mkdir(onnxDir, { recursive: true });
  const v = spec.vocab.length;

  const enc = new GraphBuilder("tiny_caption_encoder");
  const px = enc.input("pixel_values", "float32", [1, 3, spec.size, spec.size]);
  enc.output(unsqueeze(reduceMean(px, [2, 3], false), [1]), "last_hidden_state");
  await writeFile(
    join(onnxDir, "encoder_model.onnx"),
    symbolic(encodeModel(enc.build()), {
      pixel_values: { 0: "batch_size" },
      last_hidden_state: { 0: "batch_size" },
    }),
  );

  const dec = new GraphBuilder("tiny_caption_decoder");
  const ids = dec.input("input_ids", "int64", [1, 1]);
  const states = dec.input("encoder_hidden_states", "float32", [1, 1, 3]);
  const table = dec.initializer("table", {
    dtype: "float32",
    shape: [v, v],
    data: Float32Array.from(spec.table.flat()),
  });
  const gate = dec.initializer("gate", {
    dtype: "float32",
    shape: [v, 1],
    data: Float32Array.from(spec.gate),
  });
  const colour = dec.initializer("colour", {
    dtype: "float32",
    shape: [3, v],
    data: Float32Array.from(spec.colour.flat()),
  });
  let logits: Value = add(gather(table, ids), mul(gather(gate, ids), matmul(states, colour)));
  // present.0.key: one-hot rows of the recall token (1/8 per entry, so the sum over the cache counts it).
  const onehot = new Float32Array(v * 8);
  if (spec.recall) onehot.fill(1 / 8, spec.recall.token * 8, spec.recall.token * 8 + 8);
  const embed = dec.initializer("embed", { dtype: "float32", shape: [v, 2, 4], data: onehot });
  let present = transpose(gather(embed, ids), [0, 2, 1, 3]); // [N, 2, S, 4]
  const dims: Record<string, Record<number, string>> = {
    input_ids: { 0: "batch_size", 1: "decoder_sequence_length" },
    encoder_hidden_states: { 0: "batch_size" },
    logits: { 0: "batch_size", 1: "decoder_sequence_length" },
  };
  // Extra inputs must be used (a session requires every graph input); they add exactly zero.
  const zeroOf = (x: Value) => mul(reduceSum(cast(x, "float32"), undefined, false), 0);
  if (spec.masks) {
    const em = dec.input("encoder_attention_mask", "int64", [1, 1]);
    const am = dec.input("attention_mask", "int64", [1, 1]);
    logits = add(logits, add(zeroOf(em), zeroOf(am)));
    dims.encoder_attention_mask = { 0: "batch_size", 1: "encoder_sequence_length" };
    dims.attention_mask = { 0: "batch_size", 1: "decoder_sequence_length" };
  }
  if (spec.decoder === "merged") {
    // No If node: with use_cache_branch false the past is empty, and concat(empty, new) is the no-cache result.
    const branch = dec.input("use_cache_branch", "bool", [1]);
    const pk = dec.input("past_key_values.0.key", "float32", [1, 2, 1, 4]);
    const pv = dec.input("past_key_values.0.value", "float32", [1, 2, 1, 4]);
    logits = add(logits, add(zeroOf(branch), zeroOf(pv)));
    present = concat([pk, present], 2);
    for (const n of ["past_key_values.0.key", "past_key_values.0.value"])
      dims[n] = { 0: "batch_size", 2: "past_sequence_length" };
  }
  if (spec.recall) {
    const count = unsqueeze(reduceSum(present, [1, 2, 3], false), [1, 2]); // [N, 1, 1]
    const rg = dec.initializer("recall_gate", {
      dtype: "float32",
      shape: [v, 1],
      data: Float32Array.from(spec.recall.gate),
    });
    const bonus = dec.initializer("recall_bonus", {
      dtype: "float32",
      shape: [v],
      data: Float32Array.from(spec.recall.bonus),
    });
    logits = add(logits, mul(mul(gather(rg, ids), count), bonus));
  }
  dec.output(logits, "logits");
  // Real exports list present.* after logits; value mirrors key here.
  dec.output(present, "present.0.key");
  dec.output(identity(present), "present.0.value");
  dims["present.0.key"] = { 0: "batch_size", 2: "past_sequence_length + 1" };
  dims["present.0.value"] = { 0: "batch_size", 2: "past_sequence_length + 1" };
  const decoderFile = spec.decoder === "merged" ? "decoder_model_merged.onnx" : "decoder_model.onnx";
  await writeFile(join(onnxDir, decoderFile), symbolic(encodeModel(dec.build()), dims));

  await writeFile(join(dir, "config.json"), JSON.stringify(spec.config, null, 2));
  await writeFile(
    join(dir, "preprocessor_config.json"),
    JSON.stringify({
      do_normalize: true,
      do_rescale: true,
      do_resize: true,
      image_mean: [0.5, 0.5, 0.5],
      image_std: [0.5, 0.5, 0.5],
      resample: 2,
      rescale_factor: 1 / 255,
      size: { height: spec.size, width: spec.size },
    }),
  );
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson(spec)));
  return dir;
}

function tokenizerJson(spec: TinyCaptionerSpec): Record<string, unknown> {
  const vocab = Object.fromEntries(spec.vocab.map((t, id) => [t, id]));
  const added = spec.special.map((id) => ({ id, content: spec.vocab[id], special: true }));
  return spec.tokenizer === "bpe"
    ? {
        version: "1.0",
        added_tokens: added,
        model: { type: "BPE", vocab, merges: [] },
        decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      }
    : {
        version: "1.0",
        added_tokens: added,
        model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", vocab },
        decoder: { type: "WordPiece", prefix: "##", cleanup: true },
      };
}

/** Rewrites the named graph inputs/outputs so that the given axes carry dim_param names instead of sizes. */
function symbolic(model: Uint8Array, dims: Record<string, Record<number, string>>): Uint8Array {
  const text = new TextEncoder();
  const rewriteShape = (shape: Uint8Array, axes: Record<number, string>) => {
    let axis = 0;
    return encode(
      fields(shape).map((f): Field => {
        if (f.field !== 1 || f.wire !== 2) return f;
        const name = axes[axis++];
        return name === undefined
          ? f
          : { field: 1, wire: 2, raw: encode([{ field: 2, wire: 2, raw: text.encode(name) }]) };
      }),
    );
  };
  const rewriteValueInfo = (vi: Uint8Array): Uint8Array => {
    const fs = fields(vi);
    const nameField = fs.find((f) => f.field === 1 && f.wire === 2);
    const axes = nameField && dims[new TextDecoder().decode(nameField.raw)];
    if (!axes) return vi;
    const sub = (buf: Uint8Array, field: number, fn: (raw: Uint8Array) => Uint8Array) =>
      encode(fields(buf).map((f) => (f.field === field && f.wire === 2 ? { ...f, raw: fn(f.raw) } : f)));
    return sub(vi, 2, (type) => sub(type, 1, (tt) => sub(tt, 2, (shape) => rewriteShape(shape, axes))));
  };
  return encode(
    fields(model).map((f) =>
      f.field === 7 && f.wire === 2
        ? {
            ...f,
            raw: encode(
              fields(f.raw).map((g) =>
                (g.field === 11 || g.field === 12) && g.wire === 2
                  ? { ...g, raw: rewriteValueInfo(g.raw) }
                  : g,
              ),
            ),
          }
        : f,
    ),
  );
}

// --- the designs the tests share ---

export const SIZE = 8;

// --- ViT-GPT2-like: byte-level BPE, one special token that is start, end and padding ---
export const BPE_VOCAB = [
  "<|endoftext|>",
  "a",
  "Ġred",
  "Ġblue",
  "Ġsquare",
  "the",
  "Ġcircle",
  "Ġgreen",
  "Ġagain",
];
export const b = (token: string) => BPE_VOCAB.indexOf(token);
export const VIT_GPT2_CONFIG = {
  model_type: "vision-encoder-decoder",
  decoder_start_token_id: 0,
  eos_token_id: 0,
  pad_token_id: 0,
  decoder: { model_type: "gpt2", bos_token_id: 0, eos_token_id: 0, vocab_size: BPE_VOCAB.length },
};

/**
 * bos -> "a" -> colour (from the picture) -> " square" -> end; but a square after "red" earlier in the
 * sentence continues with " again" (the decoder's memory of the prefix: +15 beats the table's 10 for end).
 */
export function colourSpec(): TinyCaptionerSpec {
  const v = BPE_VOCAB.length;
  const table = BPE_VOCAB.map(() => new Array(v).fill(0));
  table[b("<|endoftext|>")][b("a")] = 10;
  table[b("Ġred")][b("Ġsquare")] = 10;
  table[b("Ġblue")][b("Ġsquare")] = 10;
  table[b("Ġsquare")][b("<|endoftext|>")] = 10;
  const colour = [0, 1, 2].map(() => new Array(v).fill(0));
  colour[0][b("Ġred")] = 6; // R feature, +1 for a pure red picture, -1 for pure blue
  colour[2][b("Ġblue")] = 6;
  table[b("Ġagain")][b("<|endoftext|>")] = 10;
  const gate = BPE_VOCAB.map((t) => (t === "a" ? 1 : 0));
  const recall = {
    token: b("Ġred"),
    gate: BPE_VOCAB.map((t) => (t === "Ġsquare" ? 1 : 0)),
    bonus: BPE_VOCAB.map((t) => (t === "Ġagain" ? 15 : 0)),
  };
  return {
    vocab: BPE_VOCAB,
    special: [0],
    table,
    gate,
    colour,
    recall,
    tokenizer: "bpe",
    config: VIT_GPT2_CONFIG,
    size: SIZE,
  };
}

/** A wide pure red and a tall pure blue picture. */
export async function pictures(dir: string): Promise<{ red: string; blue: string }> {
  await mkdir(dir, { recursive: true });
  const red = join(dir, "red.png");
  const blue = join(dir, "blue.png");
  await solidPng(red, 20, 12, [255, 0, 0]);
  await solidPng(blue, 12, 20, [0, 0, 255]);
  return { red, blue };
}
