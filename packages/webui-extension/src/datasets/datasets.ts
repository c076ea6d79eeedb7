/**
 * Datasets of this service: one folder per dataset under `<dataDir>/datasets/`, images at its top level,
 * captions in `metadata.csv` when the folder has one (the trainer's format: a file column and a text
 * column), else in `.txt` sidecars. Uploads are validated by their header (image-header.ts) and written
 * atomically; caption edits too.
 */
import { mkdir, open, readdir, readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import { formatCsv, parseCsv } from "@lora-studio/trainer";
import { checkName, resolveInside } from "../library/safe-path.ts";
import { EXTENSION_OF, readImageHeader } from "./image-header.ts";

export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".bmp"];
const FILE_COLUMNS = ["filename", "file_name", "file", "image", "path"];
const TEXT_COLUMNS = ["prompt", "text", "caption", "tags"];

export class DatasetError extends Error {
  constructor(
    readonly status: 400 | 404 | 409 | 413 | 415,
    message: string,
  ) {
    super(message);
    this.name = "DatasetError";
  }
}

export interface DatasetImage {
  file: string;
  width: number | null;
  height: number | null;
  size: number;
  caption: string;
  captionSource: "metadata.csv" | "sidecar" | "none";
}

export interface UploadLimits {
  maxFileBytes: number;
  maxFiles: number;
  maxPixels: number;
}

export const DEFAULT_UPLOAD_LIMITS: UploadLimits = {
  maxFileBytes: 25 << 20,
  maxFiles: 500,
  maxPixels: 8192 * 8192,
};

/** The metadata.csv rows with the positions of the file and text columns (-1 when there is no header). */
async function readCsv(
  path: string,
): Promise<{ rows: string[][]; fileCol: number; textCol: number; header: boolean } | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return null;
  }
  const rows = parseCsv(text, path);
  const head = (rows[0] ?? []).map((h) => h.trim().toLowerCase());
  const f = head.findIndex((h) => FILE_COLUMNS.includes(h));
  const t = head.findIndex((h) => TEXT_COLUMNS.includes(h));
  if (f >= 0 && t >= 0) return { rows, fileCol: f, textCol: t, header: true };
  return { rows, fileCol: 0, textCol: 1, header: false };
}

export class Datasets {
  constructor(readonly root: string) {}

  async list(): Promise<Array<{ name: string; images: number }>> {
    await mkdir(this.root, { recursive: true });
    const out = [];
    for (const d of await readdir(this.root, { withFileTypes: true })) {
      if (!d.isDirectory() || d.name.startsWith(".")) continue;
      const files = await readdir(join(this.root, d.name));
      out.push({
        name: d.name,
        images: files.filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase())).length,
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async create(name: unknown): Promise<string> {
    const n = checkName(name, "dataset name");
    if (n.startsWith(".")) throw new DatasetError(400, "a dataset name cannot start with '.'");
    await mkdir(this.root, { recursive: true });
    const dir = await resolveInside(this.root, n, "dataset name");
    await mkdir(dir, { recursive: true });
    return n;
  }

  async folder(name: unknown): Promise<string> {
    const dir = await resolveInside(this.root, checkName(name, "dataset"), "dataset");
    const st = await stat(dir).catch(() => null);
    if (st === null || !st.isDirectory()) throw new DatasetError(404, `no dataset ${String(name)}`);
    return dir;
  }

  /** Absolute path of an image of a dataset (must exist and be an image by extension). */
  async image(name: unknown, file: unknown): Promise<string> {
    const dir = await this.folder(name);
    const f = checkName(file, "image file");
    if (!IMAGE_EXTENSIONS.includes(extname(f).toLowerCase()))
      throw new DatasetError(400, `${f} is not an image file name`);
    const abs = await resolveInside(dir, f, "image file");
    if ((await stat(abs).catch(() => null)) === null)
      throw new DatasetError(404, `no image ${f} in ${String(name)}`);
    return abs;
  }

  async images(name: unknown): Promise<DatasetImage[]> {
    const dir = await this.folder(name);
    const files = (await readdir(dir))
      .filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase()))
      .sort();
    const csv = await readCsv(join(dir, "metadata.csv"));
    const fromCsv = new Map<string, string>();
    if (csv !== null) {
      for (const r of csv.rows.slice(csv.header ? 1 : 0)) {
        const key = (r[csv.fileCol] ?? "").trim().replace(/^\.\//, "");
        if (key !== "") fromCsv.set(key, r[csv.textCol] ?? "");
      }
    }
    const names = new Set(await readdir(dir));
    const out: DatasetImage[] = [];
    for (const file of files) {
      const abs = join(dir, file);
      const st = await stat(abs);
      const head = Buffer.alloc(Math.min(st.size, 65536));
      const fh = await open(abs, "r");
      try {
        await fh.read(head, 0, head.length, 0);
      } finally {
        await fh.close();
      }
      const h = readImageHeader(head);
      const stem = file.slice(0, file.length - extname(file).length);
      let caption = "";
      let captionSource: DatasetImage["captionSource"] = "none";
      if (csv !== null) {
        if (fromCsv.has(file)) {
          caption = fromCsv.get(file) ?? "";
          captionSource = "metadata.csv";
        }
      } else if (names.has(`${stem}.txt`)) {
        caption = (await readFile(join(dir, `${stem}.txt`), "utf8")).trim();
        captionSource = "sidecar";
      }
      out.push({
        file,
        width: h?.width ?? null,
        height: h?.height ?? null,
        size: st.size,
        caption,
        captionSource,
      });
    }
    return out;
  }

  /** Writes a caption where the dataset keeps them: its metadata.csv row, else the `.txt` sidecar. */
  async setCaption(name: unknown, file: unknown, caption: unknown): Promise<"metadata.csv" | "sidecar"> {
    if (typeof caption !== "string") throw new DatasetError(400, "caption must be a string");
    if (caption.length > 10000) throw new DatasetError(400, "caption longer than 10000 characters");
    const abs = await this.image(name, file);
    const dir = await this.folder(name);
    const f = checkName(file);
    const csvPath = join(dir, "metadata.csv");
    const csv = await readCsv(csvPath);
    if (csv !== null) {
      const start = csv.header ? 1 : 0;
      const row = csv.rows.slice(start).find((r) => (r[csv.fileCol] ?? "").trim().replace(/^\.\//, "") === f);
      if (row !== undefined) {
        while (row.length <= csv.textCol) row.push("");
        row[csv.textCol] = caption;
      } else {
        const fresh = new Array<string>(Math.max(csv.fileCol, csv.textCol) + 1).fill("");
        fresh[csv.fileCol] = f;
        fresh[csv.textCol] = caption;
        csv.rows.push(fresh);
      }
      await atomicWriteFile(csvPath, formatCsv(csv.rows));
      return "metadata.csv";
    }
    const stem = abs.slice(0, abs.length - extname(abs).length);
    await atomicWriteFile(`${stem}.txt`, `${caption}\n`);
    return "sidecar";
  }

  /** Validates an uploaded image (header type matches the extension, size limits) and writes it atomically. */
  async saveUpload(
    name: unknown,
    fileName: unknown,
    data: Buffer,
    limits: UploadLimits,
  ): Promise<DatasetImage> {
    const dir = await this.folder(name);
    const f = checkName(fileName, "uploaded file name");
    const ext = extname(f).toLowerCase();
    if (!IMAGE_EXTENSIONS.includes(ext)) {
      throw new DatasetError(415, `${f}: only ${IMAGE_EXTENSIONS.join(", ")} images are accepted`);
    }
    const h = readImageHeader(data);
    if (h === null) throw new DatasetError(415, `${f}: not a readable PNG, JPEG, WebP or BMP image`);
    if (!EXTENSION_OF[h.type].includes(ext))
      throw new DatasetError(415, `${f}: the file is a ${h.type} image, not ${ext}`);
    if (h.width * h.height > limits.maxPixels) {
      throw new DatasetError(413, `${f}: ${h.width}x${h.height} is more than ${limits.maxPixels} pixels`);
    }
    const abs = await resolveInside(dir, f, "uploaded file name");
    await atomicWriteFile(abs, data);
    return {
      file: f,
      width: h.width,
      height: h.height,
      size: data.length,
      caption: "",
      captionSource: "none",
    };
  }
}
