/**
 * Finds the training images. Two layouts, as kohya and the tutorials use them:
 *  - kohya repeat folders: train_data_dir/10_mystyle/*.png -> each picture seen 10 times per epoch;
 *  - a flat folder: train_data_dir/*.png -> `repeats` from the config.
 * Both can be mixed. Subfolders not named N_name are listed as skipped (kohya ignores them too), and so are
 * files whose extension is an image type we do not decode. Order is by path, so runs are reproducible.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, extname, join, relative } from "node:path";

export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".bmp"];

export interface FoundImage {
  path: string;
  /** Path relative to train_data_dir, with "/" separators (used for messages and metadata.csv lookups). */
  relPath: string;
  /** The subset the image belongs to: the repeat folder's name, or the data folder's own name. */
  subset: string;
  repeats: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface Discovery {
  images: FoundImage[];
  skipped: SkippedFile[];
  /** Per subset: repeats and image count (kohya's ss_dataset_dirs). */
  subsets: { name: string; repeats: number; imageCount: number }[];
}

const REPEAT_FOLDER = /^(\d+)_(.+)$/;

export async function discoverImages(dir: string, defaultRepeats: number): Promise<Discovery> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const images: FoundImage[] = [];
  const skipped: SkippedFile[] = [];
  const subsets: Discovery["subsets"] = [];
  const addFiles = async (folder: string, subset: string, repeats: number, files: string[]) => {
    let count = 0;
    for (const name of files) {
      const path = join(folder, name);
      if (IMAGE_EXTENSIONS.includes(extname(name).toLowerCase())) {
        images.push({ path, relPath: relative(dir, path).split("\\").join("/"), subset, repeats });
        count++;
      } else if (/\.(gif|tiff?|heic|avif|jxl|psd)$/i.test(name)) {
        skipped.push({ path, reason: `unsupported image type ${extname(name)} (use png, jpg, webp or bmp)` });
      }
    }
    if (count > 0) subsets.push({ name: subset, repeats, imageCount: count });
  };

  // Symbolic links are followed (people link picture folders in rather than copy them).
  const kind = async (name: string, isFile: boolean, isDir: boolean, isLink: boolean) => {
    if (!isLink) return isFile ? "file" : isDir ? "dir" : "other";
    const s = await stat(join(dir, name)).catch(() => null);
    return s?.isFile() ? "file" : s?.isDirectory() ? "dir" : "other";
  };
  const kinds = await Promise.all(
    entries.map((e) => kind(e.name, e.isFile(), e.isDirectory(), e.isSymbolicLink())),
  );
  const topFiles = entries.filter((_, i) => kinds[i] === "file").map((e) => e.name);
  await addFiles(dir, basename(dir), defaultRepeats, topFiles);
  for (const [i, e] of entries.entries()) {
    if (kinds[i] !== "dir" || e.name.startsWith(".")) continue;
    const m = REPEAT_FOLDER.exec(e.name);
    const folder = join(dir, e.name);
    if (!m || Number(m[1]) < 1) {
      skipped.push({ path: folder, reason: 'folder not named "N_name" (kohya repeat folder), not used' });
      continue;
    }
    const files: string[] = [];
    for (const f of await readdir(folder, { withFileTypes: true })) {
      if (
        f.isFile() ||
        (f.isSymbolicLink() && (await stat(join(folder, f.name)).catch(() => null))?.isFile())
      ) {
        files.push(f.name);
      }
    }
    await addFiles(folder, e.name, Number(m[1]), files.sort());
  }
  return { images, skipped, subsets };
}
