/**
 * The frozen encoders of a LoRA run: the VAE encoder turns each training picture into its latent once (cached in
 * memory, and on disk with cache_latents_to_disk, through trainer-data's LatentCache), and the CLIP text encoder
 * turns captions into embeddings (cached per caption when captions never change between steps).
 *
 * Latents are SAMPLED from the VAE's distribution once, like kohya's cache_batch_latents
 * (latent_dist.sample() * scaling_factor), not the mean: the sample's normals come from a seed derived from the
 * run seed and the cache key, so the cached value is reproducible and the disk cache stays valid for the same
 * seed (the seed is part of the cache's VAE identity).
 */
import {
  buildClipTextGraph,
  buildVaeEncoderGraph,
  Session,
  type SessionOptions,
  TorchCpuGenerator,
} from "@lora-studio/engine";
import type { Size } from "../dataset/buckets.ts";
import { loadBucketed, toTensorCHW } from "../dataset/image.ts";
import { imageContentHash, type Latent, LatentCache, latentCacheKey } from "../dataset/latent-cache.ts";
import type { PlannedImage } from "../dataset/plan.ts";
import { deriveSeed } from "../dataset/rng.ts";
import type { BaseModel } from "./base-model.ts";

export interface LatentStore {
  /** Latent of image `index` (flipped variant when `flip`), shape [C, h, w]. */
  get(index: number, flip: boolean): Latent;
}

/** Encodes every image (and its mirror when flipAug) once; returns the in-memory store. */
export async function cacheLatents(
  base: BaseModel,
  images: readonly PlannedImage[],
  o: {
    seed: number;
    flipAug: boolean;
    diskDir: string | null;
    session: SessionOptions;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<LatentStore & { hits: number; misses: number }> {
  const cache = new LatentCache(o.diskDir);
  // The cache key names the VAE file (path, size, mtime: a changed VAE means new latents); the posterior
  // sample's noise must not, or the same seed would train differently from another folder or after a copy.
  const vaeId = `${base.vaeId}:posterior-sample:${o.seed}`;
  const sessions = new Map<string, Session>();
  const encoderFor = async (bucket: Size): Promise<Session> => {
    const key = bucket.join("x");
    let s = sessions.get(key);
    if (!s) {
      const { graph } = buildVaeEncoderGraph(base.checkpoint.vae, base.checkpoint.weights.vae, {
        batch: 1,
        height: bucket[1],
        width: bucket[0],
      });
      s = await Session.create(graph, o.session);
      sessions.set(key, s);
    }
    return s;
  };
  const flips = o.flipAug ? [false, true] : [false];
  const stored = new Map<string, Latent>();
  const total = images.length * flips.length;
  let done = 0;
  try {
    for (const [index, image] of images.entries()) {
      const sha = await imageContentHash(image.path);
      let rgb: Awaited<ReturnType<typeof loadBucketed>> | undefined;
      for (const flip of flips) {
        const key = latentCacheKey({ imageSha256: sha, assignment: image.assignment, flip, vaeId });
        const noiseKey = latentCacheKey({ imageSha256: sha, assignment: image.assignment, flip, vaeId: "" });
        const latent = await cache.getOrCompute(key, async () => {
          rgb ??= await loadBucketed(image.path, image.assignment);
          const [w, h] = image.assignment.bucket;
          const session = await encoderFor(image.assignment.bucket);
          const r = await session.run({
            sample: { dtype: "float32", shape: [1, 3, h, w], data: toTensorCHW(rgb, flip) },
          });
          const mean = r.mean.data as Float32Array;
          const logvar = r.logvar.data as Float32Array;
          const eps = new TorchCpuGenerator(deriveSeed(o.seed, parseInt(noiseKey.slice(0, 8), 16))).randn(
            mean.length,
          );
          const sf = base.checkpoint.vae.scaling_factor;
          const data = new Float32Array(mean.length);
          for (let i = 0; i < data.length; i++) data[i] = (mean[i] + Math.exp(0.5 * logvar[i]) * eps[i]) * sf;
          return { shape: r.mean.shape.slice(1), data };
        });
        stored.set(`${index}:${flip ? 1 : 0}`, latent);
        o.onProgress?.(++done, total);
      }
    }
  } finally {
    for (const s of sessions.values()) await s.release();
  }
  return {
    hits: cache.hits,
    misses: cache.misses,
    get(index, flip) {
      const l = stored.get(`${index}:${flip && o.flipAug ? 1 : 0}`);
      if (!l) throw new Error(`no cached latent for image ${index}${flip ? " (flipped)" : ""}`);
      return l;
    },
  };
}

/**
 * The frozen CLIP text encoder, batch 1, with a per-caption cache (used when captions are static); and the
 * captions' token ids, which the joint step graphs take instead of embeddings when the text encoder is trained
 * (then no encoder session is made: `encode: false`).
 */
export class TextEmbedder {
  private readonly cache = new Map<string, Float32Array>();
  private constructor(
    private readonly base: BaseModel,
    private readonly session: Session | undefined,
    readonly seqLen: number,
    readonly width: number,
    private readonly cacheable: boolean,
  ) {}

  static async create(
    base: BaseModel,
    o: { clipSkip: number; cacheable: boolean; session: SessionOptions; encode?: boolean },
  ): Promise<TextEmbedder> {
    const seqLen = 77;
    const width = base.checkpoint.textEncoder.hidden_size;
    if (o.encode === false) return new TextEmbedder(base, undefined, seqLen, width, false);
    const { graph } = buildClipTextGraph(base.checkpoint.textEncoder, base.checkpoint.weights.textEncoder, {
      batch: 1,
      seqLen,
      clipSkip: o.clipSkip,
    });
    const session = await Session.create(graph, o.session);
    return new TextEmbedder(base, session, seqLen, width, o.cacheable);
  }

  get cachedCount(): number {
    return this.cache.size;
  }

  /** Whether embed() works (false for a tokens-only embedder). */
  get encodes(): boolean {
    return this.session !== undefined;
  }

  /** The [seqLen] token ids of one caption (BOS, tokens, EOS, padding), as the encoder's input. */
  tokenIds(caption: string): BigInt64Array {
    const ids = this.base.tokenizer.encode(caption, { maxLength: this.seqLen }).inputIds;
    return BigInt64Array.from(ids.map(BigInt));
  }

  /** [seqLen, width] embeddings of one caption. */
  async embed(caption: string): Promise<Float32Array> {
    const hit = this.cache.get(caption);
    if (hit) return hit;
    if (!this.session) throw new Error("TextEmbedder: created with encode: false (token ids only)");
    const r = await this.session.run({
      input_ids: { dtype: "int64", shape: [1, this.seqLen], data: this.tokenIds(caption) },
    });
    const out = r.out.data as Float32Array;
    if (this.cacheable) this.cache.set(caption, out);
    return out;
  }

  async release(): Promise<void> {
    await this.session?.release();
  }
}
