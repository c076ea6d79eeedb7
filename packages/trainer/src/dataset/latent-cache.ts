/**
 * A cache for VAE latents, so each training sample is encoded once: in memory, and optionally on disk
 * (cache_latents_to_disk) where it survives restarts and resumes. The key covers everything the latent depends
 * on: the image file's content (SHA-256, so a renamed file still hits and an edited one misses), the bucket
 * resize and crop, the flip, and the VAE's identity (e.g. the hash of its weights). A disk entry is one file
 * per key, written atomically; an entry that fails validation is treated as a miss and rewritten.
 *
 * File layout: "LSLT" magic, uint32 version, uint32 rank, rank x uint32 dims, then float32 values, all LE.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import type { BucketAssignment } from "./buckets.ts";

const MAGIC = 0x544c534c; // "LSLT" read as little-endian uint32
const VERSION = 1;

export interface Latent {
  shape: number[];
  data: Float32Array;
}

export interface LatentKeyParts {
  /** SHA-256 hex of the image file's bytes (imageContentHash). */
  imageSha256: string;
  assignment: Pick<BucketAssignment, "bucket" | "resized" | "crop">;
  flip: boolean;
  /** Identifies the VAE weights (e.g. a hash of the file or of the tensor data). */
  vaeId: string;
}

export async function imageContentHash(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) h.update(chunk);
  return h.digest("hex");
}

export function latentCacheKey(p: LatentKeyParts): string {
  const { bucket, resized, crop } = p.assignment;
  const desc = JSON.stringify([
    p.imageSha256,
    bucket,
    resized,
    [crop.left, crop.top, crop.width, crop.height],
    p.flip,
    p.vaeId,
  ]);
  return createHash("sha256").update(desc).digest("hex");
}

export function encodeLatent(latent: Latent): Uint8Array {
  const n = latent.shape.reduce((a, b) => a * b, 1);
  if (n !== latent.data.length)
    throw new Error(`latent shape [${latent.shape}] needs ${n} values, got ${latent.data.length}`);
  const headerBytes = 12 + 4 * latent.shape.length;
  const out = new Uint8Array(headerBytes + 4 * n);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, latent.shape.length, true);
  for (const [i, d] of latent.shape.entries()) view.setUint32(12 + 4 * i, d, true);
  for (let i = 0; i < n; i++) view.setFloat32(headerBytes + 4 * i, latent.data[i], true);
  return out;
}

/** Undefined when the bytes are not a complete, valid entry. */
export function decodeLatent(bytes: Uint8Array): Latent | undefined {
  if (bytes.length < 12) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC || view.getUint32(4, true) !== VERSION) return undefined;
  const rank = view.getUint32(8, true);
  if (rank > 8 || bytes.length < 12 + 4 * rank) return undefined;
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(12 + 4 * i, true));
  const n = shape.reduce((a, b) => a * b, 1);
  const headerBytes = 12 + 4 * rank;
  if (bytes.length !== headerBytes + 4 * n) return undefined;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = view.getFloat32(headerBytes + 4 * i, true);
  return { shape, data };
}

export class LatentCache {
  private readonly memory = new Map<string, Latent>();
  hits = 0;
  misses = 0;

  /** `dir` null: memory only. */
  constructor(readonly dir: string | null) {}

  private pathFor(key: string): string {
    return join(this.dir!, key.slice(0, 2), `${key}.latent`);
  }

  async get(key: string): Promise<Latent | undefined> {
    const inMemory = this.memory.get(key);
    if (inMemory !== undefined) {
      this.hits++;
      return inMemory;
    }
    if (this.dir !== null) {
      const path = this.pathFor(key);
      const bytes = await readFile(path).catch(() => undefined);
      if (bytes !== undefined) {
        const latent = decodeLatent(bytes);
        if (latent !== undefined) {
          this.memory.set(key, latent);
          this.hits++;
          return latent;
        }
        await rm(path, { force: true });
      }
    }
    this.misses++;
    return undefined;
  }

  async set(key: string, latent: Latent): Promise<void> {
    this.memory.set(key, latent);
    if (this.dir === null) return;
    const path = this.pathFor(key);
    await mkdir(join(this.dir, key.slice(0, 2)), { recursive: true });
    await atomicWriteFile(path, encodeLatent(latent));
  }

  /** Returns the cached latent or computes, stores and returns it. */
  async getOrCompute(key: string, compute: () => Promise<Latent>): Promise<Latent> {
    return (await this.get(key)) ?? (await this.store(key, await compute()));
  }

  private async store(key: string, latent: Latent): Promise<Latent> {
    await this.set(key, latent);
    return latent;
  }
}
