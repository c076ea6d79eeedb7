/**
 * planDataset(config): everything about the data that can be known before training: which images are used
 * and which are skipped (with the reason), captions and where they came from, the bucket of every image, and
 * the step arithmetic (per bucket ceil(images x repeats / batch), then gradient accumulation, then epochs vs
 * max_train_steps). formatPlan() renders it for `--dry-run`, spelling the arithmetic out.
 */
import type { TrainConfig } from "../config/schema.ts";
import { type BucketAssignment, BucketPlanner, fixedResolutionAssignment, type Size } from "./buckets.ts";
import { type CaptionResult, type CaptionSource, loadCaptions } from "./captions.ts";
import { discoverImages, type SkippedFile } from "./discover.ts";
import { type ImageInfo, ImageLoadError, probeImage } from "./image.ts";
import type { OrderBucket } from "./order.ts";

export class DatasetError extends Error {
  constructor(
    readonly dir: string,
    message: string,
  ) {
    super(`${dir}: ${message}`);
    this.name = "DatasetError";
  }
}

export interface PlannedImage {
  path: string;
  relPath: string;
  subset: string;
  repeats: number;
  info: ImageInfo;
  caption: string;
  captionSource: CaptionSource;
  assignment: BucketAssignment;
}

export interface PlannedBucket {
  bucket: Size;
  images: number;
  samples: number;
  batches: number;
}

export interface DataPlan {
  dataDir: string;
  images: PlannedImage[];
  skipped: SkippedFile[];
  captions: Omit<CaptionResult, "captions" | "sources">;
  subsets: { name: string; repeats: number; imageCount: number }[];
  buckets: PlannedBucket[];
  batchSize: number;
  gradientAccumulation: number;
  samplesPerEpoch: number;
  batchesPerEpoch: number;
  /** Optimizer steps per epoch: ceil(batches / gradient_accumulation_steps). */
  stepsPerEpoch: number;
  epochs: number;
  totalSteps: number;
  /** Which setting decided the length of the run. */
  limitedBy: "epochs" | "max_train_steps";
  warnings: string[];
}

type PlanConfig = Pick<
  TrainConfig,
  | "train_data_dir"
  | "metadata_path"
  | "caption_extension"
  | "missing_caption"
  | "repeats"
  | "resolution"
  | "enable_bucket"
  | "min_bucket_reso"
  | "max_bucket_reso"
  | "bucket_reso_steps"
  | "bucket_no_upscale"
  | "batch_size"
  | "gradient_accumulation_steps"
  | "epochs"
  | "max_train_steps"
>;

const PROBE_CONCURRENCY = 4;

export async function planDataset(config: PlanConfig): Promise<DataPlan> {
  const dir = config.train_data_dir;
  const found = await discoverImages(dir, config.repeats).catch((err: Error) => {
    throw new DatasetError(dir, `cannot read the data folder: ${err.message}`);
  });
  const skipped = [...found.skipped];
  const infos = await mapLimit(found.images, PROBE_CONCURRENCY, (img) =>
    probeImage(img.path).catch(() => null),
  );
  // Failures are probed again one at a time: libvips keeps one error buffer per process, so decoders failing
  // concurrently can lose each other's messages ("Unknown error"); alone, the real reason comes back.
  for (const [i, img] of found.images.entries()) {
    if (infos[i] !== null) continue;
    try {
      infos[i] = await probeImage(img.path);
    } catch (err) {
      skipped.push({ path: img.path, reason: err instanceof ImageLoadError ? err.reason : String(err) });
    }
  }
  const planner = new BucketPlanner({
    resolution: config.resolution,
    minReso: config.min_bucket_reso,
    maxReso: config.max_bucket_reso,
    step: config.bucket_reso_steps,
    noUpscale: config.bucket_no_upscale,
  });
  const readable = found.images.filter((_, i) => infos[i] !== null);
  const captionResult = await loadCaptions(readable, {
    dataDir: dir,
    metadataPath: config.metadata_path,
    captionExtension: config.caption_extension,
  });
  const images: PlannedImage[] = [];
  found.images.forEach((img, i) => {
    const info = infos[i];
    if (info === null) return;
    const assignment = config.enable_bucket
      ? planner.assign(info.width, info.height)
      : fixedResolutionAssignment(info.width, info.height, config.resolution);
    if (assignment.bucket[0] === 0 || assignment.bucket[1] === 0) {
      skipped.push({
        path: img.path,
        reason: `${info.width}x${info.height} is smaller than one bucket step`,
      });
      return;
    }
    images.push({
      ...img,
      info,
      caption: captionResult.captions.get(img.path) ?? "",
      captionSource: captionResult.sources.get(img.path) ?? "none",
      assignment,
    });
  });
  if (images.length === 0) {
    throw new DatasetError(dir, `no usable images (${skipped.length} skipped)`);
  }
  const { captions: _c, sources: _s, ...captionSummary } = captionResult;
  const warnings = captionWarnings(captionResult);
  if (captionResult.missing.length > 0 && config.missing_caption === "error") {
    throw new DatasetError(
      dir,
      `${captionResult.missing.length} image(s) have no caption (missing_caption: error): ` +
        captionResult.missing.slice(0, 5).join(", "),
    );
  }
  const subsets = found.subsets
    .map((s) => ({ ...s, imageCount: images.filter((im) => im.subset === s.name).length }))
    .filter((s) => s.imageCount > 0);
  const steps = stepArithmetic(images, config);
  return {
    dataDir: dir,
    images,
    skipped,
    captions: captionSummary,
    subsets,
    ...steps,
    warnings,
  };
}

function captionWarnings(c: CaptionResult): string[] {
  const out: string[] = [];
  if (c.missing.length > 0) {
    let w = `${c.missing.length} image(s) have no caption (looked for metadata.csv rows and "${c.captionExtension}" files); they train with an empty caption`;
    if (c.otherSidecarExtensions.length > 0) {
      w += `; found ${c.otherSidecarExtensions.join(", ")} files instead: set caption_extension`;
    }
    out.push(w);
  }
  if (c.unmatchedCsvRows.length > 0) {
    out.push(
      `${c.unmatchedCsvRows.length} metadata.csv row(s) name no image: ${c.unmatchedCsvRows.slice(0, 3).join(", ")}`,
    );
  }
  return out;
}

type StepConfig = Pick<
  PlanConfig,
  "batch_size" | "gradient_accumulation_steps" | "epochs" | "max_train_steps"
>;

/** The bucket table and step counts (exported for tests and for the trainer's own bookkeeping). */
export function stepArithmetic(
  images: readonly Pick<PlannedImage, "repeats" | "assignment">[],
  config: StepConfig,
): Pick<
  DataPlan,
  | "buckets"
  | "batchSize"
  | "gradientAccumulation"
  | "samplesPerEpoch"
  | "batchesPerEpoch"
  | "stepsPerEpoch"
  | "epochs"
  | "totalSteps"
  | "limitedBy"
> {
  const byKey = new Map<string, PlannedBucket>();
  for (const im of images) {
    const key = im.assignment.bucket.join("x");
    const b = byKey.get(key) ?? { bucket: im.assignment.bucket, images: 0, samples: 0, batches: 0 };
    b.images++;
    b.samples += im.repeats;
    byKey.set(key, b);
  }
  const buckets = [...byKey.values()].sort((a, b) => a.bucket[0] - b.bucket[0] || a.bucket[1] - b.bucket[1]);
  for (const b of buckets) b.batches = Math.ceil(b.samples / config.batch_size);
  const samplesPerEpoch = buckets.reduce((n, b) => n + b.samples, 0);
  const batchesPerEpoch = buckets.reduce((n, b) => n + b.batches, 0);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / config.gradient_accumulation_steps);
  const byMax = config.max_train_steps !== undefined;
  const totalSteps = byMax ? config.max_train_steps! : stepsPerEpoch * config.epochs;
  return {
    buckets,
    batchSize: config.batch_size,
    gradientAccumulation: config.gradient_accumulation_steps,
    samplesPerEpoch,
    batchesPerEpoch,
    stepsPerEpoch,
    epochs: byMax ? Math.ceil(totalSteps / stepsPerEpoch) : config.epochs,
    totalSteps,
    limitedBy: byMax ? "max_train_steps" : "epochs",
  };
}

/** For the trainer: per bucket, image indices into plan.images repeated by their repeats. */
export function orderBuckets(plan: DataPlan): OrderBucket[] {
  const byKey = new Map<string, OrderBucket>();
  plan.images.forEach((im, i) => {
    const key = im.assignment.bucket.join("x");
    const b = byKey.get(key) ?? { bucket: im.assignment.bucket, samples: [] };
    for (let r = 0; r < im.repeats; r++) b.samples.push(i);
    byKey.set(key, b);
  });
  return [...byKey.values()].sort((a, b) => a.bucket[0] - b.bucket[0] || a.bucket[1] - b.bucket[1]);
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
