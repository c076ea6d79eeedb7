/**
 * Aspect-ratio bucketing exactly as kohya's sd-scripts does it (library/model_util.py make_bucket_resolutions
 * and train_util.py BucketManager.select_bucket):
 *  - predefined buckets: the square floor(sqrt(W*H)/step)*step, plus for every width from min to max in steps
 *    the pair (width, min(max, floor(W*H/width/step)*step)) and its transpose, keeping heights >= min;
 *  - an image goes to the bucket with the nearest aspect ratio (first in sorted order on ties), unless its own
 *    size is a bucket; it is scaled to cover the bucket (rounded half up) and center-cropped;
 *  - with no_upscale, images larger than W*H are scaled down to that area with one side snapped to the step,
 *    smaller ones are not scaled, and the bucket is the scaled size floored to the step (crop, no padding).
 */

export type Size = [width: number, height: number];

export interface BucketSettings {
  resolution: Size;
  minReso: number;
  maxReso: number;
  step: number;
  noUpscale: boolean;
}

export interface BucketAssignment {
  bucket: Size;
  /** Size the image is resized to before the center crop. */
  resized: Size;
  /** Crop rectangle inside the resized image. */
  crop: { left: number; top: number; width: number; height: number };
  /** Bucket aspect ratio minus image aspect ratio (kohya's ar_error). */
  aspectError: number;
}

export function makeBucketResolutions(
  resolution: Size,
  minSize: number,
  maxSize: number,
  step: number,
): Size[] {
  const maxArea = resolution[0] * resolution[1];
  const set = new Map<string, Size>();
  const add = (s: Size) => set.set(`${s[0]}x${s[1]}`, s);
  const square = Math.floor(Math.sqrt(maxArea) / step) * step;
  add([square, square]);
  for (let width = minSize; width <= maxSize; width += step) {
    const height = Math.min(maxSize, Math.floor(Math.floor(maxArea / width) / step) * step);
    if (height >= minSize) {
      add([width, height]);
      add([height, width]);
    }
  }
  return [...set.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

export class BucketPlanner {
  readonly predefined: Size[];
  private readonly predefinedKeys: Set<string>;

  constructor(readonly settings: BucketSettings) {
    const { resolution, minReso, maxReso, step } = settings;
    this.predefined = settings.noUpscale ? [] : makeBucketResolutions(resolution, minReso, maxReso, step);
    this.predefinedKeys = new Set(this.predefined.map((s) => `${s[0]}x${s[1]}`));
  }

  assign(width: number, height: number): BucketAssignment {
    const aspect = width / height;
    let bucket: Size;
    let resized: Size;
    if (!this.settings.noUpscale) {
      bucket = [width, height];
      if (!this.predefinedKeys.has(`${width}x${height}`)) {
        let best = 0;
        let bestError = Number.POSITIVE_INFINITY;
        this.predefined.forEach(([w, h], i) => {
          const e = Math.abs(w / h - aspect);
          if (e < bestError) {
            bestError = e;
            best = i;
          }
        });
        bucket = this.predefined[best];
      }
      const scale = aspect > bucket[0] / bucket[1] ? bucket[1] / height : bucket[0] / width;
      resized = [Math.floor(width * scale + 0.5), Math.floor(height * scale + 0.5)];
    } else {
      resized = this.noUpscaleSize(width, height, aspect);
      const step = this.settings.step;
      bucket = [resized[0] - (resized[0] % step), resized[1] - (resized[1] % step)];
    }
    return {
      bucket,
      resized,
      crop: centerCrop(resized, bucket),
      aspectError: bucket[0] / bucket[1] - aspect,
    };
  }

  private noUpscaleSize(width: number, height: number, aspect: number): Size {
    const maxArea = this.settings.resolution[0] * this.settings.resolution[1];
    if (width * height <= maxArea) return [width, height];
    const rw = Math.sqrt(maxArea * aspect);
    const rh = maxArea / rw;
    const round = (x: number) => {
      const i = Math.floor(x + 0.5);
      return i - (i % this.settings.step);
    };
    const bw = round(rw);
    const hForW = round(bw / aspect);
    const bh = round(rh);
    const wForH = round(bh * aspect);
    const arW = bw / hForW;
    const arH = wForH / bh;
    return Math.abs(arW - aspect) < Math.abs(arH - aspect)
      ? [bw, Math.floor(bw / aspect + 0.5)]
      : [Math.floor(bh * aspect + 0.5), bh];
  }
}

/** kohya trims (resized - bucket) // 2 from the left/top when not random-cropping. */
export function centerCrop(resized: Size, bucket: Size): BucketAssignment["crop"] {
  const width = Math.min(resized[0], bucket[0]);
  const height = Math.min(resized[1], bucket[1]);
  return {
    left: Math.floor((resized[0] - width) / 2),
    top: Math.floor((resized[1] - height) / 2),
    width,
    height,
  };
}

/** Without bucketing every image is scaled to cover `resolution` and center-cropped to it. */
export function fixedResolutionAssignment(width: number, height: number, resolution: Size): BucketAssignment {
  const scale = Math.max(resolution[0] / width, resolution[1] / height);
  const resized: Size = [
    Math.max(resolution[0], Math.floor(width * scale + 0.5)),
    Math.max(resolution[1], Math.floor(height * scale + 0.5)),
  ];
  return {
    bucket: resolution,
    resized,
    crop: centerCrop(resized, resolution),
    aspectError: resolution[0] / resolution[1] - width / height,
  };
}
