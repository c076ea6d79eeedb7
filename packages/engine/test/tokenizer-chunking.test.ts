// A1111 long-prompt chunking and emphasis application. Expected chunk layouts are written out by hand from
// A1111's tokenize_line rules (ids of "cat", "dog" and "," taken from the real CLIP vocabulary); the weighted
// fixture prompt must give exactly HF's ids for the same prompt with the syntax removed.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { applyEmphasis, emptyChunk, padChunks, tokenizePromptChunks } from "../src/tokenizer/chunking.ts";
import { ClipTokenizer } from "../src/tokenizer/clip-bpe.ts";

const fixtures = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
const tokenizer = await ClipTokenizer.fromDirectory(join(fixtures, "tiny-sd1/diffusers"));
const sidecar = JSON.parse(await readFile(join(fixtures, "tiny-sd1/reference/01_tokenizer.json"), "utf8"));

const BOS = 49406;
const EOS = 49407;
const CAT = 2368;
const DOG = 1929;
const COMMA = 267;
const rep = <T>(n: number, v: T): T[] => new Array<T>(n).fill(v);
const words = (n: number, w: string) => rep(n, w).join(" ");
/** [bos, ...body, eos-padding up to 75, eos] as A1111 builds a chunk. */
const chunkIds = (body: number[]) => [BOS, ...body, ...rep(75 - body.length, EOS), EOS];

test("a weighted prompt chunks to HF's ids of the same prompt without the syntax, with A1111's weights", () => {
  const plain = sidecar.params.prompts[3];
  const { chunks, tokenCount } = tokenizePromptChunks(tokenizer, plain.raw_with_weight_syntax);
  assert.equal(chunks.length, 1);
  assert.equal(tokenCount, plain.n_tokens_full - 2);
  assert.deepEqual(chunks[0].ids, plain.ids_padded);
  const expected = rep(77, 1.0);
  expected[1] = 1.2; // (masterpiece:1.2)
  expected[4] = 1.1 * 1.1; // ((cute))
  expected[5] = 1 / 1.1; // [cat]
  expected[9] = 0.8; // (red:0.8)
  assert.deepEqual(chunks[0].weights, expected);
});

test("more than 75 tokens: 75 per chunk, the rest in a padded second chunk", () => {
  const { chunks, tokenCount } = tokenizePromptChunks(tokenizer, words(100, "cat"));
  assert.deepEqual(
    chunks.map((c) => c.ids),
    [chunkIds(rep(75, CAT)), chunkIds(rep(25, CAT))],
  );
  assert.ok(chunks.every((c) => c.ids.length === 77 && c.weights.every((w) => w === 1)));
  assert.equal(tokenCount, 100);
  const fixtureLong = sidecar.params.prompts[2];
  const long = tokenizePromptChunks(tokenizer, fixtureLong.text);
  assert.deepEqual(
    long.chunks[0].ids,
    fixtureLong.ids_padded,
    "first chunk of a long prompt = HF's truncation",
  );
  assert.deepEqual(long.chunks[1].ids, chunkIds(fixtureLong.ids_full.slice(76, -1)));
});

test("comma back-off: text after a comma within 20 tokens of the limit moves to the next chunk", () => {
  const prompt = `${words(70, "cat")}, ${words(10, "(dog:1.3)")}`;
  const moved = tokenizePromptChunks(tokenizer, prompt);
  assert.deepEqual(
    moved.chunks.map((c) => c.ids),
    [chunkIds([...rep(70, CAT), COMMA]), chunkIds(rep(10, DOG))],
  );
  assert.deepEqual(moved.chunks[1].weights, [1, ...rep(10, 1.3), ...rep(66, 1)], "weights move with tokens");
  assert.equal(moved.tokenCount, 85);

  const off = tokenizePromptChunks(tokenizer, prompt, { commaPaddingBacktrack: 0 });
  assert.deepEqual(
    off.chunks.map((c) => c.ids),
    [chunkIds([...rep(70, CAT), COMMA, ...rep(4, DOG)]), chunkIds(rep(6, DOG))],
  );

  // The comma is exactly `backtrack` tokens from the limit -> moves; one more -> stays.
  const at = (catsBeforeComma: number, backtrack: number) =>
    tokenizePromptChunks(tokenizer, `${words(catsBeforeComma, "cat")}, ${words(40, "dog")}`, {
      commaPaddingBacktrack: backtrack,
    }).chunks[0].ids.filter((id) => id === DOG).length;
  assert.equal(at(55, 20), 0, "75 - 55 = 20 <= 20: the dogs after the comma move");
  assert.equal(at(54, 20), 20, "75 - 54 = 21 > 20: chunk is cut at 75 tokens");
  assert.equal(at(54, 21), 0);
});

test("a comma arriving exactly at the limit stays in the next chunk and is not a back-off point", () => {
  const { chunks } = tokenizePromptChunks(tokenizer, `${words(75, "cat")}, dog`);
  assert.deepEqual(
    chunks.map((c) => c.ids),
    [chunkIds(rep(75, CAT)), chunkIds([COMMA, DOG])],
  );
});

test("BREAK starts a new chunk; inside brackets it is just a word", () => {
  const broken = tokenizePromptChunks(tokenizer, "cat BREAK dog");
  assert.deepEqual(
    broken.chunks.map((c) => c.ids),
    [chunkIds([CAT]), chunkIds([DOG])],
  );
  assert.equal(broken.tokenCount, 76);
  const literal = tokenizePromptChunks(tokenizer, "(cat BREAK dog)");
  assert.equal(literal.chunks.length, 1);
  assert.deepEqual(literal.chunks[0].ids.slice(0, 5), [BOS, CAT, ...tokenizer.encodeText("break"), DOG, EOS]);
  // A1111 quirk kept on purpose: the marker's weight -1 was multiplied by 1.1, so the word gets -1.1.
  assert.deepEqual(literal.chunks[0].weights.slice(0, 5), [1, 1.1, -1.1, 1.1, 1]);
});

test("empty prompt is one empty chunk (= HF's ids for ''); padChunks adds empty chunks", () => {
  const { chunks, tokenCount } = tokenizePromptChunks(tokenizer, "");
  assert.deepEqual(chunks, [emptyChunk(tokenizer)]);
  assert.deepEqual(chunks[0].ids, tokenizer.encode("").inputIds);
  assert.equal(tokenCount, 0);
  const padded = padChunks(tokenizer, chunks, 3);
  assert.equal(padded.length, 3);
  assert.deepEqual(padded[2], emptyChunk(tokenizer));
});

test("emphasis 'none' keeps the bracket characters as text", () => {
  const raw = "(cat:1.5) [dog]";
  const { chunks } = tokenizePromptChunks(tokenizer, raw, { emphasis: "none" });
  assert.deepEqual(chunks[0].ids, tokenizer.encode(raw).inputIds);
  assert.ok(chunks[0].weights.every((w) => w === 1));
});

test("SD2-style pad token: positions after the first eos become the pad id, as A1111 and HF do", async () => {
  const dir = await mkdtemp(join(tmpdir(), "clip-sd2-"));
  try {
    for (const f of ["vocab.json", "merges.txt"])
      await symlink(join(fixtures, "clip-tokenizer", f), join(dir, f));
    await writeFile(join(dir, "special_tokens_map.json"), JSON.stringify({ pad_token: "!" }));
    const sd2 = await ClipTokenizer.fromDirectory(dir);
    const { chunks } = tokenizePromptChunks(sd2, `${words(80, "cat")}`);
    assert.deepEqual(chunks[1].ids, [BOS, ...rep(5, CAT), EOS, ...rep(70, 0)]);
    assert.deepEqual(chunks[1].ids, sd2.encode(words(5, "cat")).inputIds);
    assert.deepEqual(emptyChunk(sd2).ids, [BOS, EOS, ...rep(75, 0)]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** Deterministic pseudo-random encoder output. */
function fakeEncoderOutput(rows: number, dim: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: rows * dim }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.3;
  });
}

test("applyEmphasis 'original': z * w rescaled so the mean is unchanged (float64 reference)", () => {
  const dim = 16;
  const weights = [1, 1.2, 1.2100000000000002, 1 / 1.1, 0.8, ...rep(72, 1)];
  const z = fakeEncoderOutput(77, dim, 7);
  const out = applyEmphasis(z, weights, { dim });
  let mean0 = 0;
  let mean1 = 0;
  for (let i = 0; i < z.length; i++) {
    mean0 += z[i] / z.length;
    mean1 += (z[i] * weights[Math.floor(i / dim)]) / z.length;
  }
  let maxErr = 0;
  let outMean = 0;
  for (let i = 0; i < z.length; i++) {
    const expected = z[i] * weights[Math.floor(i / dim)] * (mean0 / mean1);
    maxErr = Math.max(maxErr, Math.abs(out[i] - expected));
    outMean += out[i] / z.length;
  }
  assert.ok(maxErr < 1e-6, `max |diff| ${maxErr}`);
  assert.ok(Math.abs(outMean - mean0) < 1e-6 * Math.abs(mean0) + 1e-9, "mean restored");
  // Row ratios are the weight ratios: the rescale is one common factor.
  const factor = out[0] / z[0];
  assert.ok(Math.abs(out[dim] / z[dim] / factor - 1.2) < 1e-5);
});

test("applyEmphasis: unit weights change nothing; noNorm is z*w; ignore copies; batch rows share one mean", () => {
  const dim = 8;
  const z = fakeEncoderOutput(77, dim, 3);
  assert.deepEqual(applyEmphasis(z, rep(77, 1), { dim }), z);
  const w = Array.from({ length: 77 }, (_, i) => 1 + (i % 5) / 10);
  const noNorm = applyEmphasis(z, w, { dim, mode: "noNorm" });
  assert.deepEqual(
    noNorm,
    Float32Array.from(z, (v, i) => Math.fround(v * Math.fround(w[Math.floor(i / dim)]))),
  );
  const ignored = applyEmphasis(z, w, { dim, mode: "ignore" });
  assert.deepEqual(ignored, z);
  assert.notEqual(ignored, z);
  assert.throws(() => applyEmphasis(z, w.slice(1), { dim }), RangeError);

  // Two chunks encoded as one batch (A1111 takes z.mean() over the whole batch tensor).
  const z2 = fakeEncoderOutput(154, dim, 11);
  const w2 = [...w, ...rep(77, 1)];
  const batch = applyEmphasis(z2, w2, { dim });
  const alone = applyEmphasis(z2.subarray(77 * dim), rep(77, 1), { dim });
  assert.notDeepEqual(batch.subarray(77 * dim), alone, "second row is rescaled by the batch-wide factor");
});
