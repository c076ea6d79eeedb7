/**
 * Images out of the pipeline: float NHWC in [0, 1] -> 8-bit RGB -> PNG (sharp), plus PNG text chunks.
 *
 * sharp/libvips write no arbitrary PNG text chunks, so the `parameters` infotext is spliced in by hand right
 * after IHDR: a tEXt chunk when the text is Latin-1 (what PIL's PngInfo.add_text writes, and what the WebUI
 * reads), else an uncompressed iTXt chunk with UTF-8 text (PIL's fallback). CRC-32 from node:zlib.
 */
import { crc32 } from "node:zlib";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";

/**
 * One image of a float NHWC batch as 8-bit RGB. The WebUI converts with `(255 * x).astype(uint8)` on values
 * clamped to [0, 1], i.e. it truncates; we do the same so pixels match its PNGs.
 */
export function toRgb8(images: Float32Array, index: number, width: number, height: number): Uint8Array {
  const n = width * height * 3;
  const out = new Uint8Array(n);
  const base = index * n;
  for (let i = 0; i < n; i++) {
    const v = images[base + i];
    out[i] = Math.trunc(255 * Math.min(Math.max(v, 0), 1));
  }
  return out;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(Buffer.from(type, "latin1"))) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

const isLatin1 = (s: string) => [...s].every((c) => (c.codePointAt(0) ?? 0) <= 0xff);

/** A tEXt (Latin-1) or iTXt (UTF-8, uncompressed) chunk for keyword -> text. */
export function textChunk(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e]{1,79}$/.test(keyword))
    throw new Error(`invalid PNG text keyword ${JSON.stringify(keyword)}`);
  if (isLatin1(text))
    return chunk("tEXt", Buffer.concat([Buffer.from(`${keyword}\0`, "latin1"), Buffer.from(text, "latin1")]));
  // iTXt: keyword\0, compression flag 0, method 0, empty language tag\0, empty translated keyword\0, text.
  const head = Buffer.concat([Buffer.from(`${keyword}\0`, "latin1"), Buffer.from([0, 0, 0, 0])]);
  return chunk("iTXt", Buffer.concat([head, Buffer.from(text, "utf8")]));
}

/** Inserts text chunks after IHDR (the first chunk, 8 + 25 bytes into the file). */
export function withTextChunks(png: Buffer, texts: Record<string, string>): Buffer {
  const sig = png.subarray(0, 8);
  if (sig.toString("latin1") !== "\x89PNG\r\n\x1a\n" || png.toString("latin1", 12, 16) !== "IHDR")
    throw new Error("not a PNG stream starting with IHDR");
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  const extra = Object.entries(texts).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([png.subarray(0, ihdrEnd), ...extra, png.subarray(ihdrEnd)]);
}

/** PNG bytes of 8-bit RGB pixels, with optional text chunks (e.g. { parameters: infotext }). */
export async function encodePng(
  rgb: Uint8Array,
  width: number,
  height: number,
  texts: Record<string, string> = {},
): Promise<Buffer> {
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), {
    raw: { width, height, channels: 3 },
  })
    .png()
    .toBuffer();
  return withTextChunks(png, texts);
}

/** Writes a PNG atomically (temp file + rename). */
export async function writePng(
  path: string,
  rgb: Uint8Array,
  width: number,
  height: number,
  texts: Record<string, string> = {},
): Promise<void> {
  await atomicWriteFile(path, await encodePng(rgb, width, height, texts));
}
