/**
 * Recursive listing of a models/Lora folder the way A1111's `walk_files` sees it: `os.walk` with
 * followlinks=True, folders visited in natural-sort order of their path, the files of each folder in
 * natural-sort order. Unlike os.walk, a symlink that leads back into a folder already being walked is not
 * followed again (a cycle would otherwise never end); the folder's real path identifies it.
 * Each folder is read once, and its listing is kept so sidecars and previews are found without a stat each.
 */
import type { Dirent } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";

export interface WalkedFolder {
  /** The folder as reached from the root (through symlinks, not resolved). */
  path: string;
  /** File names in the folder (symlinks to files included), natural-sorted. */
  files: string[];
}

export interface WalkResult {
  folders: WalkedFolder[];
  /** Symlinked folders skipped because they lead back into a folder already walked. */
  cyclesSkipped: string[];
  /** Entries that could not be read (broken symlinks, permission errors), with the reason. */
  unreadable: Array<{ path: string; reason: string }>;
}

export async function walkFolder(root: string): Promise<WalkResult> {
  const result: WalkResult = { folders: [], cyclesSkipped: [], unreadable: [] };
  const rootReal = await realpath(root);
  await visit(root, [rootReal], result);
  result.folders.sort((a, b) => naturalCompare(a.path, b.path));
  return result;
}

/** `ancestors` holds the real paths on the way down: only those make a cycle (a folder linked twice
 *  from different places is walked twice, as os.walk would). */
async function visit(dir: string, ancestors: string[], out: WalkResult): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    out.unreadable.push({ path: dir, reason: (err as Error).message });
    return;
  }
  const files: string[] = [];
  const subdirs: string[] = [];
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) subdirs.push(e.name);
    else if (e.isFile()) files.push(e.name);
    else if (e.isSymbolicLink()) {
      try {
        const target = await stat(full);
        if (target.isDirectory()) subdirs.push(e.name);
        else if (target.isFile()) files.push(e.name);
      } catch (err) {
        out.unreadable.push({ path: full, reason: `broken symlink: ${(err as Error).message}` });
      }
    }
  }
  files.sort(naturalCompare);
  out.folders.push({ path: dir, files });
  for (const name of subdirs.sort(naturalCompare)) {
    const full = join(dir, name);
    let real: string;
    try {
      real = await realpath(full);
    } catch (err) {
      out.unreadable.push({ path: full, reason: (err as Error).message });
      continue;
    }
    if (ancestors.includes(real)) {
      out.cyclesSkipped.push(full);
      continue;
    }
    await visit(full, [...ancestors, real], out);
  }
}

/** A1111's natural_sort_key: runs of digits compare as numbers, the rest case-insensitively. */
export function naturalCompare(a: string, b: string): number {
  const pa = a.split(/(\d+)/);
  const pb = b.split(/(\d+)/);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    // split with a capture group alternates text, digits, text, ...: odd indexes are digit runs.
    if (i % 2 === 1) {
      const d = Number(pa[i]) - Number(pb[i]);
      if (d !== 0) return d;
    } else {
      const x = pa[i].toLowerCase();
      const y = pb[i].toLowerCase();
      if (x !== y) return x < y ? -1 : 1;
    }
  }
  return pa.length - pb.length;
}
