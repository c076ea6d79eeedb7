/**
 * Image preparation for WD14-style taggers, as SmilingWolf's reference app and the WebUI tagger extensions do
 * it: decode (EXIF orientation applied, alpha composited over white, any colour space to sRGB), pad to a
 * square with white keeping the picture centred, resize to the model's size (bicubic), then hand the model raw
 * 0-255 values in BGR order (the models were trained on OpenCV-loaded images), no mean/std normalisation.
 * sharp's `fit: "contain"` does the pad and the resize in one step (resize the long side, then pad).
 */
import sharp from "sharp";
import { ImageLoadError } from "../dataset/image.ts";

export type TensorLayout = "NHWC" | "NCHW";
export type ChannelOrder = "bgr" | "rgb";

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };

/** Square RGB bytes (size x size x 3) of one picture, padded with white. */
export async function loadSquareRgb(path: string, size: number): Promise<Uint8Array> {
  try {
    const { data, info } = await sharp(path, { failOn: "error", limitInputPixels: 16384 * 16384 })
      .rotate()
      .flatten({ background: WHITE })
      .toColourspace("srgb")
      .resize(size, size, { fit: "contain", background: WHITE, kernel: "cubic" })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (
      info.channels !== 3 ||
      info.width !== size ||
      info.height !== size ||
      data.length !== size * size * 3
    ) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  } catch (err) {
    const reason = (err as Error).message.split("\n")[0].replace(/^Input (file|buffer) /, "");
    throw new ImageLoadError(path, reason);
  }
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
