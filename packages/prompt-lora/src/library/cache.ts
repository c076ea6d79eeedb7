/**
 * Persistent cache of what is expensive to learn about a LoRA file (its header, adapter summary and
 * hashes), keyed by absolute path and validated by size + mtime: an unchanged file is never opened again,
 * so a second listing of a large library reads no tensor data and computes no hash.
 * One JSON file in a folder the caller chooses, rewritten atomically (temp file + rename) and only when
 * something changed; an unreadable or foreign cache file is ignored and replaced, never fatal.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join, sep } from "node:path";
import { atomicWriteFile } from "../util/atomic.ts";
import type { FileInfo } from "./types.ts";

const CACHE_FILE = "lora-library-cache.json";
const CACHE_VERSION = 1;

interface CacheRecord {
  size: number;
  mtimeMs: number;
  info: FileInfo;
}

interface CacheFile {
  version: number;
  entries: Record<string, CacheRecord>;
}

export class LibraryCache {
  private readonly entries: Map<string, CacheRecord>;
  private readonly touched = new Set<string>();
  private dirty = false;

  private constructor(
    readonly path: string | null,
    entries: Map<string, CacheRecord>,
    /** Why an existing cache file was discarded, if it was. */
    readonly loadError: string | null,
  ) {
    this.entries = entries;
  }

  /** A cache backed by `<cacheDir>/lora-library-cache.json`, or an in-memory one when cacheDir is undefined. */
  static async open(cacheDir: string | undefined): Promise<LibraryCache> {
    if (cacheDir === undefined) return new LibraryCache(null, new Map(), null);
    const path = join(cacheDir, CACHE_FILE);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch {
      return new LibraryCache(path, new Map(), null);
    }
    try {
      const parsed = JSON.parse(text) as CacheFile;
      if (
        parsed?.version !== CACHE_VERSION ||
        typeof parsed.entries !== "object" ||
        parsed.entries === null
      ) {
        return new LibraryCache(path, new Map(), `${path}: not a version ${CACHE_VERSION} cache, rebuilt`);
      }
      return new LibraryCache(path, new Map(Object.entries(parsed.entries)), null);
    } catch (err) {
      return new LibraryCache(path, new Map(), `${path}: ${(err as Error).message}, rebuilt`);
    }
  }

  get(filePath: string, size: number, mtimeMs: number): FileInfo | undefined {
    const r = this.entries.get(filePath);
    if (r === undefined || r.size !== size || r.mtimeMs !== mtimeMs) return undefined;
    this.touched.add(filePath);
    return r.info;
  }

  set(filePath: string, size: number, mtimeMs: number, info: FileInfo): void {
    this.entries.set(filePath, { size, mtimeMs, info });
    this.touched.add(filePath);
    this.dirty = true;
  }

  /**
   * Writes the cache if anything changed. With `pruneUnder`, records of files under that folder that were
   * not seen in this listing (deleted or renamed files) are dropped first.
   */
  async save(pruneUnder?: string): Promise<void> {
    if (pruneUnder !== undefined) {
      for (const key of this.entries.keys()) {
        if (isUnder(key, pruneUnder) && !this.touched.has(key)) {
          this.entries.delete(key);
          this.dirty = true;
        }
      }
    }
    if (this.path === null || !this.dirty) return;
    await mkdir(join(this.path, ".."), { recursive: true });
    const file: CacheFile = { version: CACHE_VERSION, entries: Object.fromEntries(this.entries) };
    await atomicWriteFile(this.path, JSON.stringify(file));
    this.dirty = false;
  }
}

function isUnder(path: string, folder: string): boolean {
  return path.startsWith(folder.endsWith(sep) ? folder : folder + sep);
}
