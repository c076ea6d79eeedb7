import assert from "node:assert/strict";
import { mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { processCaption, tagFrequency } from "../src/dataset/captions.ts";
import { loadBucketed, loadRgb, probeImage, toTensorCHW } from "../src/dataset/image.ts";
import { DatasetError, planDataset } from "../src/dataset/plan.ts";
import { Rng } from "../src/dataset/rng.ts";

const solidRgb = (w: number, h: number, rgb: [number, number, number]) =>
  sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });

/** Left half red, right half blue: shows orientation and flips. */
async function halves(w: number, h: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) px.set(x < w / 2 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
  return sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

/** A JPEG with enough entropy that cutting it in half loses scan data. */
async function blocksJpeg(): Promise<Buffer> {
  const px = Buffer.alloc(128 * 128 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 2654435761) >>> 24;
  return sharp(px, { raw: { width: 128, height: 128, channels: 3 } })
    .jpeg()
    .toBuffer();
}

async function buildDataset(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "ds-"));
  const style = join(dir, "10_inkwash");
  const other = join(dir, "5_other");
  await mkdir(style);
  await mkdir(other);
  await mkdir(join(dir, "unrelated"));
  // A linked picture folder is followed like a real one.
  const linked = await mkdtemp(join(tmpdir(), "ds-linked-"));
  await solidRgb(64, 64, [50, 50, 50]).png().toFile(join(linked, "l.png"));
  await symlink(linked, join(dir, "2_linked"));
  await solidRgb(96, 64, [10, 200, 30]).png().toFile(join(style, "a.png"));
  await writeFile(join(style, "a.txt"), "\uFEFFinkwash, mountain, mist\n");
  // CMYK JPEG of pure red-ish colour.
  await solidRgb(64, 64, [220, 20, 20])
    .toColourspace("cmyk")
    .jpeg({ quality: 95 })
    .toFile(join(style, "cmyk.jpg"));
  await writeFile(join(style, "cmyk.txt"), "inkwash, red");
  // 40 wide x 20 high stored, EXIF orientation 6 (rotate 90 CW to display) -> displayed 20 x 40.
  await sharp(await halves(40, 20))
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toFile(join(style, "rot.jpg"));
  await writeFile(join(style, "rot.caption"), "wrong extension");
  // Grey + alpha PNG: left half transparent, right half opaque grey 100.
  const ga = Buffer.alloc(32 * 32 * 2);
  for (let i = 0; i < 32 * 32; i++) ga.set(i % 32 < 16 ? [0, 0] : [100, 255], i * 2);
  await sharp(ga, { raw: { width: 32, height: 32, channels: 2 } })
    .png()
    .toFile(join(style, "grey.png"));
  await writeFile(join(style, "corrupt.png"), Buffer.from("\x89PNG\r\n\x1a\nthis is not really a png"));
  const jpeg = await blocksJpeg();
  await writeFile(join(style, "truncated.jpg"), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  await solidRgb(64, 128, [0, 0, 0]).webp().toFile(join(other, "b.webp"));
  await writeFile(
    join(dir, "metadata.csv"),
    '\uFEFFfilename,prompt\r\n5_other/b.webp,"tall, ""black"" picture"\r\nmissing.png,nothing\r\n',
  );
  return dir;
}

const baseConfig = (dir: string) => ({
  train_data_dir: dir,
  metadata_path: undefined,
  caption_extension: ".txt",
  missing_caption: "warn" as const,
  repeats: 1,
  resolution: [64, 64] as [number, number],
  enable_bucket: true,
  min_bucket_reso: 64,
  max_bucket_reso: 256,
  bucket_reso_steps: 64,
  bucket_no_upscale: false,
  batch_size: 1,
  gradient_accumulation_steps: 1,
  epochs: 1,
  max_train_steps: undefined,
});

test("dataset edge cases: corrupt, CMYK, EXIF rotation, grey+alpha, repeat folders, CSV and sidecars", async () => {
  const dir = await buildDataset();
  const plan = await planDataset(baseConfig(dir));
  const byName = new Map(plan.images.map((im) => [im.relPath, im]));
  assert.deepEqual([...byName.keys()].sort(), [
    "10_inkwash/a.png",
    "10_inkwash/cmyk.jpg",
    "10_inkwash/grey.png",
    "10_inkwash/rot.jpg",
    "2_linked/l.png",
    "5_other/b.webp",
  ]);

  const corrupt = plan.skipped.find((s) => s.path.endsWith("corrupt.png"));
  assert.ok(corrupt, "the corrupt file is listed as skipped");
  assert.ok(corrupt.reason.length > 0);
  const truncated = plan.skipped.find((s) => s.path.endsWith("truncated.jpg"));
  assert.ok(truncated, "a truncated JPEG is caught at planning time");
  assert.match(truncated.reason, /premature end|truncat/i);
  assert.ok(plan.skipped.some((s) => s.path.endsWith("unrelated") && /N_name/.test(s.reason)));

  assert.equal(byName.get("10_inkwash/a.png")!.repeats, 10);
  assert.equal(byName.get("5_other/b.webp")!.repeats, 5);
  assert.deepEqual(
    plan.subsets.map((s) => [s.name, s.repeats, s.imageCount]),
    [
      ["10_inkwash", 10, 4],
      ["2_linked", 2, 1],
      ["5_other", 5, 1],
    ],
  );
  assert.equal(plan.samplesPerEpoch, 47);

  // Captions: sidecar with BOM stripped, CSV with quotes, and a report of what is missing.
  assert.equal(byName.get("10_inkwash/a.png")!.caption, "inkwash, mountain, mist");
  assert.equal(byName.get("10_inkwash/a.png")!.captionSource, "sidecar");
  assert.equal(byName.get("5_other/b.webp")!.caption, 'tall, "black" picture');
  assert.equal(byName.get("5_other/b.webp")!.captionSource, "metadata.csv");
  assert.equal(plan.captions.fromCsv, 1);
  assert.equal(plan.captions.fromSidecar, 2);
  assert.equal(plan.captions.missing.length, 3);
  assert.deepEqual(plan.captions.unmatchedCsvRows, ["missing.png"]);
  assert.deepEqual(plan.captions.otherSidecarExtensions, [".caption"]);
  assert.ok(plan.warnings.some((w) => /3 image\(s\) have no caption/.test(w) && /\.caption/.test(w)));

  // EXIF orientation 6: the displayed picture is 20 wide, 40 high, red on top (left half rotated clockwise).
  const rot = byName.get("10_inkwash/rot.jpg")!;
  assert.equal(rot.info.orientation, 6);
  assert.deepEqual([rot.info.width, rot.info.height], [20, 40]);
  const rotPx = await loadRgb(rot.path);
  assert.deepEqual([rotPx.width, rotPx.height], [20, 40]);
  const top = rotPx.data.subarray((5 * 20 + 10) * 3, (5 * 20 + 10) * 3 + 3);
  const bottom = rotPx.data.subarray((35 * 20 + 10) * 3, (35 * 20 + 10) * 3 + 3);
  assert.ok(top[0] > 200 && top[2] < 60, `top should be red, got ${[...top]}`);
  assert.ok(bottom[2] > 200 && bottom[0] < 60, `bottom should be blue, got ${[...bottom]}`);

  // CMYK decodes to sRGB close to the colour it was made from.
  const cmyk = byName.get("10_inkwash/cmyk.jpg")!;
  assert.equal(cmyk.info.space, "cmyk");
  const c = await loadRgb(cmyk.path);
  assert.equal(c.data.length, 64 * 64 * 3);
  const mid = c.data.subarray((32 * 64 + 32) * 3, (32 * 64 + 32) * 3 + 3);
  assert.ok(mid[0] > 170 && mid[1] < 90 && mid[2] < 90, `CMYK red decoded as ${[...mid]}`);

  // Grey + alpha: transparent over white, opaque grey kept, 3 channels out.
  const grey = byName.get("10_inkwash/grey.png")!;
  assert.equal(grey.info.hasAlpha, true);
  const g = await loadRgb(grey.path);
  assert.deepEqual([...g.data.subarray((10 * 32 + 2) * 3, (10 * 32 + 2) * 3 + 3)], [255, 255, 255]);
  assert.deepEqual([...g.data.subarray((10 * 32 + 30) * 3, (10 * 32 + 30) * 3 + 3)], [100, 100, 100]);
});

test("missing_caption: error stops with the list of images", async () => {
  const dir = await buildDataset();
  await assert.rejects(planDataset({ ...baseConfig(dir), missing_caption: "error" }), (e: unknown) => {
    assert.ok(e instanceof DatasetError);
    assert.match(e.message, /3 image\(s\) have no caption/);
    assert.match(e.message, /rot\.jpg/);
    return true;
  });
});

test("bucketed load: resize to cover, center crop, CHW float tensor in [-1, 1], flip mirrors columns", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ds-"));
  const path = join(dir, "h.png");
  await writeFile(path, await halves(128, 64));
  const info = await probeImage(path);
  assert.deepEqual([info.width, info.height], [128, 64]);
  // Crop the middle 64x64 of a 128x64 picture scaled to 128x64: columns 32..95.
  const img = await loadBucketed(path, {
    bucket: [64, 64],
    resized: [128, 64],
    crop: { left: 32, top: 0, width: 64, height: 64 },
    aspectError: -1,
  });
  assert.deepEqual([img.width, img.height], [64, 64]);
  const t = toTensorCHW(img);
  const plane = 64 * 64;
  assert.equal(t.length, 3 * plane);
  // Left part red (R=1, B=-1), right part blue.
  assert.ok(Math.abs(t[10] - 1) < 0.02 && Math.abs(t[2 * plane + 10] + 1) < 0.02);
  assert.ok(Math.abs(t[60] + 1) < 0.02 && Math.abs(t[2 * plane + 60] - 1) < 0.02);
  const f = toTensorCHW(img, true);
  for (let y = 0; y < 64; y += 7)
    for (let x = 0; x < 64; x += 5) assert.equal(f[y * 64 + x], t[y * 64 + (63 - x)]);
  assert.ok(t.every((v) => v >= -1 && v <= 1));
});

test("caption processing: keep_tokens stay first, the rest is a permutation; dropout; tag frequency", () => {
  const rng = new Rng(7);
  const caption = "sks style, ink wash, mountain, river, crane, mist";
  const tags = caption.split(", ");
  let moved = false;
  for (let i = 0; i < 20; i++) {
    const out = processCaption(
      caption,
      { shuffleCaption: true, keepTokens: 1, captionDropoutRate: 0 },
      rng,
    ).split(", ");
    assert.equal(out[0], "sks style");
    assert.deepEqual([...out].sort(), [...tags].sort());
    if (out.join() !== tags.join()) moved = true;
  }
  assert.ok(moved, "shuffling changes the order");
  let dropped = 0;
  for (let i = 0; i < 2000; i++)
    if (
      processCaption(caption, { shuffleCaption: false, keepTokens: 0, captionDropoutRate: 0.25 }, rng) === ""
    )
      dropped++;
  assert.ok(dropped > 400 && dropped < 600, `dropout rate 0.25 dropped ${dropped}/2000`);

  const images = [
    { path: "/d/1.png", relPath: "1.png", subset: "10_a", repeats: 10 },
    { path: "/d/2.png", relPath: "2.png", subset: "10_a", repeats: 10 },
  ];
  const freq = tagFrequency(
    images,
    new Map([
      ["/d/1.png", "a, b"],
      ["/d/2.png", " b ,c,,"],
    ]),
  );
  assert.deepEqual(freq, { "10_a": { a: 1, b: 2, c: 1 } });
});
