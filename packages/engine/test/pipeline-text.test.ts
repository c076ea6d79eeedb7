/**
 * The text side of the pipeline: WebUI infotext formatting (hand-written expected strings in A1111's format),
 * kohya sample-prompt files (kohya's documented example, clamping, sampler names, errors with line numbers),
 * PNG text chunks (Latin-1 tEXt vs UTF-8 iTXt) and the sample grid's layout and pixels.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import sharp from "sharp";
import { composeGrid, wrapCaption } from "../src/pipeline/grid.ts";
import { createInfotext, quoteInfotextValue } from "../src/pipeline/infotext.ts";
import { encodePng, toRgb8 } from "../src/pipeline/png.ts";
import { parseSamplePrompts, SamplePromptError } from "../src/pipeline/sample-prompts.ts";

test("infotext: A1111 layout, quoting of values with , : or newline, omitted empty fields", () => {
  const text = createInfotext({
    prompt: "<lora:ink:0.7>, a warrior in the rain",
    negative: "blurry, lowres",
    steps: 20,
    sampler: "Euler a",
    cfg: 7,
    seed: 1,
    width: 512,
    height: 768,
    modelHash: "6ce0161689",
    modelName: "v1-5-pruned-emaonly",
    loraHashes: [
      { name: "ink", hash: "0123456789ab" },
      { name: "no:hash,file", hash: null },
      { name: "fa:ce,2", hash: "ba9876543210" },
    ],
  });
  assert.equal(
    text,
    "<lora:ink:0.7>, a warrior in the rain\nNegative prompt: blurry, lowres\n" +
      'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "ink: 0123456789ab, face2: ba9876543210"',
  );
  const bare = createInfotext({
    prompt: "cat",
    steps: 4,
    sampler: "DDIM",
    cfg: 7.5,
    seed: 3,
    width: 64,
    height: 64,
    clipSkip: 2,
  });
  assert.equal(bare, "cat\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 3, Size: 64x64, Clip skip: 2");
  assert.equal(quoteInfotextValue('say "hi", ok'), '"say \\"hi\\", ok"');
  assert.equal(quoteInfotextValue("plain"), "plain");
});

test("kohya sample prompts: documented example, comments, clamping, samplers, errors", () => {
  const file = [
    "# prompt 1",
    "masterpiece, best quality, 1girl, in white shirts, upper body, looking at viewer, simple background --n low quality, worst quality, bad anatomy,bad composition, poor, low effort --w 768 --h 768 --d 1 --l 7.5 --s 28",
    "",
    "   # indented comment",
    "masterpiece, 1boy --n low quality --w 576 --h 832 --d 2 --l 5.5 --s 40 --ss euler_a\r",
    "a cat --s 5000 --ss k_euler --unknown 3 --L 3",
    "a dog --ss DPM++ 2M Karras --s 0",
  ].join("\n");
  const p = parseSamplePrompts(file, "prompts.txt");
  assert.equal(p.length, 4);
  assert.deepEqual(p[0], {
    line: 2,
    prompt:
      "masterpiece, best quality, 1girl, in white shirts, upper body, looking at viewer, simple background",
    negative: "low quality, worst quality, bad anatomy,bad composition, poor, low effort",
    width: 768,
    height: 768,
    seed: 1,
    cfg: 7.5,
    steps: 28,
  });
  assert.deepEqual(p[1], {
    line: 5,
    prompt: "masterpiece, 1boy",
    negative: "low quality",
    width: 576,
    height: 832,
    seed: 2,
    cfg: 5.5,
    steps: 40,
    sampler: "Euler a",
  });
  assert.deepEqual(p[2], { line: 6, prompt: "a cat", steps: 1000, sampler: "Euler", cfg: 3 });
  assert.deepEqual(p[3], { line: 7, prompt: "a dog", sampler: "DPM++ 2M Karras", steps: 1 });
  assert.throws(
    () => parseSamplePrompts("ok\nx --ss heun", "p.txt"),
    (e: unknown) =>
      e instanceof SamplePromptError && e.line === 2 && /p\.txt:2: sampler "heun"/.test(e.message),
  );
});

test("PNG text chunks: Latin-1 text as tEXt, other text as iTXt (UTF-8); pixels truncated like the WebUI", async () => {
  const rgb = toRgb8(Float32Array.from([0, 0.5, 1, 1.2, -0.1, 0.999]), 0, 2, 1);
  assert.deepEqual([...rgb], [0, 127, 255, 255, 0, 254]);
  const png = await encodePng(rgb, 2, 1, { parameters: "café, Steps: 1", comment: "日本 ✓" });
  const types: string[] = [];
  for (let at = 8; at < png.length; at += 12 + png.readUInt32BE(at))
    types.push(png.toString("latin1", at + 4, at + 8));
  assert.deepEqual(types.slice(0, 3), ["IHDR", "tEXt", "iTXt"]);
  const iTXt = png.indexOf("iTXt");
  assert.ok(png.subarray(iTXt).includes(Buffer.from("日本 ✓", "utf8")));
  const tEXt = png.indexOf("tEXt");
  assert.ok(png.subarray(tEXt).includes(Buffer.from("parameters\0café, Steps: 1", "latin1")));
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data], [...rgb]);
});

test("grid: layout, cell pixels, captions drawn below their image", async () => {
  const solid = (r: number, g: number, b: number) => {
    const px = new Uint8Array(16 * 16 * 3);
    for (let i = 0; i < px.length; i += 3) px.set([r, g, b], i);
    return { rgb: px, width: 16, height: 16 };
  };
  const png = await composeGrid(
    [
      { ...solid(255, 0, 0), caption: "a red square with a long caption that wraps" },
      { ...solid(0, 255, 0), caption: "green" },
      solid(0, 0, 255),
    ],
    { columns: 2, gap: 4, fontSize: 12, captionLines: 3 },
  );
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  // gap 4; caption band 3 lines x ceil(12 * 1.3) + 4 = 52 px; two columns of 16, two rows of 16 + 52.
  assert.deepEqual([info.width, info.height], [44, 148]);
  const at = (x: number, y: number) => [
    ...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3),
  ];
  assert.deepEqual(at(4, 4), [255, 0, 0]);
  assert.deepEqual(at(19, 19), [255, 0, 0]);
  assert.deepEqual(at(24, 4), [0, 255, 0]);
  assert.deepEqual(at(4, 76), [0, 0, 255]);
  assert.deepEqual(at(30, 80), [255, 255, 255]);
  let ink = 0;
  for (let y = 22; y < 72; y++) for (let x = 4; x < 20; x++) if (at(x, y)[0] < 128) ink++;
  assert.ok(ink > 5, "caption of the first cell was not drawn");
  assert.deepEqual(wrapCaption("aa bb cc dd", 5, 2), ["aa bb", "cc dd"]);
  assert.deepEqual(wrapCaption("aa bb cc dd ee", 5, 2), ["aa bb", "cc..."]);
});
