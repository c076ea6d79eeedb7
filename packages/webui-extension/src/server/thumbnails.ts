/**
 * Thumbnails for the Datasets grid and the Library cards: a dataset of 100 camera pictures (4000×3000, 5 MB each)
 * must not send half a gigabyte to the page, nor decode it there. `?thumb=N` on an image route answers a WebP
 * that fits in N×N, EXIF orientation applied (what the trainer sees), made once by sharp and kept on disk under
 * the service's data folder, keyed by the source's path, size and mtime, so an edited picture gets a new one.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Request, Response } from "express";
import sharp from "sharp";

/** Sizes the UI asks for; other values are refused so the cache cannot be filled with arbitrary variants. */
export const THUMB_SIZES = [128, 256, 384, 512] as const;

export class ThumbnailError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = "ThumbnailError";
  }
}

/** The `thumb` query value as a size, undefined for none; anything but an allowed size is a 400. */
export function thumbSize(req: Request): number | undefined {
  const raw = req.query.thumb;
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!(THUMB_SIZES as readonly number[]).includes(n)) {
    throw new ThumbnailError(`thumb must be one of ${THUMB_SIZES.join(", ")}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export class Thumbnails {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(readonly dir: string) {}

  /**
   * The thumbnail file for `source` at `size`, made if missing (concurrent requests share one make). Files are
   * named `<source key>-<version key>-<size>.webp`: making one for a new version of a picture removes the old
   * version's, so edited pictures do not leave thumbnails behind.
   */
  async file(source: string, size: number): Promise<string> {
    const st = await stat(source);
    const hash = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 20);
    const sourceKey = hash(source);
    const versionKey = hash(`${st.size}\0${st.mtimeMs}`);
    const path = join(this.dir, sourceKey.slice(0, 2), `${sourceKey}-${versionKey}-${size}.webp`);
    let job = this.inflight.get(path);
    if (!job) {
      job = this.make(source, size, path, `${sourceKey}-`, `${sourceKey}-${versionKey}-`).finally(() =>
        this.inflight.delete(path),
      );
      this.inflight.set(path, job);
    }
    return job;
  }

  private async make(
    source: string,
    size: number,
    path: string,
    sourcePrefix: string,
    versionPrefix: string,
  ): Promise<string> {
    if (
      await stat(path).then(
        () => true,
        () => false,
      )
    )
      return path;
    const folder = dirname(path);
    await mkdir(folder, { recursive: true });
    const data = await sharp(source, { animated: false })
      .rotate()
      .resize(size, size, { fit: "inside", withoutEnlargement: true })
      .webp({ quality: 82 })
      .toBuffer()
      .catch((e: Error) => {
        throw new ThumbnailError(`cannot read ${source} as an image: ${e.message}`, 422);
      });
    const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      await writeFile(tmp, data);
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
    for (const name of await readdir(folder)) {
      if (name.startsWith(sourcePrefix) && !name.startsWith(versionPrefix) && name.endsWith(".webp"))
        await rm(join(folder, name), { force: true });
    }
    return path;
  }

  /** Sends `source` itself, or its thumbnail when the request asks for one. */
  async send(req: Request, res: Response, source: string): Promise<void> {
    const size = thumbSize(req);
    if (size === undefined) {
      res.set("Cache-Control", "no-cache");
      res.sendFile(source, { dotfiles: "allow" });
      return;
    }
    const file = await this.file(source, size);
    // The URL does not change when the picture does, so the browser revalidates (ETag/Last-Modified).
    res.set("Cache-Control", "no-cache");
    res.type("image/webp").sendFile(file, { dotfiles: "allow" });
  }
}
