/**
 * Decoding training images with sharp (libvips):
 *  - EXIF orientation is applied (.rotate() with no angle), so a portrait photo stored sideways with
 *    orientation 6 trains upright and its width/height are the displayed ones;
 *  - any colour space (CMYK, greyscale, 16-bit, palette) is converted to 8-bit sRGB RGB;
 *  - alpha is composited over white: transparent pixels hold arbitrary (often black) colour that the model
 *    would otherwise learn as content, and white is how image viewers and the WebUI galleries show them;
 *  - resize to cover the bucket (Lanczos3) and center crop, as the bucket assignment says.
 * Errors are typed (ImageLoadError) with the file and the decoder's reason, so callers can list and skip.
 */
import sharp from "sharp";
import type { BucketAssignment } from "./buckets.ts";

export class ImageLoadError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = "ImageLoadError";
  }
}

export interface ImageInfo {
  /** Displayed size, after EXIF orientation. */
  width: number;
  height: number;
  format: string;
  /** libvips interpretation before conversion: "srgb", "cmyk", "b-w", ... */
  space: string;
  hasAlpha: boolean;
  /** EXIF orientation tag (1 when absent). */
  orientation: number;
}

/** A decoded RGB image, 3 bytes per pixel, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Pixel count above which libvips refuses to decode (it guards against decompression bombs). */
const LIMIT_INPUT_PIXELS = 16384 * 16384;

function open(path: string | Buffer) {
  return sharp(path, { failOn: "error", limitInputPixels: LIMIT_INPUT_PIXELS });
}

/**
 * Reads the header and proves the pixels decode (a tiny shrink-on-load decode, cheap even for big JPEGs), so
 * truncated files are caught at planning time, not in the middle of training.
 */
export async function probeImage(path: string): Promise<ImageInfo> {
  try {
    const img = open(path);
    const meta = await img.metadata();
    if (!meta.width || !meta.height) throw new Error("no image size in the file");
    await open(path).rotate().resize(8, 8, { fit: "fill" }).raw().toBuffer();
    const orientation = meta.orientation ?? 1;
    const swap = orientation >= 5 && orientation <= 8;
    return {
      width: swap ? meta.height : meta.width,
      height: swap ? meta.width : meta.height,
      format: meta.format ?? "unknown",
      space: meta.space ?? "unknown",
      hasAlpha: meta.hasAlpha ?? false,
      orientation,
    };
  } catch (err) {
    throw new ImageLoadError(path, cleanReason(err));
  }
}

/** Decodes to sRGB RGB (orientation applied, alpha over white), at the image's own size. */
export async function loadRgb(path: string): Promise<RgbImage> {
  try {
    const { data, info } = await toRgb(open(path).rotate()).raw().toBuffer({ resolveWithObject: true });
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
    };
  } catch (err) {
    throw new ImageLoadError(path, cleanReason(err));
  }
}

/** Decodes, resizes to cover the bucket and center-crops: the pixels one training sample sees. */
export async function loadBucketed(path: string, a: BucketAssignment): Promise<RgbImage> {
  try {
    const { data, info } = await toRgb(open(path).rotate())
      .resize(a.resized[0], a.resized[1], { fit: "fill", kernel: "lanczos3" })
      .extract(a.crop)
      .raw()
      .toBuffer({ resolveWithObject: true });
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
    };
  } catch (err) {
    throw new ImageLoadError(path, cleanReason(err));
  }
}

function toRgb(img: sharp.Sharp): sharp.Sharp {
  return img.flatten({ background: "#ffffff" }).toColourspace("srgb").removeAlpha();
}

/**
 * RGB bytes to the float32 CHW tensor the VAE encoder takes: [3, H, W], value/127.5 - 1 in [-1, 1].
 * With flip, columns are mirrored (horizontal flip augmentation).
 */
export function toTensorCHW(img: RgbImage, flip = false): Float32Array {
  const { data, width, height } = img;
  if (data.length !== width * height * 3) {
    throw new Error(`expected ${width * height * 3} RGB bytes for ${width}x${height}, got ${data.length}`);
  }
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const src = (y * width + (flip ? width - 1 - x : x)) * 3;
      const dst = y * width + x;
      out[dst] = data[src] / 127.5 - 1;
      out[plane + dst] = data[src + 1] / 127.5 - 1;
      out[2 * plane + dst] = data[src + 2] / 127.5 - 1;
    }
  }
  return out;
}

function cleanReason(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/ENOENT/.test(msg)) return "file not found";
  if (/EACCES|EPERM/.test(msg)) return "permission denied";
  if (/unsupported image format/i.test(msg))
    return "not an image sharp can decode (unknown or corrupt format)";
  return msg.split("\n")[0].trim() || "unreadable image";
}
