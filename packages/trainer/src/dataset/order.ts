/**
 * The seeded, deterministic order in which samples are seen. Each epoch's order is a pure function of
 * (seed, epoch): every bucket's samples (image indices, each repeated `repeats` times) are shuffled and cut
 * into batches of batch_size (a bucket's last batch may be smaller, as in kohya), then the batches of all
 * buckets are shuffled together. Because nothing carries over between epochs, the saved state is just
 * (seed, epoch, position) and a resume continues with exactly the batches the uninterrupted run would see.
 */
import type { Size } from "./buckets.ts";
import { deriveSeed, Rng } from "./rng.ts";

export interface OrderBucket {
  bucket: Size;
  /** Image indices, each repeated by that image's repeats. */
  samples: number[];
}

export interface Batch {
  bucketIndex: number;
  bucket: Size;
  /** Image indices in this batch. */
  items: number[];
}

export interface DataOrderState {
  seed: number;
  epoch: number;
  /** Index of the next batch within the epoch. */
  position: number;
}

export function epochBatches(
  buckets: readonly OrderBucket[],
  batchSize: number,
  seed: number,
  epoch: number,
): Batch[] {
  const rng = new Rng(deriveSeed(seed, epoch, 0x0d47a));
  const batches: Batch[] = [];
  buckets.forEach((b, bucketIndex) => {
    const samples = rng.shuffle([...b.samples]);
    for (let i = 0; i < samples.length; i += batchSize) {
      batches.push({ bucketIndex, bucket: b.bucket, items: samples.slice(i, i + batchSize) });
    }
  });
  return rng.shuffle(batches);
}

/** Iterates batches across epochs; getState()/the constructor's state argument save and restore the position. */
export class DataOrder {
  private epoch: number;
  private position: number;
  private current: Batch[];

  constructor(
    private readonly buckets: readonly OrderBucket[],
    private readonly batchSize: number,
    private readonly seed: number,
    state?: DataOrderState,
  ) {
    if (state !== undefined && state.seed !== seed) {
      throw new Error(`data order state was saved with seed ${state.seed}, the config has seed ${seed}`);
    }
    this.epoch = state?.epoch ?? 0;
    this.position = state?.position ?? 0;
    this.current = epochBatches(buckets, batchSize, seed, this.epoch);
  }

  get batchesPerEpoch(): number {
    return this.current.length;
  }

  /** The next batch and the epoch it belongs to (0-based). */
  next(): { epoch: number; batch: Batch } {
    if (this.position >= this.current.length) {
      this.epoch++;
      this.position = 0;
      this.current = epochBatches(this.buckets, this.batchSize, this.seed, this.epoch);
    }
    return { epoch: this.epoch, batch: this.current[this.position++] };
  }

  getState(): DataOrderState {
    return { seed: this.seed, epoch: this.epoch, position: this.position };
  }
}
