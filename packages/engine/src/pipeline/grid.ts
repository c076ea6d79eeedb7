/**
 * A grid PNG of sample images with a caption under each (the trainer writes one per save). Composited with
 * sharp: a white canvas, the images as raw RGB overlays, each caption as a small SVG text overlay (rendered by
 * libvips' librsvg; wrapped to the cell width by an estimate of the glyph width, at most `captionLines` lines).
 */

import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { withTextChunks } from "./png.ts";

export interface GridCell {
  /** 8-bit RGB, width x height x 3. */
  rgb: Uint8Array;
  width: number;
  height: number;
  caption?: string;
}

export interface GridOptions {
  /** Columns (default: ceil(sqrt(n))). */
  columns?: number;
  /** Space between cells and around the grid, px (default 4). */
  gap?: number;
  fontSize?: number;
  /** Lines of caption kept per cell (default 3); longer captions end with "...". */
  captionLines?: number;
  /** Text chunks for the PNG (e.g. the prompts). */
  texts?: Record<string, string>;
}

const escapeXml = (s: string) =>
  s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c,
  );

/** Greedy word wrap to `perLine` characters, at most `maxLines` lines. */
export function wrapCaption(text: string, perLine: number, maxLines: number): string[] {
  const lines: string[] = [];
  let cur = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = cur ? `${cur} ${word}` : word;
    if (next.length <= perLine || !cur) cur = next;
    else {
      lines.push(cur);
      cur = word;
    }
  }
  if (cur) lines.push(cur);
  const kept = lines
    .slice(0, maxLines)
    .map((l) => (l.length > perLine ? `${l.slice(0, Math.max(1, perLine - 3))}...` : l));
  if (lines.length > maxLines)
    kept[maxLines - 1] = `${kept[maxLines - 1].slice(0, Math.max(1, perLine - 3))}...`;
  return kept;
}

/** The grid as PNG bytes. Cells may differ in size; each row/column takes its largest cell. */
export async function composeGrid(cells: GridCell[], o: GridOptions = {}): Promise<Buffer> {
  if (cells.length === 0) throw new Error("composeGrid: no images");
  const cols = Math.max(1, Math.min(cells.length, o.columns ?? Math.ceil(Math.sqrt(cells.length))));
  const rows = Math.ceil(cells.length / cols);
  const gap = o.gap ?? 4;
  const font = o.fontSize ?? 12;
  const lineH = Math.ceil(font * 1.3);
  const maxLines = o.captionLines ?? 3;
  const colW = Array.from({ length: cols }, (_, c) =>
    Math.max(...cells.filter((_, i) => i % cols === c).map((x) => x.width)),
  );
  const hasCaption = cells.some((c) => c.caption);
  const captionH = hasCaption ? maxLines * lineH + 4 : 0;
  const rowH = Array.from(
    { length: rows },
    (_, r) => Math.max(...cells.slice(r * cols, (r + 1) * cols).map((x) => x.height)) + captionH,
  );
  const width = gap + colW.reduce((a, b) => a + b + gap, 0);
  const height = gap + rowH.reduce((a, b) => a + b + gap, 0);
  const layers: sharp.OverlayOptions[] = [];
  cells.forEach((cell, i) => {
    const c = i % cols;
    const r = Math.floor(i / cols);
    const left = gap + colW.slice(0, c).reduce((a, b) => a + b + gap, 0);
    const top = gap + rowH.slice(0, r).reduce((a, b) => a + b + gap, 0);
    layers.push({
      input: Buffer.from(cell.rgb.buffer, cell.rgb.byteOffset, cell.rgb.byteLength),
      raw: { width: cell.width, height: cell.height, channels: 3 },
      left,
      top,
    });
    if (cell.caption) {
      const perLine = Math.max(4, Math.floor(colW[c] / (font * 0.6)));
      const lines = wrapCaption(cell.caption, perLine, maxLines);
      const tspans = lines
        .map(
          (l, k) =>
            `<text x="0" y="${(k + 1) * lineH - 3}" font-family="sans-serif" font-size="${font}" fill="#000">${escapeXml(l)}</text>`,
        )
        .join("");
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${colW[c]}" height="${captionH}">${tspans}</svg>`;
      layers.push({ input: Buffer.from(svg), left, top: top + cell.height + 2 });
    }
  });
  // sharp composites last in its pipeline and the SVG layers add an alpha channel: flatten in a second pass.
  const composed = await sharp({
    create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } },
  })
    .composite(layers)
    .png()
    .toBuffer();
  const png = await sharp(composed).removeAlpha().png().toBuffer();
  return o.texts ? withTextChunks(png, o.texts) : png;
}

export async function writeGrid(path: string, cells: GridCell[], o: GridOptions = {}): Promise<void> {
  await atomicWriteFile(path, await composeGrid(cells, o));
}
