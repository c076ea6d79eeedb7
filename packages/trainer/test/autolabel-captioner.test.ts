import assert from "node:assert/strict";
import { copyFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { HostTensor } from "@lora-studio/engine";
import { Captioner } from "../src/autolabel/captioner.ts";
import { CaptionerModelError } from "../src/autolabel/captioner-config.ts";
import { loadProcessedRgb } from "../src/autolabel/preprocess.ts";
import { tempDir, writeTinyTagger } from "./autolabel.helpers.ts";
import {
  BPE_VOCAB,
  b,
  colourSpec,
  logitsOf,
  pictures,
  SIZE,
  type TinyCaptionerSpec,
  writeTinyCaptioner,
} from "./autolabel-captioner.helpers.ts";

/** Probabilities where the locally best first token leads to a worse sentence (see the beam test). */
const BEAM_PROBS: Record<string, Record<number, number>> = {
  "<|endoftext|>": { [b("a")]: 0.5, [b("the")]: 0.4 },
  a: { [b("Ġred")]: 0.4, [b("Ġblue")]: 0.35, [b("Ġgreen")]: 0.24 },
  the: { [b("Ġsquare")]: 0.9, [b("Ġcircle")]: 0.09 },
  Ġred: { [b("Ġsquare")]: 0.99 },
  Ġblue: { [b("Ġsquare")]: 0.99 },
  Ġgreen: { [b("Ġsquare")]: 0.99 },
  Ġsquare: { [b("<|endoftext|>")]: 0.99 },
  Ġcircle: { [b("<|endoftext|>")]: 0.99 },
};

function beamSpec(): TinyCaptionerSpec {
  const v = BPE_VOCAB.length;
  const table = BPE_VOCAB.map((t) => logitsOf(BEAM_PROBS[t] ?? {}, v));
  return {
    ...colourSpec(),
    table,
    gate: new Array(v).fill(0),
    colour: [0, 1, 2].map(() => new Array(v).fill(0)),
    recall: undefined,
  };
}

/** Every sentence up to `depth` tokens by brute force: the most likely one that ends. */
function mostLikelySentence(depth: number): { tokens: number[]; logp: number } {
  const v = BPE_VOCAB.length;
  const logSoftmax = (row: number[]) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    return row.map((x) => x - lse);
  };
  const table = beamSpec().table.map(logSoftmax);
  let best = { tokens: [] as number[], logp: -Infinity };
  const walk = (prev: number, tokens: number[], logp: number) => {
    for (let t = 0; t < v; t++) {
      const lp = logp + table[prev][t];
      if (t === 0) {
        if (lp > best.logp) best = { tokens, logp: lp };
      } else if (tokens.length + 1 < depth) walk(t, [...tokens, t], lp);
    }
  };
  walk(0, [], 0);
  return best;
}

// --- BLIP-like: WordPiece, [DEC] start, [SEP] end, masks on the decoder ---
const WP_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]", "a", "red", "blue", "square", "##s", "."];
const w = (token: string) => WP_VOCAB.indexOf(token);

function blipSpec(): TinyCaptionerSpec {
  const v = WP_VOCAB.length;
  const table = WP_VOCAB.map(() => new Array(v).fill(0));
  table[w("[DEC]")][w("a")] = 10;
  table[w("red")][w("square")] = 10;
  table[w("blue")][w("square")] = 10;
  table[w("square")][w("##s")] = 10;
  table[w("##s")][w(".")] = 10;
  table[w(".")][w("[SEP]")] = 10;
  const colour = [0, 1, 2].map(() => new Array(v).fill(0));
  colour[0][w("red")] = 6;
  colour[2][w("blue")] = 6;
  return {
    vocab: WP_VOCAB,
    special: [0, 1, 2, 3, 4],
    table,
    gate: WP_VOCAB.map((t) => (t === "a" ? 1 : 0)),
    colour,
    tokenizer: "wordpiece",
    // BLIP's eos_token_id (2 here, [CLS]) is not what ends a caption: sep_token_id does.
    config: {
      model_type: "blip",
      text_config: { bos_token_id: 4, eos_token_id: 2, sep_token_id: 3, pad_token_id: 0 },
    },
    size: SIZE,
    masks: true,
    decoder: "merged",
    flat: true,
  };
}

test("greedy decoding reads the colour and remembers the prefix (byte-level BPE, plain decoder, one batch)", async () => {
  const root = await tempDir("cap-bpe-");
  const model = await writeTinyCaptioner(join(root, "vit-gpt2-tiny"), colourSpec());
  const { red, blue } = await pictures(join(root, "pics"));
  const cap = await Captioner.load(model, { worker: false });
  try {
    assert.equal(cap.info.decoderKind, "plain");
    assert.equal(cap.info.kvCache, false);
    const image = cap.info.config.image;
    const out = await cap.caption([await loadProcessedRgb(red, image), await loadProcessedRgb(blue, image)]);
    assert.deepEqual(
      out.map((c) => c.text),
      ["a red square again", "a blue square"],
    );
    assert.deepEqual(out[1].tokens, [b("a"), b("Ġblue"), b("Ġsquare")]);
    assert.ok(out.every((c) => c.finished));
  } finally {
    await cap.release();
  }
});

test("merged decoder: the KV cache (one new token per step, beams re-ordered) gives the plain decoder's captions", async () => {
  const root = await tempDir("cap-kv-");
  const model = await writeTinyCaptioner(join(root, "merged"), { ...colourSpec(), decoder: "merged" });
  const { red, blue } = await pictures(join(root, "pics"));
  for (const numBeams of [1, 3]) {
    const cap = await Captioner.load(model, { worker: false, generation: { numBeams } });
    // Record what the decoder session is fed (the real session, wrapped to look at its inputs).
    const decoder = (
      cap as unknown as {
        decoder: {
          run: (f: Record<string, HostTensor>, o?: readonly string[]) => Promise<Record<string, HostTensor>>;
        };
      }
    ).decoder;
    const run = decoder.run.bind(decoder);
    const fed: string[] = [];
    decoder.run = (f, o) => {
      fed.push(
        `${f.input_ids.shape[1]}/${f["past_key_values.0.key"].shape[2]}/${f.use_cache_branch.data[0]}`,
      );
      return run(f, o);
    };
    try {
      assert.equal(cap.info.decoderKind, "merged");
      assert.equal(cap.info.kvCache, true);
      const image = cap.info.config.image;
      const out = await cap.caption([
        await loadProcessedRgb(red, image),
        await loadProcessedRgb(blue, image),
      ]);
      assert.deepEqual(
        out.map((c) => c.text),
        ["a red square again", "a blue square"],
        `beams ${numBeams}`,
      );
      // Step 1 reads the start token with no cache; every later step one token on top of a growing cache.
      assert.equal(fed[0], "1/0/0");
      assert.deepEqual(fed.slice(1, 4), ["1/1/1", "1/2/1", "1/3/1"]);
    } finally {
      await cap.release();
    }
  }
  const noCache = await Captioner.load(model, { worker: false, useCache: false });
  try {
    assert.equal(noCache.info.kvCache, false);
    const out = await noCache.caption([await loadProcessedRgb(red, noCache.info.config.image)]);
    assert.equal(out[0].text, "a red square again");
  } finally {
    await noCache.release();
  }
});

test("BLIP-style folder: WordPiece ## pieces and cleanup, [DEC]/[SEP] from text_config, merged decoder with masks", async () => {
  const root = await tempDir("cap-blip-");
  const model = await writeTinyCaptioner(join(root, "blip-tiny"), blipSpec());
  const { red, blue } = await pictures(join(root, "pics"));
  const cap = await Captioner.load(model, { worker: false, generation: { numBeams: 3 } });
  try {
    assert.equal(cap.info.decoderKind, "merged");
    assert.deepEqual(cap.info.config.ids, { decoderStart: 4, eos: [3], pad: 0 });
    const image = cap.info.config.image;
    const out = await cap.caption([await loadProcessedRgb(blue, image), await loadProcessedRgb(red, image)]);
    assert.deepEqual(
      out.map((c) => c.text),
      ["a blue squares.", "a red squares."],
    );
  } finally {
    await cap.release();
  }
});

test("beam search finds the more likely sentence that greedy misses", async () => {
  const root = await tempDir("cap-beam-");
  const model = await writeTinyCaptioner(join(root, "beam"), beamSpec());
  const { red } = await pictures(join(root, "pics"));
  const best = mostLikelySentence(5);
  assert.deepEqual(best.tokens, [b("the"), b("Ġsquare")], "the design: 0.4 * 0.9 beats 0.5 * 0.4");
  const greedy = await Captioner.load(model, { worker: false, generation: { numBeams: 1 } });
  const beam = await Captioner.load(model, { worker: false, generation: { numBeams: 2 } });
  try {
    const px = await loadProcessedRgb(red, greedy.info.config.image);
    const [g] = await greedy.caption([px]);
    const [b] = await beam.caption([px]);
    assert.equal(g.text, "a red square");
    // Greedy's score is the sum of its tokens' log-probabilities: 0.5 * 0.4 * 0.99 * 0.99.
    assert.ok(Math.abs(g.score - Math.log(0.5 * 0.4 * 0.99 * 0.99)) < 1e-4, String(g.score));
    assert.equal(b.text, "the square");
    assert.deepEqual(b.tokens, best.tokens);
    // Beam score: sum of log-probs over the 3 new tokens (EOS included), length penalty 1.
    assert.ok(Math.abs(b.score - best.logp / 3) < 1e-4, `${b.score} vs ${best.logp / 3}`);
    // A one-token budget stops both at the length limit, unfinished.
    const short = await Captioner.load(model, {
      worker: false,
      generation: { numBeams: 2, maxNewTokens: 1 },
    });
    try {
      const [s] = await short.caption([px]);
      assert.equal(s.finished, false);
      assert.equal(s.text, "a");
    } finally {
      await short.release();
    }
  } finally {
    await greedy.release();
    await beam.release();
  }
});

test("malformed captioner folders give errors that name the file", async () => {
  const root = await tempDir("cap-bad-");
  const model = await writeTinyCaptioner(join(root, "m"), colourSpec());
  await rm(join(model, "onnx", "decoder_model.onnx"));
  await assert.rejects(Captioner.load(model, { worker: false }), (e: Error) => {
    assert.ok(e instanceof CaptionerModelError);
    assert.match(
      e.message,
      /onnx\/decoder_model\.onnx: not found, nor decoder_model_merged\.onnx \(a captioner folder holds config\.json/,
    );
    return true;
  });
  const noTok = await writeTinyCaptioner(join(root, "n"), colourSpec());
  await rm(join(noTok, "tokenizer.json"));
  await assert.rejects(Captioner.load(noTok, { worker: false }), /n\/tokenizer\.json: not found/);
  // A tagger's model.onnx where the encoder should be: wrong inputs, named with the file.
  const swapped = await writeTinyCaptioner(join(root, "s"), colourSpec());
  const tagger = await writeTinyTagger(join(root, "tagger"), SIZE, 1);
  await copyFile(join(tagger, "model.onnx"), join(swapped, "onnx", "encoder_model.onnx"));
  await assert.rejects(
    Captioner.load(swapped, { worker: false }),
    /s\/onnx\/encoder_model\.onnx: expected one input pixel_values float\[N,3,H,W\], found: input_1:0 float\[1, 8, 8, 3\]/,
  );
  const badCfg = await writeTinyCaptioner(join(root, "c"), colourSpec());
  await writeFile(join(badCfg, "config.json"), JSON.stringify({ model_type: "vision-encoder-decoder" }));
  await assert.rejects(
    Captioner.load(badCfg, { worker: false }),
    /c\/config\.json: no decoder_start_token_id/,
  );
  const badPre = await writeTinyCaptioner(join(root, "p"), colourSpec());
  await writeFile(
    join(badPre, "preprocessor_config.json"),
    JSON.stringify({ size: { height: 4, width: 4 } }),
  );
  await assert.rejects(
    Captioner.load(badPre, { worker: false }),
    /p\/onnx\/encoder_model\.onnx: pixel_values is \[batch_size, 3, 8, 8\] but preprocessor_config\.json gives 3x4x4/,
  );
});
