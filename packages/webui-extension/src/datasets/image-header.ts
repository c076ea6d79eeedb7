/**
 * Image type and size from the first bytes of a file (PNG IHDR, JPEG SOFn, WebP VP8/VP8L/VP8X, BMP
 * BITMAPINFOHEADER), so an upload is validated without decoding pixels. Written by hand because sharp (the
 * trainer's decoder) is not a dependency of this package yet; once it is, uploads should also be decoded
 * fully with sharp, which catches corrupt pixel data that a valid header can hide.
 */

export type ImageType = "png" | "jpeg" | "webp" | "bmp";

export interface ImageHeader {
  type: ImageType;
  width: number;
  height: number;
}

export const EXTENSION_OF: Record<ImageType, string[]> = {
  png: [".png"],
  jpeg: [".jpg", ".jpeg"],
  webp: [".webp"],
  bmp: [".bmp"],
};

function png(b: Buffer): ImageHeader | null {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length < 24 || !sig.every((v, i) => b[i] === v)) return null;
  if (b.toString("latin1", 12, 16) !== "IHDR") return null;
  return { type: "png", width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

function jpeg(b: Buffer): ImageHeader | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { type: "jpeg", height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
    }
    if (marker === 0xd9 || marker === 0xda) return null;
    i += 2 + b.readUInt16BE(i + 2);
  }
  return null;
}

function webp(b: Buffer): ImageHeader | null {
  if (b.length < 30 || b.toString("latin1", 0, 4) !== "RIFF" || b.toString("latin1", 8, 12) !== "WEBP")
    return null;
  const chunk = b.toString("latin1", 12, 16);
  if (chunk === "VP8 ") {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return { type: "webp", width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  }
  if (chunk === "VP8L") {
    if (b[20] !== 0x2f) return null;
    const bits = b.readUInt32LE(21);
    return { type: "webp", width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (chunk === "VP8X") {
    return { type: "webp", width: b.readUIntLE(24, 3) + 1, height: b.readUIntLE(27, 3) + 1 };
  }
  return null;
}

function bmp(b: Buffer): ImageHeader | null {
  if (b.length < 26 || b[0] !== 0x42 || b[1] !== 0x4d) return null;
  if (b.readUInt32LE(14) < 40) return null;
  return { type: "bmp", width: Math.abs(b.readInt32LE(18)), height: Math.abs(b.readInt32LE(22)) };
}

/** The header of an image in `head` (the first bytes of the file; 64 KiB covers JPEG's EXIF before SOF). */
export function readImageHeader(head: Buffer): ImageHeader | null {
  const h = png(head) ?? jpeg(head) ?? webp(head) ?? bmp(head);
  if (h === null || h.width < 1 || h.height < 1) return null;
  return h;
}
