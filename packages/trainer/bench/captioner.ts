/**
 * Captioner costs that do not depend on a downloaded model (`npx tsx packages/trainer/bench/captioner.ts`):
 *
 * 1. the decoding loop's own work per step at GPT-2's vocabulary size (50,257): log-softmax, the logits
 *    processors and top-k over every beam, with a constant logits function standing in for the decoder — this
 *    is what beam search adds on top of the model's own time;
 * 2. the tiny test captioner end to end (encoder + decoder sessions, greedy, 3 tokens) in-process and through
 *    the worker thread — the fixed per-batch overhead of running sessions off the main thread.
 */
import { join } from "node:path";
import { Captioner } from "../src/autolabel/captioner.ts";
import { DEFAULT_GENERATION, generate } from "../src/autolabel/generate.ts";
import { loadProcessedRgb } from "../src/autolabel/preprocess.ts";
import { solidPng, tempDir } from "../test/autolabel.helpers.ts";
import { writeTinyCaptioner } from "../test/autolabel-captioner.helpers.ts";

const VOCAB = 50257;

async function decodeLoop(numBeams: number, pictures: number): Promise<void> {
  // Slowly varying logits so that beams keep competing; EOS (50256) is never best: full length.
  const base = Float32Array.from({ length: VOCAB }, (_, i) => Math.sin(i * 0.37) * 3);
  const steps = 19;
  let calls = 0;
  const t0 = performance.now();
  await generate(
    pictures,
    { decoderStart: VOCAB - 1, eos: [VOCAB - 1] },
    { ...DEFAULT_GENERATION, numBeams, maxNewTokens: steps, noRepeatNgramSize: 3, repetitionPenalty: 1.2 },
    async (rows) => {
      calls++;
      return rows.map((r) => {
        const out = base.slice();
        out[VOCAB - 1] = -10;
        out[r.ids[r.ids.length - 1] % VOCAB] -= 1;
        return out;
      });
    },
  );
  const ms = performance.now() - t0;
  console.log(
    `decode loop, vocab ${VOCAB}, ${pictures} picture(s), beams ${numBeams}: ${(ms / calls).toFixed(2)} ms per step, ${(ms / pictures).toFixed(0)} ms per picture (${steps} tokens)`,
  );
}

async function tinyEndToEnd(worker: boolean): Promise<void> {
  const root = await tempDir("cap-bench-");
  const v = 4;
  const table = [
    [0, 9, 0, 0],
    [0, 0, 9, 0],
    [0, 0, 0, 9],
    [9, 0, 0, 0],
  ];
  const model = await writeTinyCaptioner(join(root, "m"), {
    vocab: ["<|endoftext|>", "a", "Ġred", "Ġsquare"],
    special: [0],
    table,
    gate: new Array(v).fill(0),
    colour: [0, 1, 2].map(() => new Array(v).fill(0)),
    tokenizer: "bpe",
    config: { decoder_start_token_id: 0, eos_token_id: 0, pad_token_id: 0 },
    size: 224,
  });
  const png = join(root, "p.png");
  await solidPng(png, 512, 384, [200, 30, 40]);
  const t0 = performance.now();
  const cap = await Captioner.load(model, { worker });
  const loadMs = performance.now() - t0;
  const px = await loadProcessedRgb(png, cap.info.config.image);
  const n = 20;
  const t1 = performance.now();
  for (let i = 0; i < n; i++) await cap.caption([px]);
  const perPicture = (performance.now() - t1) / n;
  await cap.release();
  console.log(
    `tiny captioner 224px, greedy 3 tokens, ${worker ? "worker thread" : "in-process"}: load ${loadMs.toFixed(0)} ms, ${perPicture.toFixed(2)} ms per picture (4 session runs)`,
  );
}

const t = performance.now();
await decodeLoop(1, 4);
await decodeLoop(4, 4);
await tinyEndToEnd(false);
await tinyEndToEnd(true);
const png = join(await tempDir("cap-bench-pre-"), "big.png");
await solidPng(png, 3000, 2000, [10, 120, 200]);
const t2 = performance.now();
for (let i = 0; i < 5; i++)
  await loadProcessedRgb(png, {
    mode: "fill",
    width: 384,
    height: 384,
    kernel: "cubic",
    rescale: 1 / 255,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
  });
console.log(
  `preprocess a 3000x2000 PNG to 384x384 (bicubic): ${((performance.now() - t2) / 5).toFixed(0)} ms`,
);
console.log(`total ${((performance.now() - t) / 1000).toFixed(1)} s`);
