/**
 * Writes a synthetic demo dataset: `count` PNG pictures rendered from the SVG scenes by sharp (librsvg), plus a
 * metadata.csv (`filename,prompt`, the trainer's own CSV writer). Picture i is drawn from a generator seeded by
 * (seed, i), so the files are byte-identical for the same seed and count, and a dataset of N pictures is the
 * first N of a larger one.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { formatCsv } from "../dataset/csv.ts";
import { deriveSeed, Rng } from "../dataset/rng.ts";
import { genericScene, inkwashScene, type Scene } from "./scenes.ts";

export type DemoDatasetKind = "generic" | "inkwash";

export interface DemoDatasetOptions {
  kind: DemoDatasetKind;
  count: number;
  seed: number;
  /** Picture side in pixels (default 64). */
  size?: number;
}

export interface DemoPicture {
  file: string;
  caption: string;
}

/** The scene of picture `index` (pure: same arguments, same SVG and caption). */
export function demoScene(kind: DemoDatasetKind, seed: number, index: number, size = 64): Scene {
  const rng = new Rng(deriveSeed(seed, index, kind === "generic" ? 1 : 2));
  return kind === "generic" ? genericScene(rng, size) : inkwashScene(rng, size);
}

/** Renders an SVG to an sRGB PNG without alpha; PNG settings fixed so the bytes do not depend on defaults. */
export async function renderPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 72 })
    .removeAlpha()
    .png({ compressionLevel: 9, adaptiveFiltering: false, palette: false })
    .toBuffer();
}

/** Writes the pictures and metadata.csv into `dir` (created if missing); returns the list in file order. */
export async function writeDemoDataset(dir: string, o: DemoDatasetOptions): Promise<DemoPicture[]> {
  await mkdir(dir, { recursive: true });
  const width = String(o.count - 1).length;
  const pictures: DemoPicture[] = [];
  for (let i = 0; i < o.count; i++) {
    const scene = demoScene(o.kind, o.seed, i, o.size);
    const file = `${o.kind}_${String(i).padStart(width, "0")}.png`;
    await atomicWriteFile(join(dir, file), await renderPng(scene.svg));
    pictures.push({ file, caption: scene.caption });
  }
  const rows = [["filename", "prompt"], ...pictures.map((p) => [p.file, p.caption])];
  await atomicWriteFile(join(dir, "metadata.csv"), formatCsv(rows));
  return pictures;
}

/** A PNG (any sharp input) as float32 CHW in [-1, 1], the VAE's input range. */
export async function pngToTensor(
  png: Buffer | string,
): Promise<{ data: Float32Array; width: number; height: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { width, height } = info;
  const out = new Float32Array(3 * width * height);
  for (let i = 0; i < width * height; i++)
    for (let c = 0; c < 3; c++) out[c * width * height + i] = data[i * 3 + c] / 127.5 - 1;
  return { data: out, width, height };
}
