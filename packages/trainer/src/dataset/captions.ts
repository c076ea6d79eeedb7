/**
 * Captions: from metadata.csv (`filename,prompt`, the lora-scripts layout) or from sidecar files next to each
 * picture (caption_extension, default ".txt"). The result says which source each caption came from and which
 * pictures had none, because a trainer that silently looks for the wrong extension trains on empty captions.
 * Also the per-step caption processing (kohya's shuffle_caption / keep_tokens / caption_dropout_rate) and the
 * tag counts kohya stores as ss_tag_frequency.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, extname, join, relative } from "node:path";
import { parseCsv } from "./csv.ts";
import type { FoundImage } from "./discover.ts";
import type { Rng } from "./rng.ts";

export type CaptionSource = "metadata.csv" | "sidecar" | "none";

export interface CaptionResult {
  /** Image path -> caption ("" when missing). */
  captions: Map<string, string>;
  sources: Map<string, CaptionSource>;
  /** The CSV used, if any. */
  csvPath?: string;
  fromCsv: number;
  fromSidecar: number;
  captionExtension: string;
  missing: string[];
  /** CSV rows whose file name matched no image. */
  unmatchedCsvRows: string[];
  /** Other sidecar extensions found next to captionless images (hint: the extension is set wrong). */
  otherSidecarExtensions: string[];
}

export interface CaptionOptions {
  dataDir: string;
  /** Explicit metadata.csv; otherwise dataDir/metadata.csv is used if it exists. */
  metadataPath?: string;
  captionExtension: string;
}

const FILE_COLUMNS = ["filename", "file_name", "file", "image", "path"];
const TEXT_COLUMNS = ["prompt", "text", "caption", "tags"];

export async function loadCaptions(
  images: readonly FoundImage[],
  opts: CaptionOptions,
): Promise<CaptionResult> {
  const captions = new Map<string, string>();
  const sources = new Map<string, CaptionSource>();
  const csvPath =
    opts.metadataPath ??
    (existsSync(join(opts.dataDir, "metadata.csv")) ? join(opts.dataDir, "metadata.csv") : undefined);
  const unmatchedCsvRows: string[] = [];
  if (csvPath !== undefined) {
    const byKey = indexImages(images, dirname(csvPath));
    for (const [file, text] of await readMetadataCsv(csvPath)) {
      const image = byKey.get(normalizeKey(file));
      if (image === undefined) unmatchedCsvRows.push(file);
      else {
        captions.set(image.path, text.trim());
        sources.set(image.path, "metadata.csv");
      }
    }
  }
  const fromCsv = captions.size;
  let fromSidecar = 0;
  const missing: string[] = [];
  const otherExt = new Set<string>();
  for (const image of images) {
    if (sources.has(image.path)) continue;
    const stem = image.path.slice(0, image.path.length - extname(image.path).length);
    const sidecar = stem + opts.captionExtension;
    if (existsSync(sidecar)) {
      captions.set(image.path, (await readFile(sidecar, "utf8")).replace(/^\uFEFF/, "").trim());
      sources.set(image.path, "sidecar");
      fromSidecar++;
    } else {
      captions.set(image.path, "");
      sources.set(image.path, "none");
      missing.push(image.path);
      for (const ext of [".txt", ".caption", ".tags", ".cap"]) {
        if (ext !== opts.captionExtension && existsSync(stem + ext)) otherExt.add(ext);
      }
    }
  }
  return {
    captions,
    sources,
    csvPath,
    fromCsv,
    fromSidecar,
    captionExtension: opts.captionExtension,
    missing,
    unmatchedCsvRows,
    otherSidecarExtensions: [...otherExt],
  };
}

/** Rows of (file, caption). A first row naming the columns is recognised and skipped. */
export async function readMetadataCsv(path: string): Promise<[string, string][]> {
  const rows = parseCsv(await readFile(path, "utf8"), path);
  let fileCol = 0;
  let textCol = 1;
  if (rows.length > 0) {
    const header = rows[0].map((h) => h.trim().toLowerCase());
    const f = header.findIndex((h) => FILE_COLUMNS.includes(h));
    const t = header.findIndex((h) => TEXT_COLUMNS.includes(h));
    if (f >= 0 && t >= 0) {
      fileCol = f;
      textCol = t;
      rows.shift();
    }
  }
  return rows
    .filter((r) => r.length > fileCol && r[fileCol].trim() !== "")
    .map((r) => [r[fileCol].trim(), r[textCol] ?? ""]);
}

/** CSV file names may be relative to the CSV, to the data folder, or bare names; all three are indexed. */
function indexImages(images: readonly FoundImage[], csvDir: string): Map<string, FoundImage> {
  const out = new Map<string, FoundImage>();
  const bare = new Map<string, FoundImage | null>();
  for (const image of images) {
    out.set(normalizeKey(image.relPath), image);
    out.set(normalizeKey(relative(csvDir, image.path)), image);
    const b = normalizeKey(basename(image.path));
    bare.set(b, bare.has(b) ? null : image); // ambiguous bare names are not guessed
  }
  for (const [k, v] of bare) if (v !== null && !out.has(k)) out.set(k, v);
  return out;
}

function normalizeKey(p: string): string {
  return p.split("\\").join("/").replace(/^\.\//, "");
}

export interface CaptionProcessing {
  shuffleCaption: boolean;
  keepTokens: number;
  captionDropoutRate: number;
}

/**
 * The caption used for one training step, as kohya processes it: with probability caption_dropout_rate the
 * caption is dropped (""); with shuffle_caption the comma-separated tags after the first keep_tokens are
 * shuffled.
 */
export function processCaption(caption: string, opts: CaptionProcessing, rng: Rng): string {
  if (opts.captionDropoutRate > 0 && rng.next() < opts.captionDropoutRate) return "";
  if (!opts.shuffleCaption) return caption;
  const tags = caption
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  const fixed = tags.slice(0, opts.keepTokens);
  const rest = rng.shuffle(tags.slice(opts.keepTokens));
  return [...fixed, ...rest].join(", ");
}

/** kohya's ss_tag_frequency: per subset folder, how many captions contain each comma-separated tag. */
export function tagFrequency(
  images: readonly FoundImage[],
  captions: ReadonlyMap<string, string>,
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const image of images) {
    if (out[image.subset] === undefined) out[image.subset] = {};
    const freq = out[image.subset];
    for (const raw of (captions.get(image.path) ?? "").split(",")) {
      const tag = raw.trim();
      if (tag !== "") freq[tag] = (freq[tag] ?? 0) + 1;
    }
  }
  return out;
}

/**
 * Text-encoder outputs can be computed once per caption only when the text encoder is frozen and the caption
 * a step sees never changes (no shuffling, no dropout).
 */
export function textEmbeddingsCacheable(c: {
  train_text_encoder: boolean;
  shuffle_caption: boolean;
  caption_dropout_rate: number;
}): boolean {
  return !c.train_text_encoder && !c.shuffle_caption && c.caption_dropout_rate === 0;
}
