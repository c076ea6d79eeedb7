/**
 * models/Lora management: listing (prompt-lora's scanLibrary with its size+mtime cache in the data folder),
 * user metadata `<stem>.json` in the WebUI's JSON shape, rename, move to a subfolder, delete to a trash
 * folder in the data folder (outside models/Lora, so the WebUI does not list trashed files) with undo.
 * A LoRA's sidecars (`<stem>.json`, `<stem>.png`, `<stem>.preview.png`, ...) travel with it.
 * Every client path goes through safe-path.ts.
 */
import { randomUUID } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import type { LibraryEntry } from "@lora-studio/prompt-lora";
import { atomicWriteFile, scanLibrary } from "@lora-studio/prompt-lora";
import { checkName, checkRelativeText, PathError, resolveInside, toRelative } from "./safe-path.ts";

export class LibraryError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
    this.name = "LibraryError";
  }
}

/** A library entry as the API answers it: paths relative to the Lora folder, plus the prompt token. */
export interface LoraCard extends Omit<LibraryEntry, "path" | "preview"> {
  path: string;
  preview: string | null;
  token: string;
}

/** The keys the WebUI's user-metadata editor writes, in its spelling. */
export const USER_METADATA_KEYS = [
  "description",
  "sd version",
  "activation text",
  "preferred weight",
  "negative text",
  "notes",
] as const;

const SIDE_SUFFIXES = [".json", ".png", ".jpg", ".jpeg", ".webp", ".gif"].flatMap((e) => [e, `.preview${e}`]);

/** `<lora:alias:weight>`, the way the WebUI's Lora card inserts it. */
export function loraToken(alias: string, weight: number | undefined): string {
  const w = weight === undefined || !Number.isFinite(weight) ? 1 : weight;
  return `<lora:${alias}:${w}>`;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** rename, or copy + unlink when the trash is on another device. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    await copyFile(from, to);
    await unlink(from);
  }
}

interface TrashManifest {
  id: string;
  deletedAt: number;
  /** Relative path in the Lora folder -> file name in the trash entry. */
  files: Array<{ rel: string; stored: string }>;
}

export class LoraLibrary {
  constructor(
    readonly loraDir: string,
    readonly dataDir: string,
  ) {}

  get trashDir(): string {
    return join(this.dataDir, "trash");
  }

  async list(): Promise<{
    root: string;
    cards: LoraCard[];
    unreadable: Array<{ path: string; reason: string }>;
    stats: { files: number; fromCache: number; analyzed: number };
  }> {
    await mkdir(this.loraDir, { recursive: true });
    const listing = await scanLibrary(this.loraDir, { cacheDir: join(this.dataDir, "cache") });
    const cards = listing.entries.map((e) => ({
      ...e,
      path: toRelative(listing.root, e.path),
      preview: e.preview === null ? null : toRelative(listing.root, e.preview),
      token: loraToken(e.alias, e.userMetadata?.preferredWeight),
    }));
    return {
      root: listing.root,
      cards,
      unreadable: listing.unreadable.map((u) => ({
        path: toRelative(listing.root, u.path),
        reason: u.reason,
      })),
      stats: listing.stats,
    };
  }

  /** Absolute path of an existing LoRA file (model extensions only). */
  async loraFile(rel: unknown): Promise<string> {
    const abs = await resolveInside(this.loraDir, rel);
    if (![".safetensors", ".pt", ".ckpt"].includes(extname(abs).toLowerCase())) {
      throw new PathError(String(rel), "not a LoRA file (.safetensors, .pt, .ckpt)");
    }
    const st = await stat(abs).catch(() => null);
    if (st === null || !st.isFile()) throw new LibraryError(404, `no LoRA ${String(rel)} in the Lora folder`);
    return abs;
  }

  private static stem(abs: string): string {
    return basename(abs, extname(abs));
  }

  /** The sidecars that exist next to a LoRA file. */
  private async sidecars(abs: string): Promise<string[]> {
    const folder = dirname(abs);
    const stem = LoraLibrary.stem(abs);
    const names = new Set(await readdir(folder));
    return SIDE_SUFFIXES.map((s) => `${stem}${s}`)
      .filter((n) => names.has(n))
      .map((n) => join(folder, n));
  }

  /** Merges `fields` (WebUI key spelling) into `<stem>.json`, keeping keys it does not know. */
  async writeUserMetadata(rel: unknown, fields: unknown): Promise<Record<string, unknown>> {
    const abs = await this.loraFile(rel);
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
      throw new LibraryError(400, "metadata must be a JSON object");
    }
    const json = join(dirname(abs), `${LoraLibrary.stem(abs)}.json`);
    let current: Record<string, unknown> = {};
    try {
      const parsed = JSON.parse(await readFile(json, "utf8"));
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) current = parsed;
    } catch {
      // no sidecar yet, or an unreadable one that the editor replaces
    }
    const next: Record<string, unknown> = { ...current };
    for (const [key, value] of Object.entries(fields as Record<string, unknown>)) {
      if (!(USER_METADATA_KEYS as readonly string[]).includes(key)) {
        throw new LibraryError(
          400,
          `unknown user metadata key ${JSON.stringify(key)}; known: ${USER_METADATA_KEYS.join(", ")}`,
        );
      }
      if (key === "preferred weight") {
        if (typeof value !== "number" || !Number.isFinite(value))
          throw new LibraryError(400, "preferred weight must be a number");
      } else if (typeof value !== "string") {
        throw new LibraryError(400, `${key} must be a string`);
      }
      next[key] = value;
    }
    await atomicWriteFile(json, `${JSON.stringify(next, null, 4)}\n`);
    return next;
  }

  /** Moves a LoRA and its sidecars to `toRel` (a path without extension: name, or folder/name). */
  private async relocate(abs: string, targetStemAbs: string): Promise<string> {
    const ext = extname(abs);
    const target = `${targetStemAbs}${ext}`;
    const stem = LoraLibrary.stem(abs);
    const sides = await this.sidecars(abs);
    const moves: Array<[string, string]> = [[abs, target]];
    for (const s of sides) moves.push([s, `${targetStemAbs}${basename(s).slice(stem.length)}`]);
    for (const [, to] of moves) {
      if (await exists(to)) throw new LibraryError(409, `${toRelative(this.loraDir, to)} already exists`);
    }
    await mkdir(dirname(target), { recursive: true });
    for (const [from, to] of moves) await rename(from, to);
    return target;
  }

  async rename(rel: unknown, newName: unknown): Promise<string> {
    const abs = await this.loraFile(rel);
    let name = checkName(newName, "new name");
    if (extname(name).toLowerCase() === extname(abs).toLowerCase())
      name = name.slice(0, -extname(name).length);
    const targetStem = await resolveInside(this.loraDir, toRelative(this.loraDir, join(dirname(abs), name)));
    return toRelative(this.loraDir, await this.relocate(abs, targetStem));
  }

  async move(rel: unknown, folder: unknown): Promise<string> {
    const abs = await this.loraFile(rel);
    const f = folder === "" ? "" : checkRelativeText(folder, "folder").join("/");
    const targetStem = await resolveInside(
      this.loraDir,
      f === "" ? LoraLibrary.stem(abs) : `${f}/${LoraLibrary.stem(abs)}`,
    );
    return toRelative(this.loraDir, await this.relocate(abs, targetStem));
  }

  /** Moves a LoRA and its sidecars into a new trash entry; returns the entry's id for undo. */
  async delete(rel: unknown): Promise<TrashManifest> {
    const abs = await this.loraFile(rel);
    const id = randomUUID();
    const entry = join(this.trashDir, id);
    await mkdir(entry, { recursive: true });
    const files = [abs, ...(await this.sidecars(abs))];
    const manifest: TrashManifest = { id, deletedAt: Date.now(), files: [] };
    for (const [i, f] of files.entries()) {
      const stored = `${i}-${basename(f)}`;
      await moveFile(f, join(entry, stored));
      manifest.files.push({ rel: toRelative(this.loraDir, f), stored });
    }
    await atomicWriteFile(join(entry, "manifest.json"), JSON.stringify(manifest));
    return manifest;
  }

  async undoDelete(id: unknown): Promise<string[]> {
    if (typeof id !== "string" || !/^[0-9a-f-]{36}$/.test(id))
      throw new LibraryError(400, "trash id must be a UUID");
    const entry = join(this.trashDir, id);
    let manifest: TrashManifest;
    try {
      manifest = JSON.parse(await readFile(join(entry, "manifest.json"), "utf8"));
    } catch {
      throw new LibraryError(404, `nothing in the trash under ${id}`);
    }
    const targets = await Promise.all(manifest.files.map((f) => resolveInside(this.loraDir, f.rel)));
    for (const t of targets) {
      if (await exists(t))
        throw new LibraryError(409, `${toRelative(this.loraDir, t)} exists again; rename it first`);
    }
    for (const [i, f] of manifest.files.entries()) {
      await mkdir(dirname(targets[i]), { recursive: true });
      await moveFile(join(entry, f.stored), targets[i]);
    }
    await rm(entry, { recursive: true, force: true });
    return manifest.files.map((f) => f.rel);
  }
}
