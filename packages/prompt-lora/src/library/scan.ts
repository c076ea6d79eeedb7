/**
 * Lists a models/Lora folder the way A1111's Lora extension sees it (list_available_networks): every
 * `.safetensors`, `.pt` and `.ckpt` file below the folder (extension compared case-insensitively,
 * symlinks followed), name = file name without extension, alias = `ss_output_name`. For each file it adds
 * what the extension and its extra-networks page show: adapter layout, family, ranks, alphas, modules,
 * the A1111 hashes, decoded training metadata, the `<stem>.json` user metadata and the preview image.
 * Pickle files (.pt/.ckpt) are listed as unsupported with the reason: reading them needs Python's unpickler.
 * The expensive part (header, summary, hashes) is cached by path + size + mtime (cache.ts).
 */
import { readdir, stat } from "node:fs/promises";
import { basename, dirname, extname, join, relative, resolve } from "node:path";
import { summarizeAdapterFile } from "../adapters/index.ts";
import { openSafetensors, type SafetensorsFile } from "../safetensors/index.ts";
import { LibraryCache } from "./cache.ts";
import { hashFile } from "./hash.ts";
import {
  decodeMetadata,
  type FamilySource,
  familyFromLoraMetadata,
  findPreview,
  readUserMetadata,
} from "./metadata.ts";
import type { FileInfo, LibraryEntry, LibraryListing } from "./types.ts";
import { walkFolder } from "./walk.ts";

export const LORA_EXTENSIONS = [".safetensors", ".pt", ".ckpt"];

const PICKLE_REASON =
  "pickle checkpoint (.pt/.ckpt): reading it needs Python's unpickler; convert it to .safetensors";

export interface ScanOptions {
  /** Folder for the metadata/hash cache; without it nothing is cached between calls. */
  cacheDir?: string;
  /** Files analyzed at the same time on a cold listing (default 4). */
  concurrency?: number;
  /** Called after each file with the number done and the total. */
  onProgress?: (done: number, total: number) => void;
}

interface Candidate {
  path: string;
  folder: string;
  stem: string;
  extension: string;
  siblings: Set<string>;
}

export async function scanLibrary(dir: string, options: ScanOptions = {}): Promise<LibraryListing> {
  const root = resolve(dir);
  if (!(await stat(root)).isDirectory()) throw new Error(`${root}: not a folder`);
  const walked = await walkFolder(root);
  const candidates: Candidate[] = [];
  for (const folder of walked.folders) {
    const siblings = new Set(folder.files);
    for (const file of folder.files) {
      const ext = extname(file);
      if (!LORA_EXTENSIONS.includes(ext.toLowerCase())) continue;
      candidates.push({
        path: join(folder.path, file),
        folder: folder.path,
        stem: file.slice(0, file.length - ext.length),
        extension: ext.toLowerCase(),
        siblings,
      });
    }
  }

  const cache = await LibraryCache.open(options.cacheDir);
  const entries = new Array<LibraryEntry>(candidates.length);
  const unreadable = [...walked.unreadable];
  const stats = { files: candidates.length, fromCache: 0, analyzed: 0 };
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < candidates.length) {
      const i = next++;
      const c = candidates[i];
      try {
        const st = await stat(c.path);
        let info = cache.get(c.path, st.size, st.mtimeMs);
        if (info === undefined) {
          info = await analyzeFile(c.path, c.extension);
          cache.set(c.path, st.size, st.mtimeMs, info);
          stats.analyzed++;
        } else {
          stats.fromCache++;
        }
        entries[i] = await toEntry(root, c, st.size, st.mtimeMs, info);
      } catch (err) {
        unreadable.push({ path: c.path, reason: (err as Error).message });
      }
      options.onProgress?.(++done, candidates.length);
    }
  };
  const workers = Math.max(1, Math.min(options.concurrency ?? 4, candidates.length));
  await Promise.all(Array.from({ length: workers }, worker));
  let cacheError = cache.loadError;
  try {
    await cache.save(root);
  } catch (err) {
    // A read-only or full cache folder costs the next listing its speed, not this listing its result.
    cacheError = `cannot write the cache: ${(err as Error).message}`;
  }
  return {
    root,
    entries: entries.filter((e) => e !== undefined),
    cyclesSkipped: walked.cyclesSkipped,
    unreadable,
    stats,
    cacheError,
  };
}

function isPickle(extension: string): boolean {
  return extension === ".pt" || extension === ".ckpt";
}

/** Opens, summarizes and hashes one file. Never throws for a bad file: the reason goes into `error`. */
export async function analyzeFile(path: string, extension: string): Promise<FileInfo> {
  const info: FileInfo = {
    metadata: {},
    format: null,
    keyFamily: "unknown",
    ranks: [],
    alphas: [],
    moduleCount: 0,
    components: [],
    kinds: [],
    unknownKeyCount: 0,
    unknownKeysSample: [],
    hashes: null,
    error: null,
  };
  if (isPickle(extension)) {
    info.hashes = await hashFile(path, null);
    return info;
  }
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(path);
  } catch (err) {
    info.error = (err as Error).message;
    info.hashes = await hashFile(path, null);
    return info;
  }
  try {
    info.metadata = { ...file.metadata };
    try {
      const s = await summarizeAdapterFile(file);
      info.format = s.format;
      info.keyFamily = s.family;
      info.ranks = [...s.ranks];
      info.alphas = [...s.alphas];
      info.moduleCount = s.moduleCount;
      info.components = [...s.components];
      info.kinds = [...s.kinds];
      info.unknownKeyCount = s.unknownKeys.length;
      info.unknownKeysSample = s.unknownKeys.slice(0, 10);
    } catch (err) {
      info.error = (err as Error).message;
    }
    info.hashes = await hashFile(path, file.dataStart);
  } finally {
    await file.close();
  }
  return info;
}

/**
 * One file described as a library entry (for `inspect`): its folder is listed for the sidecar and the
 * preview, nothing is cached. The file may be any safetensors file; a checkpoint comes back unsupported.
 */
export async function describeFile(path: string): Promise<{ entry: LibraryEntry; info: FileInfo }> {
  const abs = resolve(path);
  const st = await stat(abs);
  if (!st.isFile()) throw new Error(`${abs}: not a file`);
  const folder = dirname(abs);
  const file = basename(abs);
  const ext = extname(file);
  const siblings = new Set(await readdir(folder));
  const c: Candidate = {
    path: abs,
    folder,
    stem: file.slice(0, file.length - ext.length),
    extension: ext.toLowerCase(),
    siblings,
  };
  const info = await analyzeFile(abs, c.extension);
  return { entry: await toEntry(folder, c, st.size, st.mtimeMs, info), info };
}

async function toEntry(
  root: string,
  c: Candidate,
  size: number,
  mtimeMs: number,
  info: FileInfo,
): Promise<LibraryEntry> {
  const fromMetadata = familyFromLoraMetadata(info.metadata);
  let family = info.keyFamily;
  let familySource: FamilySource = info.keyFamily === "unknown" ? "none" : "keys";
  if (fromMetadata !== null) {
    family = fromMetadata.family;
    familySource = fromMetadata.source;
  }
  const sidecar = await readUserMetadata(c.folder, c.stem, c.siblings);
  const alias = info.metadata.ss_output_name ?? c.stem;
  const computed = info.hashes === null ? null : (info.hashes.addnet ?? info.hashes.sha256);
  const hash = info.metadata.sshs_model_hash || computed;
  let reason = isPickle(c.extension) ? PICKLE_REASON : info.error;
  if (reason === null && info.moduleCount === 0) {
    reason = `no LoRA module found (${info.unknownKeyCount} tensor keys not recognized): not an adapter`;
  }
  return {
    name: c.stem,
    alias,
    path: c.path,
    folder: relative(root, c.folder),
    extension: c.extension,
    size,
    mtimeMs,
    supported: reason === null,
    reason,
    format: info.moduleCount > 0 ? info.format : null,
    family,
    familySource,
    ranks: info.ranks,
    alphas: info.alphas,
    moduleCount: info.moduleCount,
    components: info.components,
    kinds: info.kinds,
    unknownKeyCount: info.unknownKeyCount,
    unknownKeysSample: info.unknownKeysSample,
    hashes: info.hashes,
    shortHash: hash ? hash.slice(0, 12) : null,
    metadata: decodeMetadata(info.metadata),
    userMetadata: sidecar.userMetadata,
    userMetadataError: sidecar.error,
    preview: findPreview(c.folder, c.stem, c.siblings),
  };
}
