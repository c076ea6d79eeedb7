import assert from "node:assert/strict";
import { test } from "node:test";
import sharp from "sharp";
import { demoScene, renderPng } from "../src/demo/dataset.ts";
import { PAPER } from "../src/demo/scenes.ts";
import { meanStats, scorePrompts, styleDistance, styleStats, styleVerdict } from "../src/demo/style-score.ts";

const paperRgb = [1, 3, 5].map((i) => Number.parseInt(PAPER.slice(i, i + 2), 16));

function fill(n: number, pick: (i: number) => number[]): Uint8Array {
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) out.set(pick(i), 3 * i);
  return out;
}

async function rgbOf(kind: "generic" | "inkwash", seed: number, index: number): Promise<Uint8Array> {
  const raw = await sharp(await renderPng(demoScene(kind, seed, index).svg))
    .raw()
    .toBuffer();
  return new Uint8Array(raw);
}

test("statistics of hand-made pictures: plain paper, half ink, pure red", () => {
  const n = 64 * 64;
  const paper = styleStats(fill(n, () => paperRgb));
  const lum = (0.299 * paperRgb[0] + 0.587 * paperRgb[1] + 0.114 * paperRgb[2]) / 255;
  assert.equal(paper.paper, 1);
  assert.equal(paper.ink, 0);
  assert.ok(Math.abs(paper.saturation - (paperRgb[0] - paperRgb[2]) / paperRgb[0]) < 1e-9);
  assert.ok(Math.abs(paper.background - lum) < 1e-9 && Math.abs(paper.stroke - lum) < 1e-9);

  const half = styleStats(fill(n, (i) => (i < n / 2 ? [20, 20, 20] : paperRgb)));
  assert.equal(half.paper, 0.5);
  assert.equal(half.ink, 0.5);
  assert.ok(Math.abs(half.stroke - 20 / 255) < 1e-9, `stroke ${half.stroke}`);
  assert.ok(Math.abs(half.background - lum) < 1e-9);

  const red = styleStats(fill(n, () => [255, 0, 0]));
  assert.equal(red.paper, 0);
  assert.equal(red.saturation, 1);
  // Distances add the absolute differences of the five statistics (pure red is darker than 40%: all ink).
  const expected = 1 + 1 + Math.abs(1 - paper.saturation) + 2 * Math.abs(0.299 - paper.background);
  assert.ok(Math.abs(styleDistance(red, paper) - expected) < 1e-9);
  assert.equal(styleDistance(paper, paper), 0);
});

test("unseen ink-wash pictures score close to the demo set, generic pictures far from it", async () => {
  const training: { caption: string; rgb: Uint8Array }[] = [];
  for (let i = 0; i < 24; i++)
    training.push({ caption: demoScene("inkwash", 7, i).caption, rgb: await rgbOf("inkwash", 7, i) });
  const reference = meanStats(training.map((t) => styleStats(t.rgb)));
  let inkSum = 0;
  let genericSum = 0;
  for (let i = 0; i < 6; i++) {
    const d = styleDistance(styleStats(await rgbOf("inkwash", 99, i)), reference);
    assert.ok(d < 0.7, `held-out ink-wash picture ${i}: distance ${d}`);
    inkSum += d;
    genericSum += styleDistance(styleStats(await rgbOf("generic", 99, i)), reference);
  }
  assert.ok(genericSum > 3 * inkSum, `generic ${genericSum / 6} vs ink-wash ${inkSum / 6} on average`);
  // Per prompt, the reference is the training pictures with that caption; a prompt no picture has uses all.
  const prompt = training[0].caption;
  const inkwash = await rgbOf("inkwash", 99, 0);
  const generic = await rgbOf("generic", 99, 0);
  const [same, other] = scorePrompts(
    [prompt, "a red circle"],
    [generic, generic],
    [inkwash, inkwash],
    training,
  );
  assert.equal(same.references, training.filter((t) => t.caption === prompt).length);
  assert.equal(other.references, training.length);
  assert.ok(same.after < same.before, JSON.stringify(same));
});

test("the verdict judges only the trigger-word prompts, and every one of them must come out closer", () => {
  const score = (prompt: string, before: number, after: number) => ({ prompt, references: 1, before, after });
  const good = styleVerdict(
    [
      score("inkwash style, bamboo", 1.2, 0.7),
      score("inkwash style, mountains", 1.4, 0.7),
      score("a red circle", 2, 3),
    ],
    "inkwash",
  );
  assert.equal(good.improved, true);
  assert.deepEqual(good.notCloser, []);
  assert.ok(Math.abs(good.meanBefore - 1.3) < 1e-9 && Math.abs(good.meanAfter - 0.7) < 1e-9);
  assert.match(good.line, /moved all 2 "inkwash" prompts closer/);
  const bad = styleVerdict(
    [score("inkwash style, bamboo", 1.2, 1.2), score("inkwash style, mountains", 1.4, 0.7)],
    "inkwash",
  );
  assert.equal(bad.improved, false);
  assert.deepEqual(bad.notCloser, ["inkwash style, bamboo"]);
  assert.match(bad.line, /NOT CONVINCING: 1 of 2/);
  assert.throws(() => styleVerdict([score("a red circle", 2, 1)], "inkwash"));
});
