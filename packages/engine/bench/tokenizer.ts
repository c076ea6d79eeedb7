// Tokenizer throughput on 1,000 varied prompts (deterministic): without the BPE merge cache, on a first pass
// that fills it, and with it warm; plus A1111 chunking and the emphasis rescale on a [77, 768] output.
//   npx tsx packages/engine/bench/tokenizer.ts
import { fileURLToPath } from "node:url";
import { applyEmphasis, tokenizePromptChunks } from "../src/tokenizer/chunking.ts";
import { ClipTokenizer } from "../src/tokenizer/clip-bpe.ts";

const tokenizerDir = fileURLToPath(new URL("../../../../shared/fixtures/clip-tokenizer", import.meta.url));

const subjects = [
  "a cat",
  "an astronaut",
  "a medieval knight",
  "a cyberpunk street",
  "a bowl of ramen",
  "an old lighthouse",
  "a red fox",
  "a portrait of a woman",
  "a steampunk airship",
  "a koi pond",
];
const styles = [
  "oil painting",
  "watercolor",
  "35mm photo",
  "studio ghibli style",
  "unreal engine 5",
  "ukiyo-e",
  "pencil sketch",
  "octane render",
  "film noir",
  "pixel art",
];
const modifiers = [
  "highly detailed",
  "8k",
  "bokeh",
  "volumetric lighting",
  "golden hour",
  "trending on artstation",
  "sharp focus",
  "dramatic shadows",
  "intricate",
  "soft light",
  "by greg rutkowski",
  "masterpiece",
  "best quality",
  "ultra-detailed",
  "f/1.8",
  "Café Zürich",
  "東京の夜",
  "🦊✨",
  "it's raining",
  "don’t panic",
];

/** Small deterministic PRNG (LCG) so every run measures the same prompts. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function makePrompts(n: number): string[] {
  const r = rng(1234);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  return Array.from({ length: n }, (_, i) => {
    const parts = [pick(subjects), pick(styles)];
    const extra = 2 + Math.floor(r() * (i % 10 === 0 ? 40 : 10)); // every 10th prompt is long (> 75 tokens)
    for (let k = 0; k < extra; k++) {
      let m = pick(modifiers);
      const roll = r();
      if (roll < 0.15) m = `(${m}:${(0.5 + r()).toFixed(2)})`;
      else if (roll < 0.25) m = `[${m}]`;
      else if (roll < 0.3) m = `${m}${Math.floor(r() * 100000)}`; // unseen words defeat the cache
      parts.push(m);
    }
    return parts.join(", ");
  });
}

function time(fn: () => number, repeats = 3): { ms: number; count: number } {
  let best = Number.POSITIVE_INFINITY;
  let count = 0;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    count = fn();
    best = Math.min(best, performance.now() - t0);
  }
  return { ms: best, count };
}

const prompts = makePrompts(1000);
const t0 = performance.now();
const cached = await ClipTokenizer.fromDirectory(tokenizerDir);
const loadMs = performance.now() - t0;
const uncached = await ClipTokenizer.fromDirectory(tokenizerDir, { cacheLimit: 0 });

const encodeAll = (tok: ClipTokenizer) => prompts.reduce((n, p) => n + tok.encodeText(p).length, 0);
const noCache = time(() => encodeAll(uncached));
const firstPass = time(() => {
  cached.clearCache();
  return encodeAll(cached);
});
const warm = time(() => encodeAll(cached));
const chunking = time(() => prompts.reduce((n, p) => n + tokenizePromptChunks(cached, p).chunks.length, 0));

const dim = 768;
const z = Float32Array.from({ length: 77 * dim }, (_, i) => Math.sin(i));
const weights = Array.from({ length: 77 }, (_, i) => (i % 7 === 0 ? 1.21 : 1));
const emphasis = time(() => {
  for (let i = 0; i < 200; i++) applyEmphasis(z, weights, { dim });
  return 200;
});

const rate = (r: { ms: number; count: number }) =>
  Math.round(r.count / (r.ms / 1000)).toLocaleString("en-US");
console.log(
  `prompts: ${prompts.length}, tokens: ${noCache.count} (mean ${(noCache.count / prompts.length).toFixed(1)}/prompt)`,
);
console.log(`load vocab.json + merges.txt:          ${loadMs.toFixed(0)} ms`);
console.log(`encode, merge cache off:               ${noCache.ms.toFixed(1)} ms  ${rate(noCache)} tokens/s`);
console.log(
  `encode, first pass (cache filling):    ${firstPass.ms.toFixed(1)} ms  ${rate(firstPass)} tokens/s`,
);
console.log(`encode, warm merge cache:              ${warm.ms.toFixed(1)} ms  ${rate(warm)} tokens/s`);
console.log(
  `A1111 parse + chunk (warm cache):      ${chunking.ms.toFixed(1)} ms  ${chunking.count} chunks, ${(prompts.length / (chunking.ms / 1000)).toFixed(0)} prompts/s`,
);
console.log(
  `applyEmphasis [77, 768] original:      ${((emphasis.ms / emphasis.count) * 1000).toFixed(1)} µs/call`,
);
