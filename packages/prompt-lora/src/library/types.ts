/** Shapes of a LoRA library listing (see scan.ts). */
import type { Component, ModelFamily } from "../adapters/types.ts";
import type { FileHashes } from "./hash.ts";
import type { FamilySource, UserMetadata } from "./metadata.ts";

/** What is learned by opening and hashing one file: cached by path + size + mtime. */
export interface FileInfo {
  /** `__metadata__` of a safetensors file, as stored (strings). */
  metadata: Record<string, string>;
  /** Adapter layout ("kohya", "peft", "lycoris", ...) or null when the file could not be summarized. */
  format: string | null;
  /** Family from the tensor keys and shapes (summarizeAdapterFile), before metadata is consulted. */
  keyFamily: ModelFamily;
  ranks: number[];
  alphas: number[];
  moduleCount: number;
  components: Component[];
  /** Module kinds present ("lora", "loha", "lokr", "full"). */
  kinds: string[];
  unknownKeyCount: number;
  /** The first few unmapped keys, for messages. */
  unknownKeysSample: string[];
  hashes: FileHashes | null;
  /** Why the file cannot be used (corrupt header, not an adapter, ...), or null. */
  error: string | null;
}

export interface LibraryEntry {
  /** File name without its extension: what `<lora:NAME>` matches (the subfolder is not part of it). */
  name: string;
  /** `ss_output_name` from the metadata, else the name: the other thing `<lora:...>` may match. */
  alias: string;
  /** Absolute path as reached from the library root (symlinks not resolved). */
  path: string;
  /** Folder relative to the library root ("" for the root itself). */
  folder: string;
  /** ".safetensors", ".pt" or ".ckpt" (lower case). */
  extension: string;
  size: number;
  mtimeMs: number;
  /** False for pickle files (.pt/.ckpt) and for files that could not be read; see `reason`. */
  supported: boolean;
  reason: string | null;
  format: string | null;
  family: ModelFamily;
  familySource: FamilySource;
  ranks: number[];
  alphas: number[];
  moduleCount: number;
  components: Component[];
  kinds: string[];
  unknownKeyCount: number;
  unknownKeysSample: string[];
  hashes: FileHashes | null;
  /**
   * The 12-hex hash A1111's Lora extension shows and writes into infotexts ("Lora hashes"): the
   * `sshs_model_hash` metadata value when present, else the addnet hash (safetensors) or the full-file
   * SHA-256 (.pt/.ckpt), cut to 12.
   */
  shortHash: string | null;
  /** `__metadata__` with the JSON-valued `ss_*` / `modelspec.*` strings decoded. */
  metadata: Record<string, unknown>;
  userMetadata: UserMetadata | null;
  userMetadataError: string | null;
  preview: string | null;
}

export interface LibraryListing {
  root: string;
  entries: LibraryEntry[];
  cyclesSkipped: string[];
  unreadable: Array<{ path: string; reason: string }>;
  stats: { files: number; fromCache: number; analyzed: number };
  cacheError: string | null;
}
