/**
 * What auto-label wrote, so it never overwrites a caption a person edited: `.lora-studio/autolabel.json` in the
 * dataset folder maps each caption location to the SHA-256 of the text auto-label wrote there. A caption whose
 * current text has that hash is auto-label's own and may be replaced; any other non-empty caption (edited
 * since, or never written by auto-label) is a person's and is kept unless --overwrite.
 *
 * Captions are written before the manifest: a crash in between leaves captions the manifest does not know,
 * which then count as a person's (kept) — the safe side.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { atomicWriteFile } from "@lora-studio/prompt-lora";

export const MANIFEST_RELATIVE_PATH = ".lora-studio/autolabel.json";

export interface ManifestEntry {
  sha256: string;
  /** Which model wrote it, e.g. "wd14-tagger:wd-vit-tagger-v3". */
  source: string;
  writtenAt: string;
}

export interface Manifest {
  version: 1;
  captions: Record<string, ManifestEntry>;
}

export class ManifestError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "ManifestError";
  }
}

/** Captions are compared as the trainer reads them: BOM and surrounding white space do not count. */
export function normalizeCaption(text: string): string {
  return text.replace(/^\uFEFF/, "").trim();
}

export function captionHash(text: string): string {
  return createHash("sha256").update(normalizeCaption(text), "utf8").digest("hex");
}

export function manifestPath(datasetDir: string): string {
  return join(datasetDir, MANIFEST_RELATIVE_PATH);
}

export async function readManifest(datasetDir: string): Promise<Manifest> {
  const path = manifestPath(datasetDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, captions: {} };
    throw new ManifestError(path, `cannot read (${(e as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(
      path,
      `not valid JSON (${(e as Error).message}); delete it to treat every caption as hand-written`,
    );
  }
  const m = parsed as Partial<Manifest>;
  if (m?.version !== 1 || typeof m.captions !== "object" || m.captions === null) {
    throw new ManifestError(path, 'expected {"version": 1, "captions": {...}}');
  }
  for (const [key, entry] of Object.entries(m.captions)) {
    if (typeof entry?.sha256 !== "string")
      throw new ManifestError(path, `captions["${key}"].sha256 is missing`);
  }
  return m as Manifest;
}

export async function writeManifest(datasetDir: string, manifest: Manifest): Promise<void> {
  const path = manifestPath(datasetDir);
  await mkdir(dirname(path), { recursive: true });
  await atomicWriteFile(path, `${JSON.stringify(manifest, null, 2)}\n`);
}

export type CaptionState =
  /** No caption, or an empty one: nothing a person wrote can be lost. */
  | "missing"
  /** The text auto-label wrote, unchanged since. */
  | "auto"
  /** Edited since auto-label wrote it, or never written by auto-label. */
  | "human";

export function captionState(current: string | undefined, entry: ManifestEntry | undefined): CaptionState {
  if (current === undefined || normalizeCaption(current) === "") return "missing";
  return entry !== undefined && entry.sha256 === captionHash(current) ? "auto" : "human";
}
