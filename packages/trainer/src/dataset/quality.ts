/**
 * Image-quality measures for `dataset check`, computed on small greyscale copies so they are cheap and
 * comparable across image sizes:
 *  - sharpness: variance of the 3x3 Laplacian (0 1 0 / 1 -4 1 / 0 1 0) on a copy whose longer side is 512 px;
 *    low variance = few edges = blurry (the usual OpenCV recipe, threshold around 100 for 8-bit values);
 *  - perceptual hash (pHash): 32x32 greyscale, 2-D DCT-II, the 8x8 lowest frequencies, each bit = coefficient
 *    above the median of those 64 (DC excluded from the median); near-duplicates differ in few bits.
 */
import sharp from "sharp";

export const SHARPNESS_SIDE = 512;

/** Greyscale pixels (0..255) of the image, longer side scaled to `side` (never enlarged). */
async function grey(
  path: string,
  width: number,
  height?: number,
): Promise<{ px: Uint8Array; w: number; h: number }> {
  const img = sharp(path, { failOn: "error" })
    .rotate()
    .flatten({ background: "#ffffff" })
    .greyscale()
    .resize(
      width,
      height ?? width,
      height === undefined ? { fit: "inside", withoutEnlargement: true } : { fit: "fill" },
    );
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const px = info.channels === 1 ? new Uint8Array(data) : takeFirstChannel(data, info.channels);
  return { px, w: info.width, h: info.height };
}

function takeFirstChannel(data: Buffer, channels: number): Uint8Array {
  const out = new Uint8Array(data.length / channels);
  for (let i = 0; i < out.length; i++) out[i] = data[i * channels];
  return out;
}

export function laplacianVariance(px: ArrayLike<number>, w: number, h: number): number {
  if (w < 3 || h < 3) return 0;
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      const v = px[i - w] + px[i + w] + px[i - 1] + px[i + 1] - 4 * px[i];
      sum += v;
      sumSq += v * v;
      n++;
    }
  }
  const mean = sum / n;
  return sumSq / n - mean * mean;
}

export async function sharpness(path: string): Promise<number> {
  const { px, w, h } = await grey(path, SHARPNESS_SIDE);
  return laplacianVariance(px, w, h);
}

/** Sharpness and pHash from one decode (the pHash is taken from the 512 px greyscale copy). */
export async function measureImage(path: string): Promise<{ sharpness: number; phash: bigint }> {
  const { px, w, h } = await grey(path, SHARPNESS_SIDE);
  const small = await sharp(px, { raw: { width: w, height: h, channels: 1 } })
    .resize(32, 32, { fit: "fill" })
    .raw()
    .toBuffer();
  return { sharpness: laplacianVariance(px, w, h), phash: phashFromPixels(small) };
}

/** 64-bit pHash as a bigint. */
export async function perceptualHash(path: string): Promise<bigint> {
  const { px } = await grey(path, 32, 32);
  return phashFromPixels(px);
}

export function phashFromPixels(px: ArrayLike<number>): bigint {
  const N = 32;
  const cos = new Float64Array(8 * N);
  for (let u = 0; u < 8; u++)
    for (let x = 0; x < N; x++) cos[u * N + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * N));
  // Row transform then column transform, keeping only the 8 lowest frequencies of each.
  const rows = new Float64Array(N * 8);
  for (let y = 0; y < N; y++) {
    for (let u = 0; u < 8; u++) {
      let s = 0;
      for (let x = 0; x < N; x++) s += px[y * N + x] * cos[u * N + x];
      rows[y * 8 + u] = s;
    }
  }
  const coeffs = new Float64Array(64);
  for (let v = 0; v < 8; v++) {
    for (let u = 0; u < 8; u++) {
      let s = 0;
      for (let y = 0; y < N; y++) s += rows[y * 8 + u] * cos[v * N + y];
      coeffs[v * 8 + u] = s;
    }
  }
  const sorted = [...coeffs.slice(1)].sort((a, b) => a - b);
  const median = (sorted[31] + sorted[32]) / 2;
  let hash = 0n;
  for (let i = 0; i < 64; i++) if (coeffs[i] > median) hash |= 1n << BigInt(i);
  return hash;
}

export function hammingDistance(a: bigint, b: bigint): number {
  let x = a ^ b;
  let n = 0;
  while (x > 0n) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}
