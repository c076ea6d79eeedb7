/**
 * Data-side throughput of the trainer, on a generated folder of photos-like JPEGs (random colour blocks with
 * a gradient, mixed aspect ratios):
 *  - planDataset (discover + header/shrink-decode probe + captions + buckets), images/s;
 *  - loadBucketed + toTensorCHW at 512 px (what each training sample costs without latent caching), images/s;
 *  - datasetCheck (sharpness, pHash, contact sheet), images/s;
 *  - TensorBoard scalar events and metrics.jsonl lines, records/s.
 * Run: npx tsx packages/trainer/bench/dataset.ts [imageCount=48]
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { datasetCheck } from "../src/dataset/check.ts";
import { loadBucketed, toTensorCHW } from "../src/dataset/image.ts";
import { planDataset } from "../src/dataset/plan.ts";
import { Rng } from "../src/dataset/rng.ts";
import { MetricsWriter } from "../src/logging/metrics.ts";
import { TensorBoardWriter } from "../src/logging/tensorboard.ts";

const count = Number(process.argv[2] ?? 48);
const sizes: [number, number][] = [
  [1024, 768],
  [768, 1024],
  [1024, 1024],
  [1280, 720],
];

async function makeImage(path: string, w: number, h: number, seed: number) {
  const rng = new Rng(seed);
  const px = Buffer.alloc(w * h * 3);
  const b = 32;
  const cols = Array.from({ length: Math.ceil(w / b) * Math.ceil(h / b) }, () => [
    rng.int(256),
    rng.int(256),
    rng.int(256),
  ]);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const c = cols[Math.floor(y / b) * Math.ceil(w / b) + Math.floor(x / b)];
      const o = (y * w + x) * 3;
      px[o] = (c[0] + x / 8) & 255;
      px[o + 1] = c[1];
      px[o + 2] = (c[2] + y / 8) & 255;
    }
  await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toFile(path);
}

async function time<T>(label: string, n: number, unit: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  const s = (performance.now() - t0) / 1000;
  console.log(`${label.padEnd(44)} ${n} ${unit} in ${s.toFixed(2)} s = ${(n / s).toFixed(1)} ${unit}/s`);
  return r;
}

const root = await mkdtemp(join(tmpdir(), "bench-ds-"));
const dir = join(root, "data");
const sub = join(dir, "10_bench");
await mkdir(sub, { recursive: true });
for (let i = 0; i < count; i++) {
  const [w, h] = sizes[i % sizes.length];
  await makeImage(join(sub, `img${i}.jpg`), w, h, i);
  await writeFile(join(sub, `img${i}.txt`), `bench style, picture ${i}, blocks`);
}
console.log(
  `${count} JPEGs (1024x768, 768x1024, 1024x1024, 1280x720), Node ${process.version}, sharp ${sharp.versions.sharp}, libvips threads ${sharp.concurrency()}`,
);

const plan = await time("planDataset (probe + captions + buckets)", count, "images", () =>
  planDataset({
    train_data_dir: dir,
    metadata_path: undefined,
    caption_extension: ".txt",
    missing_caption: "warn",
    repeats: 1,
    resolution: [512, 512],
    enable_bucket: true,
    min_bucket_reso: 256,
    max_bucket_reso: 1024,
    bucket_reso_steps: 64,
    bucket_no_upscale: false,
    batch_size: 1,
    gradient_accumulation_steps: 1,
    epochs: 1,
    max_train_steps: undefined,
  }),
);
await time("loadBucketed + toTensorCHW (512 px buckets)", count, "images", async () => {
  for (const im of plan.images) toTensorCHW(await loadBucketed(im.path, im.assignment), true);
});
await time("datasetCheck (sharpness, pHash, contact sheet)", count, "images", () =>
  datasetCheck(dir, { contactSheetPath: join(root, "sheet.png") }),
);
const records = 20000;
await time("TensorBoard scalar events (3 tags each)", records, "events", async () => {
  const tb = new TensorBoardWriter(join(root, "tb"));
  for (let i = 0; i < records; i++)
    tb.scalars(i, { "loss/current": 0.1, "loss/average": 0.1, "lr/unet": 1e-4 });
  tb.close();
});
await time("metrics.jsonl lines", records, "lines", async () => {
  const m = new MetricsWriter(join(root, "metrics.jsonl"));
  for (let i = 0; i < records; i++) m.write({ step: i, epoch: 0, loss: 0.1, wall_time: i });
  m.close();
});
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
await rm(root, { recursive: true, force: true });
