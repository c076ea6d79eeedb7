/**
 * Where captions live, for reading the current text and writing new text: one metadata.csv (`filename,prompt`,
 * the lora-scripts layout) or sidecar files next to each picture (`<stem><caption extension>`).
 *
 * The CSV store keeps every row it does not change byte for byte (quoting, spacing, extra columns, line ends,
 * BOM): the file is split into raw records and only changed or new records are re-encoded. People keep such
 * files under version control and diffs should show only the captions that changed.
 * All writes are atomic (temp file + rename).
 */
import { readFile } from "node:fs/promises";
import { basename, dirname, extname, relative } from "node:path";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import { formatCsv, parseCsv } from "../dataset/csv.ts";
import type { FoundImage } from "../dataset/discover.ts";

export interface CaptionStore {
  readonly kind: "csv" | "sidecar";
  /** Stable key of the caption's location, relative to the dataset folder (manifest key). */
  locationKey(image: FoundImage): string;
  /** Human-readable location for messages. */
  describe(image: FoundImage): string;
  current(image: FoundImage): Promise<string | undefined>;
  /** Records a caption; sidecars are written at once, the CSV on flush(). */
  set(image: FoundImage, text: string): Promise<void>;
  flush(): Promise<void>;
}

const toSlash = (p: string) => p.split("\\").join("/");

export class SidecarStore implements CaptionStore {
  readonly kind = "sidecar";
  constructor(
    private readonly datasetDir: string,
    private readonly extension: string,
  ) {
    if (!extension.startsWith("."))
      throw new Error(`caption extension must start with ".", got "${extension}"`);
  }
  pathOf(image: FoundImage): string {
    return image.path.slice(0, image.path.length - extname(image.path).length) + this.extension;
  }
  locationKey(image: FoundImage): string {
    return toSlash(relative(this.datasetDir, this.pathOf(image)));
  }
  describe(image: FoundImage): string {
    return this.pathOf(image);
  }
  async current(image: FoundImage): Promise<string | undefined> {
    try {
      return await readFile(this.pathOf(image), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }
  async set(image: FoundImage, text: string): Promise<void> {
    await atomicWriteFile(this.pathOf(image), text);
  }
  async flush(): Promise<void> {}
}

interface RawRecord {
  /** The record's text without its line end; re-encoded when `fields` changed. */
  raw: string;
  end: string;
  fields: string[];
  changed: boolean;
}

// The same header names the trainer's caption reader recognises (dataset/captions.ts).
const FILE_COLUMNS = ["filename", "file_name", "file", "image", "path"];
const TEXT_COLUMNS = ["prompt", "text", "caption", "tags"];

export class CsvStore implements CaptionStore {
  readonly kind = "csv";
  private records: RawRecord[] = [];
  private bom = "";
  private eol = "\r\n";
  private fileCol = 0;
  private textCol = 1;
  private rowOf = new Map<string, number>();
  private dirty = false;

  private constructor(
    readonly csvPath: string,
    private readonly datasetDir: string,
  ) {}

  /** Reads the CSV if it exists (a new file gets a `filename,prompt` header) and matches rows to images. */
  static async open(csvPath: string, datasetDir: string, images: readonly FoundImage[]): Promise<CsvStore> {
    const store = new CsvStore(csvPath, datasetDir);
    let text: string | undefined;
    try {
      text = await readFile(csvPath, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (text === undefined) {
      store.records.push({
        raw: "filename,prompt",
        end: store.eol,
        fields: ["filename", "prompt"],
        changed: false,
      });
      store.dirty = true;
    } else store.load(text);
    store.matchImages(images);
    return store;
  }

  private load(text: string): void {
    if (text.startsWith("\uFEFF")) {
      this.bom = "\uFEFF";
      text = text.slice(1);
    }
    const firstEnd = /\r\n|\n|\r/.exec(text);
    if (firstEnd) this.eol = firstEnd[0];
    for (const { raw, end, line } of splitRecords(text)) {
      const rows = parseCsv(raw, `${this.csvPath}:${line}`);
      this.records.push({ raw, end, fields: rows[0] ?? [], changed: false });
    }
    const header = this.records[0]?.fields.map((h) => h.trim().toLowerCase()) ?? [];
    const f = header.findIndex((h) => FILE_COLUMNS.includes(h));
    const t = header.findIndex((h) => TEXT_COLUMNS.includes(h));
    if (f >= 0 && t >= 0) {
      this.fileCol = f;
      this.textCol = t;
    }
  }

  private hasHeader(): boolean {
    const h = this.records[0]?.fields.map((x) => x.trim().toLowerCase()) ?? [];
    return FILE_COLUMNS.includes(h[this.fileCol] ?? "") && TEXT_COLUMNS.includes(h[this.textCol] ?? "");
  }

  /** Rows name a file relative to the CSV, to the dataset folder, or by bare name (when unambiguous). */
  private matchImages(images: readonly FoundImage[]): void {
    const byKey = new Map<string, FoundImage>();
    const bare = new Map<string, FoundImage | null>();
    for (const image of images) {
      byKey.set(norm(image.relPath), image);
      byKey.set(norm(relative(dirname(this.csvPath), image.path)), image);
      const b = norm(basename(image.path));
      bare.set(b, bare.has(b) ? null : image);
    }
    for (const [k, v] of bare) if (v !== null && !byKey.has(k)) byKey.set(k, v);
    this.records.forEach((r, i) => {
      if (i === 0 && this.hasHeader()) return;
      const image = byKey.get(norm(r.fields[this.fileCol] ?? ""));
      // The trainer keeps the last row for a file, so that is the one read and rewritten.
      if (image) this.rowOf.set(image.path, i);
    });
  }

  locationKey(image: FoundImage): string {
    return `${toSlash(relative(this.datasetDir, this.csvPath))}#${image.relPath}`;
  }
  describe(image: FoundImage): string {
    return `${this.csvPath} (${image.relPath})`;
  }
  async current(image: FoundImage): Promise<string | undefined> {
    const i = this.rowOf.get(image.path);
    return i === undefined ? undefined : (this.records[i].fields[this.textCol] ?? "");
  }
  async set(image: FoundImage, text: string): Promise<void> {
    let i = this.rowOf.get(image.path);
    if (i === undefined) {
      const fields: string[] = [];
      fields[this.fileCol] = toSlash(relative(dirname(this.csvPath), image.path));
      const last = this.records[this.records.length - 1];
      if (last && last.end === "") last.end = this.eol;
      this.records.push({ raw: "", end: this.eol, fields, changed: true });
      i = this.records.length - 1;
      this.rowOf.set(image.path, i);
    }
    const r = this.records[i];
    for (let c = 0; c <= Math.max(this.textCol, this.fileCol); c++) r.fields[c] ??= "";
    r.fields[this.textCol] = text;
    r.changed = true;
    this.dirty = true;
  }
  async flush(): Promise<void> {
    if (!this.dirty) return;
    const body = this.records
      .map((r) => (r.changed ? formatCsv([r.fields]).replace(/\r\n$/, "") : r.raw) + r.end)
      .join("");
    await atomicWriteFile(this.csvPath, this.bom + body);
    this.dirty = false;
  }
}

function norm(p: string): string {
  return toSlash(p.trim()).replace(/^\.\//, "");
}

/**
 * Splits CSV text into records at line ends outside quotes, keeping each record's exact text and line end.
 * Blank lines are kept as records with no fields so they are written back as they were.
 */
export function splitRecords(text: string): { raw: string; end: string; line: number }[] {
  const out: { raw: string; end: string; line: number }[] = [];
  let start = 0;
  let inQuotes = false;
  let line = 1;
  let startLine = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"')
      inQuotes = !inQuotes; // a doubled quote toggles twice: still right
    else if ((c === "\n" || c === "\r") && !inQuotes) {
      const end = c === "\r" && text[i + 1] === "\n" ? "\r\n" : c;
      out.push({ raw: text.slice(start, i), end, line: startLine });
      i += end.length - 1;
      start = i + 1;
      line++;
      startLine = line;
    } else if (c === "\n") line++;
  }
  if (start < text.length) out.push({ raw: text.slice(start), end: "", line: startLine });
  return out;
}
