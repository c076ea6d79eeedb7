import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { formatDims, OnnxSignatureError, readOnnxSignature } from "../src/autolabel/onnx-signature.ts";
import { loadSquareRgb, packBatch } from "../src/autolabel/preprocess.ts";
import { TaggerModelError, WdTagger } from "../src/autolabel/tagger.ts";
import {
  composeCaption,
  DEFAULT_TAG_OPTIONS,
  formatTag,
  isKaomoji,
  readSelectedTags,
  selectTags,
  type TagSelectOptions,
} from "../src/autolabel/tags.ts";
import { ImageLoadError } from "../src/dataset/image.ts";
import { expectedScores, solidPng, TINY_TAGS, tempDir, writeTinyTagger } from "./autolabel.helpers.ts";

const SIZE = 32;

function assertScores(actual: Float32Array, want: number[], label: string): void {
  assert.equal(actual.length, want.length, label);
  for (let j = 0; j < want.length; j++) {
    assert.ok(Math.abs(actual[j] - want[j]) < 2e-3, `${label}, tag ${j}: ${actual[j]} vs ${want[j]}`);
  }
}

test("the ONNX signature reader sees names, types and fixed or symbolic dims", async () => {
  const dir = await tempDir("al-sig-");
  await writeTinyTagger(join(dir, "fixed"), SIZE, 3);
  await writeTinyTagger(join(dir, "dyn"), SIZE, "dynamic");
  const fixed = await readOnnxSignature(join(dir, "fixed", "model.onnx"));
  assert.deepEqual(
    fixed.inputs.map((v) => `${v.name} ${v.elemType}${formatDims(v.dims)}`),
    ["input_1:0 float[3, 32, 32, 3]"],
  );
  assert.deepEqual(
    fixed.outputs.map((v) => `${v.name} ${v.elemType}${formatDims(v.dims)}`),
    [`predictions_sigmoid float[3, ${TINY_TAGS.length}]`],
  );
  const dyn = await readOnnxSignature(join(dir, "dyn", "model.onnx"));
  assert.deepEqual(dyn.inputs[0].dims[0], { param: "N" });
  assert.deepEqual(dyn.outputs[0].dims[0], { param: "N" });
  await writeFile(join(dir, "junk.onnx"), Buffer.from([0x0a, 0xff, 0xff, 0xff]));
  await assert.rejects(readOnnxSignature(join(dir, "junk.onnx")), OnnxSignatureError);
  await assert.rejects(readOnnxSignature(join(dir, "missing.onnx")), /missing\.onnx: cannot open/);
});

test("preprocessing pads to a white square and feeds BGR 0-255", async () => {
  const dir = await tempDir("al-pre-");
  const wide = join(dir, "wide.png");
  await solidPng(wide, 64, 32, [200, 10, 30]); // 2:1 -> 32x16 picture, 8 white rows above and below
  const rgb = await loadSquareRgb(wide, SIZE);
  const at = (x: number, y: number) => Array.from(rgb.subarray((y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3));
  assert.deepEqual(at(5, 0), [255, 255, 255]);
  assert.deepEqual(at(5, 7), [255, 255, 255]);
  assert.deepEqual(at(5, 8), [200, 10, 30]);
  assert.deepEqual(at(31, 23), [200, 10, 30]);
  assert.deepEqual(at(0, 24), [255, 255, 255]);
  const nhwc = packBatch([rgb], SIZE, 2, "NHWC", "bgr");
  assert.equal(nhwc.length, 2 * SIZE * SIZE * 3);
  const p = (8 * SIZE + 3) * 3;
  assert.deepEqual(Array.from(nhwc.subarray(p, p + 3)), [30, 10, 200]);
  assert.ok(
    nhwc.subarray(SIZE * SIZE * 3).every((v) => v === 0),
    "the padding slot of the batch stays zero",
  );
  const nchw = packBatch([rgb], SIZE, 1, "NCHW", "rgb");
  assert.deepEqual(
    [nchw[8 * SIZE + 3], nchw[SIZE * SIZE + 8 * SIZE + 3], nchw[2 * SIZE * SIZE + 8 * SIZE + 3]],
    [200, 10, 30],
  );
  // Transparent pixels become white, like the WebUI galleries show them.
  const clear = join(dir, "clear.png");
  await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .png()
    .toFile(clear);
  assert.ok((await loadSquareRgb(clear, 8)).every((v) => v === 255));
  await writeFile(join(dir, "broken.png"), Buffer.from("not a png"));
  await assert.rejects(loadSquareRgb(join(dir, "broken.png"), 8), ImageLoadError);
});

test("tagger scores equal the closed form for fixed, padded and free batch sizes", async () => {
  const dir = await tempDir("al-tagger-");
  const red = join(dir, "red.png");
  const blue = join(dir, "blue.png");
  const wideRed = join(dir, "wide-red.png");
  await solidPng(red, 40, 40, [255, 0, 0]);
  await solidPng(blue, 24, 24, [0, 0, 255]);
  await solidPng(wideRed, 64, 32, [255, 0, 0]);
  const pictures = [red, blue, wideRed, blue, red];
  // wide-red is half white after padding: mean (255, 127.5, 127.5).
  const means: [number, number, number][] = [
    [255, 0, 0],
    [0, 0, 255],
    [255, 127.5, 127.5],
    [0, 0, 255],
    [255, 0, 0],
  ];
  const rgb = await Promise.all(pictures.map((p) => loadSquareRgb(p, SIZE)));
  for (const batch of [1, 3, "dynamic"] as const) {
    const tagger = await WdTagger.load(await writeTinyTagger(join(dir, `m-${batch}`), SIZE, batch), {
      batchSize: 2,
    });
    try {
      const { info } = tagger;
      assert.equal(info.layout, "NHWC");
      assert.equal(info.size, SIZE);
      assert.equal(info.batch, batch === "dynamic" ? 2 : batch);
      assert.equal(info.batchFixed, batch !== "dynamic");
      const scores: Float32Array[] = [];
      for (let i = 0; i < rgb.length; i += info.batch)
        scores.push(...(await tagger.predict(rgb.slice(i, i + info.batch))));
      assert.equal(scores.length, pictures.length);
      scores.forEach((s, n) => {
        const want = expectedScores(means[n]);
        assertScores(s, want, `batch ${batch}, picture ${n}`);
      });
      assert.equal(tagger.appliesSigmoid, false);
    } finally {
      await tagger.release();
    }
  }
});

test("a model that ends in logits gets its sigmoid here (auto), or as told", async () => {
  const dir = await tempDir("al-logits-");
  const blue = join(dir, "blue.png");
  await solidPng(blue, 16, 16, [0, 0, 255]);
  const model = await writeTinyTagger(join(dir, "m"), SIZE, 1, { logits: true });
  const px = await loadSquareRgb(blue, SIZE);
  const want = expectedScores([0, 0, 255]);
  const auto = await WdTagger.load(model);
  const raw = await WdTagger.load(model, { probabilities: "model" });
  try {
    const [p] = await auto.predict([px]);
    assert.equal(auto.appliesSigmoid, true);
    assertScores(p, want, "logits model");
    const [l] = await raw.predict([px]);
    assert.ok(Math.abs(l[3] - Math.log(want[3] / (1 - want[3]))) < 1e-2, `raw logit ${l[3]}`);
  } finally {
    await auto.release();
    await raw.release();
  }
});

test("a tag list that does not match the model is refused with both counts", async () => {
  const dir = await writeTinyTagger(await tempDir("al-mismatch-"), SIZE, 1);
  await writeFile(join(dir, "selected_tags.csv"), "tag_id,name,category,count\n1,a,0,1\n");
  await assert.rejects(
    WdTagger.load(dir),
    (e: Error) => e instanceof TaggerModelError && /9 tags.*lists 1/.test(e.message),
  );
  await assert.rejects(WdTagger.load(join(dir, "nope")), /model\.onnx: not found/);
});

test("tag choice: thresholds, rating, characters, max tags and exclusions", async () => {
  const dir = await writeTinyTagger(await tempDir("al-select-"), SIZE, 1);
  const tags = await readSelectedTags(join(dir, "selected_tags.csv"));
  assert.deepEqual(
    tags.map((t) => t.category),
    ["rating", "rating", "general", "general", "character", "general", "general", "general", "character"],
  );
  const blue = expectedScores([0, 0, 255]);
  const pick = (o: Partial<TagSelectOptions>) =>
    selectTags(blue, tags, { ...DEFAULT_TAG_OPTIONS, ...o }).map((t) => t.text);
  // Blue: blue_background ~1, the blue-keyed character ~0.98; constant tags 0.6, 0.5, 0.4; weak character 0.7.
  assert.deepEqual(pick({}), [
    "hatsune miku \\(cosplay\\)",
    "blue background",
    "long hair",
    "^_^",
    "simple background",
  ]);
  assert.deepEqual(pick({ generalThreshold: 0.45 }), [
    "hatsune miku \\(cosplay\\)",
    "blue background",
    "long hair",
    "^_^",
  ]);
  assert.deepEqual(pick({ characterThreshold: 0.65, maxTags: 3 }), [
    "hatsune miku \\(cosplay\\)",
    "weak character \\(series\\)",
    "blue background",
  ]);
  assert.deepEqual(pick({ includeRating: true, maxTags: 2 }), ["general", "hatsune miku \\(cosplay\\)"]);
  assert.deepEqual(pick({ exclude: ["Long_Hair", "hatsune miku \\(cosplay\\)"], generalThreshold: 0.55 }), [
    "blue background",
  ]);
  assert.deepEqual(pick({ replaceUnderscores: false, escapeParentheses: false, generalThreshold: 0.9 }), [
    "hatsune_miku_(cosplay)",
    "blue_background",
  ]);
  const red = selectTags(expectedScores([255, 0, 0]), tags, DEFAULT_TAG_OPTIONS).map((t) => t.name);
  assert.deepEqual(red, ["red_background", "long_hair", "^_^", "simple_background"]);
});

test("tag formatting keeps kaomoji and escapes parentheses once", () => {
  for (const k of ["^_^", "o_o", "(o)_(o)", "||_||", "6_9", "<o>_<o>", "+_-"]) assert.ok(isKaomoji(k), k);
  for (const t of ["long_hair", "x_hair_ornament", "hatsune_miku_(cosplay)"]) assert.ok(!isKaomoji(t), t);
  const on = { replaceUnderscores: true, escapeParentheses: true };
  assert.equal(formatTag("^_^", on), "^_^");
  assert.equal(formatTag("(o)_(o)", on), "\\(o\\)_\\(o\\)");
  assert.equal(formatTag("yorha_no._2_type_b", on), "yorha no. 2 type b");
  assert.equal(formatTag("already_\\(escaped\\)", on), "already \\(escaped\\)");
  assert.equal(
    composeCaption(["blue background", "mystyle", "long hair"], ["mystyle", "ink wash"], ["Long_Hair"]),
    "mystyle, ink wash, blue background, Long_Hair",
  );
});
