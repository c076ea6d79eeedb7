/**
 * Image preparation for the auto-label models. WD14-style taggers, as SmilingWolf's reference app and the WebUI tagger extensions do
 * it: decode (EXIF orientation applied, alpha composited over white, any colour space to sRGB), pad to a
 * square with white keeping the picture centred, resize to the model's size (bicubic), then hand the model raw
 * 0-255 values in BGR order (the models were trained on OpenCV-loaded images), no mean/std normalisation.
 * sharp's `fit: "contain"` does the pad and the resize in one step (resize the long side, then pad).
 * Captioners (loadProcessedRgb + packNormalized) follow their preprocessor_config.json as Hugging Face image
 * processors do: resize to the model size ignoring the aspect ratio (or shortest edge + centre crop), RGB,
 * x * rescale, (x - mean) / std, NCHW. sharp's kernels stand in for PIL's filters, so values are close to
 * transformers' but not bit-identical.
 */
import sharp from "sharp";
import { ImageLoadError } from "../dataset/image.ts";
import type { ImageProcessing } from "./captioner-config.ts";

export type TensorLayout = "NHWC" | "NCHW";
export type ChannelOrder = "bgr" | "rgb";

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };

/** Square RGB bytes (size x size x 3) of one picture, padded with white. */
export async function loadSquareRgb(path: string, size: number): Promise<Uint8Array> {
  return decodeRgb(path, size, size, (img) =>
    img.resize(size, size, { fit: "contain", background: WHITE, kernel: "cubic" }),
  );
}

/** RGB bytes (height x width x 3) of one picture as a captioner's preprocessor_config.json asks. */
export async function loadProcessedRgb(path: string, p: ImageProcessing): Promise<Uint8Array> {
  return decodeRgb(path, p.width, p.height, async (img) => {
    if (p.mode === "fill") return img.resize(p.width, p.height, { fit: "fill", kernel: p.kernel });
    // Shortest edge to `shortestEdge`, then the centre `width x height` (sharp's "cover" + centre position).
    const meta = await img.clone().metadata();
    const [w0, h0] = (meta.orientation ?? 1) >= 5 ? [meta.height, meta.width] : [meta.width, meta.height];
    const scale = p.shortestEdge! / Math.min(w0 ?? 1, h0 ?? 1);
    const w = Math.max(p.width, Math.round((w0 ?? 1) * scale));
    const h = Math.max(p.height, Math.round((h0 ?? 1) * scale));
    const resized = await img
      .resize(w, h, { fit: "fill", kernel: p.kernel })
      .raw()
      .toBuffer({ resolveWithObject: true });
    return sharp(resized.data, { raw: resized.info }).extract({
      left: Math.floor((w - p.width) / 2),
      top: Math.floor((h - p.height) / 2),
      width: p.width,
      height: p.height,
    });
  });
}

async function decodeRgb(
  path: string,
  width: number,
  height: number,
  resize: (img: sharp.Sharp) => sharp.Sharp | Promise<sharp.Sharp>,
): Promise<Uint8Array> {
  try {
    const base = sharp(path, { failOn: "error", limitInputPixels: 16384 * 16384 })
      .rotate()
      .flatten({ background: WHITE })
      .toColourspace("srgb");
    const { data, info } = await (await resize(base))
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (
      info.channels !== 3 ||
      info.width !== width ||
      info.height !== height ||
      data.length !== width * height * 3
    ) {
      throw new Error(
        `decoded to ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x3`,
      );
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  } catch (err) {
    const reason = (err as Error).message.split("\n")[0].replace(/^Input (file|buffer) /, "");
    throw new ImageLoadError(path, reason);
  }
}

/** NCHW float32 batch of RGB pictures: x * rescale, then (x - mean) / std per channel. */
export function packNormalized(images: readonly Uint8Array[], p: ImageProcessing): Float32Array {
  const plane = p.width * p.height;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((rgb, n) => {
    if (rgb.length !== plane * 3) throw new Error(`image ${n}: ${rgb.length} bytes, expected ${plane * 3}`);
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      const scale = p.rescale / p.std[c];
      const shift = p.mean[c] / p.std[c];
      for (let i = 0; i < plane; i++) out[base + i] = rgb[i * 3 + c] * scale - shift;
    }
  });
  return out;
}

/**
 * Packs square RGB pictures into one float32 batch tensor of `batch` slots (unused slots stay 0: models with a
 * fixed batch size get padded batches and the extra rows are ignored).
 */
export function packBatch(
  images: readonly Uint8Array[],
  size: number,
  batch: number,
  layout: TensorLayout,
  order: ChannelOrder,
): Float32Array {
  if (images.length > batch) throw new Error(`${images.length} images do not fit a batch of ${batch}`);
  const plane = size * size;
  const out = new Float32Array(batch * plane * 3);
  images.forEach((rgb, n) => {
    if (rgb.length !== plane * 3) throw new Error(`image ${n}: ${rgb.length} bytes, expected ${plane * 3}`);
    const base = n * plane * 3;
    for (let c = 0; c < 3; c++) {
      const src = order === "bgr" ? 2 - c : c;
      if (layout === "NHWC") for (let p = 0; p < plane; p++) out[base + p * 3 + c] = rgb[p * 3 + src];
      else for (let p = 0; p < plane; p++) out[base + c * plane + p] = rgb[p * 3 + src];
    }
  });
  return out;
}
