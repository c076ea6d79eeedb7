import assert from "node:assert/strict";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import type { Size } from "../src/dataset/buckets.ts";
import { DataOrder, epochBatches } from "../src/dataset/order.ts";
import { orderBuckets, planDataset, stepArithmetic } from "../src/dataset/plan.ts";
import { formatPlan, stepSentence } from "../src/dataset/plan-text.ts";
import { datasetSummaryFromPlan } from "../src/output/metadata.ts";

const fake = (bucket: Size, repeats: number) => ({
  repeats,
  assignment: {
    bucket,
    resized: bucket,
    crop: { left: 0, top: 0, width: bucket[0], height: bucket[1] },
    aspectError: 0,
  },
});

test("step arithmetic: ceil per bucket, then gradient accumulation, then epochs or max_train_steps", () => {
  // Bucket A: 3 images x 10 = 30 samples / 4 = 7.5 -> 8 batches; bucket B: 5 x 10 = 50 / 4 = 12.5 -> 13.
  const images = [
    ...Array.from({ length: 3 }, () => fake([512, 512], 10)),
    ...Array.from({ length: 5 }, () => fake([576, 448], 10)),
  ];
  const s = stepArithmetic(images, {
    batch_size: 4,
    gradient_accumulation_steps: 1,
    epochs: 10,
    max_train_steps: undefined,
  });
  assert.deepEqual(
    s.buckets.map((b) => [b.bucket, b.samples, b.batches]),
    [
      [[512, 512], 30, 8],
      [[576, 448], 50, 13],
    ],
  );
  assert.equal(s.samplesPerEpoch, 80);
  assert.equal(s.batchesPerEpoch, 21, "not ceil(80/4) = 20: partial batches are per bucket");
  assert.equal(s.stepsPerEpoch, 21);
  assert.equal(s.totalSteps, 210);
  const acc = stepArithmetic(images, {
    batch_size: 4,
    gradient_accumulation_steps: 2,
    epochs: 10,
    max_train_steps: undefined,
  });
  assert.equal(acc.stepsPerEpoch, 11);
  assert.equal(acc.totalSteps, 110);
  const capped = stepArithmetic(images, {
    batch_size: 4,
    gradient_accumulation_steps: 2,
    epochs: 10,
    max_train_steps: 50,
  });
  assert.equal(capped.totalSteps, 50);
  assert.equal(capped.epochs, 5, "ceil(50 / 11)");
  assert.equal(capped.limitedBy, "max_train_steps");
});

test("the dry-run plan spells out the arithmetic for a real folder", async () => {
  const dir = await mkdtemp(join(tmpdir(), "plan-"));
  const sub = join(dir, "10_ink");
  await mkdir(sub);
  for (let i = 0; i < 12; i++) {
    await sharp({ create: { width: 128, height: 128, channels: 3, background: { r: i * 20, g: 0, b: 0 } } })
      .png()
      .toFile(join(sub, `img${String(i).padStart(2, "0")}.png`));
  }
  await writeFile(join(sub, "img00.txt"), "ink, mountain");
  await writeFile(join(sub, "img01.txt"), "ink");
  const plan = await planDataset({
    train_data_dir: dir,
    metadata_path: undefined,
    caption_extension: ".txt",
    missing_caption: "warn",
    repeats: 1,
    resolution: [128, 128],
    enable_bucket: true,
    min_bucket_reso: 64,
    max_bucket_reso: 256,
    bucket_reso_steps: 64,
    bucket_no_upscale: false,
    batch_size: 2,
    gradient_accumulation_steps: 1,
    epochs: 10,
    max_train_steps: undefined,
  });
  assert.equal(
    stepSentence(plan),
    "12 images x 10 repeats = 120 samples / batch 2 = 60 steps per epoch x 10 epochs = 600 steps",
  );
  const text = formatPlan(plan, { secondsPerStep: 1.5 });
  assert.match(text, /images: 12 used, 0 skipped/);
  assert.match(text, /128x128: 12 images, 120 samples \/ batch 2 = 60 batches/);
  assert.match(text, /10 image\(s\) have no caption/);
  assert.match(text, /captions: 2 from ".txt" files, 10 without caption/);
  assert.match(text, /estimated time: 15 min 0 s/);

  assert.deepEqual(datasetSummaryFromPlan(plan), {
    numTrainImages: 120,
    numBatchesPerEpoch: 60,
    numEpochs: 10,
    maxTrainSteps: 600,
    datasetDirs: { "10_ink": { n_repeats: 10, img_count: 12 } },
    tagFrequency: { "10_ink": { ink: 2, mountain: 1 } },
    buckets: [{ resolution: [128, 128], count: 120 }],
    meanAspectError: 0,
  });

  const buckets = orderBuckets(plan);
  assert.equal(buckets.length, 1);
  assert.equal(buckets[0].samples.length, 120);
});

test("data order: each epoch sees every sample once, per-bucket batches, reproducible, resumable", () => {
  const buckets = [
    { bucket: [512, 512] as Size, samples: [0, 0, 1, 1, 2, 2, 3] },
    { bucket: [576, 448] as Size, samples: [4, 4, 5, 5, 6] },
  ];
  const e0 = epochBatches(buckets, 3, 42, 0);
  assert.equal(e0.length, 3 + 2);
  for (const b of e0) {
    const allowed = buckets[b.bucketIndex].samples;
    for (const i of b.items) assert.ok(allowed.includes(i));
  }
  assert.deepEqual(e0.flatMap((b) => b.items).sort(), [...buckets[0].samples, ...buckets[1].samples].sort());
  assert.deepEqual(epochBatches(buckets, 3, 42, 0), e0, "same seed and epoch, same order");
  assert.notDeepEqual(epochBatches(buckets, 3, 42, 1), e0, "a new epoch reshuffles");

  const run = new DataOrder(buckets, 3, 42);
  const seen = Array.from({ length: 13 }, () => run.next());
  const state = run.getState();
  assert.deepEqual(state, { seed: 42, epoch: 2, position: 3 });
  const continued = Array.from({ length: 9 }, () => run.next());
  const resumed = new DataOrder(buckets, 3, 42, JSON.parse(JSON.stringify(state)));
  assert.deepEqual(
    Array.from({ length: 9 }, () => resumed.next()),
    continued,
  );
  assert.deepEqual(seen[5].epoch, 1);
  assert.throws(() => new DataOrder(buckets, 3, 7, state), /seed 42/);
});
