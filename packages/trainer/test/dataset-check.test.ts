import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { datasetCheck, formatCheckTable } from "../src/dataset/check.ts";
import { hammingDistance, laplacianVariance, phashFromPixels } from "../src/dataset/quality.ts";
import { Rng } from "../src/dataset/rng.ts";

/** Random colour blocks: lots of hard edges. */
function blocks(size: number, block: number, seed: number): sharp.Sharp {
  const rng = new Rng(seed);
  const px = Buffer.alloc(size * size * 3);
  const n = size / block;
  const colours = Array.from({ length: n * n }, () => [rng.int(256), rng.int(256), rng.int(256)]);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      px.set(colours[Math.floor(y / block) * n + Math.floor(x / block)], (y * size + x) * 3);
  return sharp(px, { raw: { width: size, height: size, channels: 3 } });
}

test("laplacian variance and pHash basics", () => {
  const flat = new Uint8Array(64 * 64).fill(128);
  assert.equal(laplacianVariance(flat, 64, 64), 0);
  // A single bright pixel: Laplacian -4*255 at the centre, 255 at 4 neighbours, over 62*62 positions.
  const dot = new Uint8Array(64 * 64);
  dot[32 * 64 + 32] = 255;
  const vals = [-4 * 255, 255, 255, 255, 255];
  const m = vals.reduce((a, b) => a + b, 0) / (62 * 62);
  const expected = vals.reduce((a, b) => a + b * b, 0) / (62 * 62) - m * m;
  assert.ok(Math.abs(laplacianVariance(dot, 64, 64) - expected) < 1e-9);
  const gradient = Uint8Array.from({ length: 32 * 32 }, (_, i) => (i % 32) * 8);
  const inverted = gradient.map((v) => 255 - v);
  assert.equal(hammingDistance(phashFromPixels(gradient), phashFromPixels(gradient)), 0);
  assert.ok(hammingDistance(phashFromPixels(gradient), phashFromPixels(inverted)) > 20);
  assert.equal(hammingDistance(0b1011n, 0b0110n), 3);
});

test("dataset check flags a blurred copy, a near-duplicate, small and extreme images and caption problems", async () => {
  const dir = await mkdtemp(join(tmpdir(), "check-"));
  const a = join(dir, "a.png");
  await blocks(512, 16, 1).png().toFile(a);
  await writeFile(join(dir, "a.txt"), "ink wash, mountain, mist, river");
  await blocks(512, 16, 1).resize(480, 480).jpeg({ quality: 80 }).toFile(join(dir, "a_copy.jpg"));
  await writeFile(join(dir, "a_copy.txt"), "ink wash, mountain, mist, river");
  await blocks(512, 16, 2).png().toFile(join(dir, "b.png"));
  await writeFile(join(dir, "b.txt"), "blue sky over a quiet lake");
  await blocks(512, 16, 3).blur(8).png().toFile(join(dir, "c_blurred.png"));
  await blocks(64, 8, 4).png().toFile(join(dir, "d_small.png"));
  await writeFile(join(dir, "d_small.txt"), "   ");
  await sharp({ create: { width: 900, height: 200, channels: 3, background: "#446688" } })
    .png()
    .toFile(join(dir, "e_wide.png"));
  await writeFile(join(dir, "e_wide.txt"), "sky");
  await writeFile(join(dir, "f_broken.jpg"), "not a jpeg");

  const sheet = join(dir, "..", `${dir.split("/").pop()}-sheet.png`);
  const result = await datasetCheck(dir, { resolution: 512, contactSheetPath: sheet });
  const flags = new Map(result.rows.map((r) => [r.relPath, r.flags.map((f) => f.kind).sort()]));
  assert.deepEqual(flags.get("a.png"), ["caption-identical", "near-duplicate"]);
  assert.deepEqual(flags.get("a_copy.jpg"), ["caption-identical", "near-duplicate", "under-resolution"]);
  assert.deepEqual(flags.get("b.png"), []);
  assert.ok(flags.get("c_blurred.png")!.includes("blurry"));
  assert.ok(flags.get("c_blurred.png")!.includes("caption-missing"));
  assert.ok(
    !flags.get("c_blurred.png")!.includes("near-duplicate"),
    "a different picture is not a duplicate",
  );
  assert.deepEqual(flags.get("d_small.png"), ["caption-empty", "under-resolution"]);
  assert.deepEqual(flags.get("e_wide.png"), [
    "blurry",
    "caption-short",
    "extreme-aspect",
    "under-resolution",
  ]);
  assert.deepEqual(flags.get("f_broken.jpg"), ["caption-missing", "unreadable"]);
  const rowA = result.rows.find((r) => r.relPath === "a.png")!;
  const rowB = result.rows.find((r) => r.relPath === "b.png")!;
  const rowC = result.rows.find((r) => r.relPath === "c_blurred.png")!;
  assert.ok(rowA.sharpness! > 10 * rowC.sharpness!, `sharp ${rowA.sharpness} vs blurred ${rowC.sharpness}`);
  assert.ok(rowB.sharpness! > 100);
  assert.match(formatCheckTable(result), /7 images, 6 flagged/);

  // Contact sheet: 7 tiles of 172 px in one row; flagged tiles framed red, the clean one white.
  const { data, info } = await sharp(sheet).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height], [7 * 172, 172]);
  const pixel = (x: number, y: number) => [
    ...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3),
  ];
  const order = result.rows.map((r) => r.relPath);
  const tileCorner = (name: string) => pixel(order.indexOf(name) * 172 + 2, 100);
  assert.deepEqual(tileCorner("a.png"), [224, 16, 16]);
  assert.deepEqual(tileCorner("b.png"), [255, 255, 255]);
});
