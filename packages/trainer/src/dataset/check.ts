/**
 * `pnpm dataset check DIR`: the data-quality advice of the LoRA guides, measured. Flags images under the
 * training resolution (they get upscaled), blurry ones (low Laplacian variance), near-duplicates (pHash
 * Hamming distance), extreme aspect ratios, and captions that are missing, empty, very short or identical to
 * another image's. Returns one row per image and writes a contact sheet PNG with flagged images outlined in red.
 */
import { basename, dirname, join } from "node:path";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { type CaptionSource, loadCaptions } from "./captions.ts";
import { discoverImages } from "./discover.ts";
import { ImageLoadError, probeImage } from "./image.ts";
import { hammingDistance, measureImage } from "./quality.ts";

export type CheckFlagKind =
  | "unreadable"
  | "under-resolution"
  | "blurry"
  | "near-duplicate"
  | "extreme-aspect"
  | "caption-missing"
  | "caption-empty"
  | "caption-short"
  | "caption-identical";

export interface CheckFlag {
  kind: CheckFlagKind;
  detail: string;
}

export interface CheckRow {
  path: string;
  relPath: string;
  width?: number;
  height?: number;
  sharpness?: number;
  /** pHash as 16 hex digits. */
  phash?: string;
  caption: string;
  captionSource: CaptionSource;
  flags: CheckFlag[];
}

export interface CheckOptions {
  /** Training resolution (longer side of the square); images with fewer pixels than its square are flagged. */
  resolution?: number;
  captionExtension?: string;
  metadataPath?: string;
  blurThreshold?: number;
  duplicateMaxDistance?: number;
  maxAspectRatio?: number;
  minCaptionWords?: number;
  /** Where to write the contact sheet; default: next to the folder, "<folder>-contact-sheet.png". null: none. */
  contactSheetPath?: string | null;
}

export interface CheckResult {
  rows: CheckRow[];
  contactSheetPath: string | null;
}

export async function datasetCheck(dir: string, options: CheckOptions = {}): Promise<CheckResult> {
  const o = {
    resolution: 512,
    captionExtension: ".txt",
    blurThreshold: 100,
    duplicateMaxDistance: 10,
    maxAspectRatio: 2.5,
    minCaptionWords: 3,
    ...options,
  };
  const found = await discoverImages(dir, 1);
  const captions = await loadCaptions(found.images, {
    dataDir: dir,
    metadataPath: o.metadataPath,
    captionExtension: o.captionExtension,
  });
  const rows: CheckRow[] = [];
  const hashes: (bigint | null)[] = [];
  for (const img of found.images) {
    const row: CheckRow = {
      path: img.path,
      relPath: img.relPath,
      caption: captions.captions.get(img.path) ?? "",
      captionSource: captions.sources.get(img.path) ?? "none",
      flags: [],
    };
    rows.push(row);
    try {
      const info = await probeImage(img.path);
      row.width = info.width;
      row.height = info.height;
      const measured = await measureImage(img.path);
      row.sharpness = measured.sharpness;
      row.phash = measured.phash.toString(16).padStart(16, "0");
      hashes.push(measured.phash);
    } catch (err) {
      row.flags.push({
        kind: "unreadable",
        detail: err instanceof ImageLoadError ? err.reason : String(err),
      });
      hashes.push(null);
      continue;
    }
    const w = row.width!;
    const h = row.height!;
    if (w * h < o.resolution * o.resolution) {
      row.flags.push({
        kind: "under-resolution",
        detail: `${w}x${h} has fewer pixels than ${o.resolution}x${o.resolution}; it will be upscaled`,
      });
    }
    if (row.sharpness! < o.blurThreshold) {
      row.flags.push({
        kind: "blurry",
        detail: `Laplacian variance ${row.sharpness!.toFixed(1)} < ${o.blurThreshold}`,
      });
    }
    const aspect = Math.max(w / h, h / w);
    if (aspect > o.maxAspectRatio) {
      row.flags.push({
        kind: "extreme-aspect",
        detail: `aspect ratio ${aspect.toFixed(2)}:1 > ${o.maxAspectRatio}:1; most of it is cropped or squeezed`,
      });
    }
  }
  flagDuplicates(rows, hashes, o.duplicateMaxDistance);
  flagCaptions(rows, o.minCaptionWords);
  const sheet =
    o.contactSheetPath === null
      ? null
      : (o.contactSheetPath ?? join(dirname(dir), `${basename(dir)}-contact-sheet.png`));
  if (sheet !== null && rows.length > 0) await writeContactSheet(rows, sheet);
  return { rows, contactSheetPath: sheet };
}

function flagDuplicates(rows: CheckRow[], hashes: (bigint | null)[], maxDistance: number) {
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      const a = hashes[i];
      const b = hashes[j];
      if (a === null || b === null) continue;
      const d = hammingDistance(a, b);
      if (d <= maxDistance) {
        rows[i].flags.push({
          kind: "near-duplicate",
          detail: `of ${rows[j].relPath} (pHash distance ${d}/64)`,
        });
        rows[j].flags.push({
          kind: "near-duplicate",
          detail: `of ${rows[i].relPath} (pHash distance ${d}/64)`,
        });
      }
    }
  }
}

function flagCaptions(rows: CheckRow[], minWords: number) {
  const byText = new Map<string, CheckRow[]>();
  for (const row of rows) {
    if (row.captionSource === "none") {
      row.flags.push({ kind: "caption-missing", detail: "no caption file or metadata.csv row" });
      continue;
    }
    const text = row.caption.trim();
    if (text === "") {
      row.flags.push({ kind: "caption-empty", detail: "the caption is empty" });
      continue;
    }
    const words = text.split(/[\s,]+/).filter((t) => t !== "").length;
    if (words < minWords) row.flags.push({ kind: "caption-short", detail: `${words} word(s)` });
    const key = text.toLowerCase();
    byText.set(key, [...(byText.get(key) ?? []), row]);
  }
  for (const group of byText.values()) {
    if (group.length < 2) continue;
    for (const row of group) {
      row.flags.push({
        kind: "caption-identical",
        detail: `same caption as ${group.length - 1} other image(s)`,
      });
    }
  }
}

/** A plain-text table: one line per image with its flags. */
export function formatCheckTable(result: CheckResult): string {
  const lines = ["image | size | sharpness | flags"];
  for (const r of result.rows) {
    const size = r.width === undefined ? "-" : `${r.width}x${r.height}`;
    const sharp = r.sharpness === undefined ? "-" : r.sharpness.toFixed(0);
    const flags = r.flags.length === 0 ? "ok" : r.flags.map((f) => `${f.kind}: ${f.detail}`).join("; ");
    lines.push(`${r.relPath} | ${size} | ${sharp} | ${flags}`);
  }
  const flagged = result.rows.filter((r) => r.flags.length > 0).length;
  lines.push(`${result.rows.length} images, ${flagged} flagged`);
  if (result.contactSheetPath !== null) lines.push(`contact sheet: ${result.contactSheetPath}`);
  return lines.join("\n");
}

const THUMB = 160;
const BORDER = 6;
const COLUMNS = 8;

/** Thumbnails in a grid, each numbered; flagged ones get a red frame, unreadable ones a grey tile. */
async function writeContactSheet(rows: CheckRow[], path: string): Promise<void> {
  const cell = THUMB + 2 * BORDER;
  const cols = Math.min(COLUMNS, rows.length);
  const gridRows = Math.ceil(rows.length / cols);
  const composites: sharp.OverlayOptions[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    const left = (i % cols) * cell;
    const top = Math.floor(i / cols) * cell;
    if (row.flags.length > 0) {
      composites.push({ input: solid(cell, cell, "#e01010"), left, top });
    }
    let thumb: Buffer;
    try {
      if (row.flags.some((f) => f.kind === "unreadable")) throw new Error("unreadable");
      thumb = await sharp(row.path)
        .rotate()
        .flatten({ background: "#ffffff" })
        .resize(THUMB, THUMB, { fit: "contain", background: "#ffffff" })
        .png()
        .toBuffer();
    } catch {
      thumb = await sharp(solid(THUMB, THUMB, "#999999"))
        .png()
        .toBuffer();
    }
    composites.push({ input: thumb, left: left + BORDER, top: top + BORDER });
    composites.push({ input: label(String(i + 1)), left: left + BORDER, top: top + BORDER });
  }
  const png = await sharp({
    create: { width: cols * cell, height: gridRows * cell, channels: 3, background: "#ffffff" },
  })
    .composite(composites)
    .png()
    .toBuffer();
  await atomicWriteFile(path, png);
}

function solid(width: number, height: number, color: string): Buffer {
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="${color}"/></svg>`,
  );
}

function label(text: string): Buffer {
  const w = 12 + 9 * text.length;
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="20"><rect width="100%" height="100%" fill="#000" fill-opacity="0.6"/>` +
      `<text x="5" y="15" font-family="sans-serif" font-size="14" fill="#fff">${text}</text></svg>`,
  );
}
