import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { DEFAULT_GENERATION, type GenerationOptions, generate, topK } from "../src/autolabel/generate.ts";
import { cleanUpTokenization, TokenDecoder, TokenizerFileError } from "../src/autolabel/token-decoder.ts";
import { tempDir } from "./autolabel.helpers.ts";

// Tokens of the pure decoding tests: 0 start, 1 A, 2 B, 3 C, 4 end.
const START = 0;
const END = 4;
const special = { decoderStart: START, eos: [END] };
const opts = (o: Partial<GenerationOptions>): GenerationOptions => ({ ...DEFAULT_GENERATION, ...o });
/** The same logits after every prefix. */
const constant = (logits: number[]) => async (rows: { ids: readonly number[] }[]) =>
  rows.map(() => Float32Array.from(logits));

test("repetition penalty: positive logits divided, negative multiplied, start token included", async () => {
  // Without a penalty A wins forever; with 2: A (1.0), then B (A 0.5 < B 0.8), then END (A .5, B .4, END .6).
  const logits = [-5, 1.0, 0.8, -1, 0.6];
  const [plain] = await generate(1, special, opts({ maxNewTokens: 5 }), constant(logits));
  assert.deepEqual(plain.tokens, [1, 1, 1, 1, 1]);
  assert.equal(plain.finished, false);
  const [penalised] = await generate(
    1,
    special,
    opts({ maxNewTokens: 5, repetitionPenalty: 2 }),
    constant(logits),
  );
  assert.deepEqual(penalised.tokens, [1, 2]);
  assert.equal(penalised.finished, true);
});

test("no_repeat_ngram_size bans the token that would repeat an n-gram; min_new_tokens holds EOS back", async () => {
  // A -> B -> A -> B ... by a transition table; with bigrams banned the second "A B" cannot happen.
  const next: Record<number, number[]> = {
    [START]: [0, 3, 0, 0, 0],
    1: [0, 0, 3, 2, 0],
    2: [0, 3, 0, 0, 1],
    3: [0, 0, 0, 0, 3],
  };
  const step = async (rows: { ids: readonly number[] }[]) =>
    rows.map((r) => Float32Array.from(next[r.ids[r.ids.length - 1]]));
  const [loop] = await generate(1, special, opts({ maxNewTokens: 6 }), step);
  assert.deepEqual(loop.tokens, [1, 2, 1, 2, 1, 2]);
  // A B A, then B is banned ("A B" seen) -> C, then END.
  const [banned] = await generate(1, special, opts({ maxNewTokens: 6, noRepeatNgramSize: 2 }), step);
  assert.deepEqual(banned.tokens, [1, 2, 1, 3]);
  assert.equal(banned.finished, true);
  // END is the best token at once; min 2 new tokens forces A then A.
  const [early] = await generate(1, special, opts({ maxNewTokens: 5 }), constant([0, 1, 0, 0, 2]));
  assert.deepEqual(early.tokens, []);
  const [held] = await generate(
    1,
    special,
    opts({ maxNewTokens: 5, minNewTokens: 2 }),
    constant([0, 1, 0, 0, 2]),
  );
  assert.deepEqual(held.tokens, [1, 1]);
});

test("max_length counts the start token; pictures in one batch decode independently", async () => {
  const seen: number[] = [];
  const step = async (rows: { source: number; ids: readonly number[] }[]) => {
    seen.push(rows.length);
    // Picture 0 ends after one token, picture 1 never ends.
    return rows.map((r) =>
      Float32Array.from(r.source === 0 && r.ids.length === 2 ? [0, 0, 0, 0, 9] : [0, 5, 0, 0, 0]),
    );
  };
  const out = await generate(2, special, opts({ maxLength: 4 }), step);
  assert.deepEqual(
    out.map((g) => g.tokens),
    [[1], [1, 1, 1]],
  );
  assert.deepEqual(seen, [2, 2, 1], "a finished picture is not decoded any further");
});

test("topK keeps the k largest, largest first, and skips -Infinity", () => {
  const v = Float32Array.from([0.1, 5, -Infinity, 3, 5.5, -1]);
  assert.deepEqual(topK(v, 3), [
    [4, 5.5],
    [1, 5],
    [3, 3],
  ]);
  assert.deepEqual(topK(Float32Array.from([-Infinity, 2]), 4), [[1, 2]]);
});

test("tokenizer.json decoding: byte-level BPE with UTF-8 bytes, WordPiece ## and cleanup, special tokens", async () => {
  const dir = await tempDir("tok-");
  // "ĠcafÃ©" is " café" through GPT-2's bytes_to_unicode (é = bytes C3 A9 -> "Ã" and "©").
  const bpe = {
    added_tokens: [{ id: 0, content: "<|endoftext|>", special: true }],
    model: {
      type: "BPE",
      vocab: { "<|endoftext|>": 0, a: 1, Ġred: 2, "ĠcafÃ©": 3, "Ġ.": 4, Ċ: 5 },
      merges: [],
    },
    decoder: { type: "ByteLevel" },
  };
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(bpe));
  const t = await TokenDecoder.load(join(dir, "tokenizer.json"));
  assert.equal(t.decode([0, 1, 2, 3, 0]), "a red café");
  assert.equal(t.decode([0, 1, 2, 0], { skipSpecialTokens: false }), "<|endoftext|>a red<|endoftext|>");
  assert.equal(t.decode([1, 4, 5, 99]), "a.\n", "cleanup joins ' .'; unknown ids are dropped");
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ clean_up_tokenization_spaces: false }),
  );
  assert.equal((await TokenDecoder.load(join(dir, "tokenizer.json"))).decode([1, 4]), "a .");

  const wp = {
    added_tokens: [
      { id: 0, content: "[PAD]", special: true },
      { id: 1, content: "[SEP]", special: true },
    ],
    model: {
      type: "WordPiece",
      vocab: { "[PAD]": 0, "[SEP]": 1, a: 2, dog: 3, "##gy": 4, ",": 5, don: 6, "'": 7, t: 8 },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  };
  await mkdirWrite(join(dir, "wp"), wp);
  const w = await TokenDecoder.load(join(dir, "wp", "tokenizer.json"));
  assert.equal(w.decode([2, 3, 4, 5, 2, 3, 1, 0]), "a doggy, a dog");
  assert.equal(
    w.decode([4, 3]),
    "##gy dog",
    "a leading ## piece keeps its prefix, as the tokenizers library does",
  );
  assert.equal(cleanUpTokenization("it ' s a dog , is n't it ?"), "it's a dog, isn't it?");

  await mkdirWrite(join(dir, "bad"), { ...wp, decoder: { type: "CTC" } });
  await assert.rejects(TokenDecoder.load(join(dir, "bad", "tokenizer.json")), (e: Error) => {
    assert.ok(e instanceof TokenizerFileError);
    assert.match(e.message, /bad\/tokenizer\.json: decoder\.type "CTC" is not supported/);
    return true;
  });
  await mkdirWrite(join(dir, "novocab"), { model: { type: "BPE" } });
  await assert.rejects(TokenDecoder.load(join(dir, "novocab", "tokenizer.json")), /model\.vocab is missing/);
});

async function mkdirWrite(dir: string, json: unknown): Promise<void> {
  const { mkdir } = await import("node:fs/promises");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(json));
}
