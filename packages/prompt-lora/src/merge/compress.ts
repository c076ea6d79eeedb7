/**
 * Compress an adapter (typically a stack) to rank r per module, by the SVD of each module's delta.
 *
 * - Plain LoRA modules (delta = s * up @ down, rank R): the SVD runs on the factors (math/rsvd.ts factoredSvd,
 *   through U^T U and D D^T), never forming the out x in delta. Exact when R <= r + oversampling; beyond that a
 *   randomized range finder with power iterations in the R-dimensional space. A module of rank <= r is kept as is.
 * - LoHa / LoKr / full / CP-LoRA modules: their delta is formed and compressed by randomized SVD.
 * Conv deltas are flattened to [out, in*kh*kw]; the result is down [r, in, kh, kw], up [out, r, 1, 1].
 * Every output module has alpha = r (scale 1), split kohya-style with sqrt(sigma) on both sides so neither
 * factor under- or overflows when stored as fp16.
 * The report gives each module's relative Frobenius error ||delta - delta_r|| / ||delta|| (exact for the
 * returned factors: the approximation is an orthogonal projection) and the total over all modules.
 */
import { moduleDelta } from "../adapters/delta.ts";
import type { Adapter, AdapterModule } from "../adapters/types.ts";
import { type Matrix, matrix } from "../math/matrix.ts";
import { factoredNormSquared, factoredSvd, type LowRank, randomizedSvd } from "../math/rsvd.ts";
import { defaultWorkerCount, WorkerCrashError, WorkerPool } from "../util/worker-pool.ts";
import { MergeError } from "./errors.ts";
import { mergeWorkerEntry, reviveMergeError } from "./pool.ts";
import type { ProgressCallback } from "./types.ts";

export interface CompressOptions {
  /** Rank for conv modules with a k x k kernel (k > 1); default: the same rank. */
  convRank?: number;
  onProgress?: ProgressCallback;
  /** Randomized SVD settings (defaults: oversample 10, 2 power iterations, seed 1). */
  oversample?: number;
  powerIterations?: number;
  seed?: number;
}

export interface ModuleCompression {
  component: AdapterModule["component"];
  path: string;
  /** Rank before (LoRA rank, or min(out, in) for a full delta) and after. */
  rankBefore: number;
  rank: number;
  /** ||delta - delta_r||_F / ||delta||_F (0 for a zero delta). */
  relativeError: number;
  /** ||delta||_F */
  norm: number;
  /** A full module's bias delta (diff_b) cannot be carried by a LoRA and was dropped. */
  droppedBias?: boolean;
}

export interface CompressionReport {
  modules: ModuleCompression[];
  /** sqrt(sum of squared module errors) / sqrt(sum of squared module norms). */
  totalRelativeError: number;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export function compressAdapter(
  adapter: Adapter,
  rank: number,
  opts: CompressOptions = {},
): { adapter: Adapter; report: CompressionReport } {
  checkRanks(rank, opts);
  const results: ModuleResult[] = [];
  adapter.modules.forEach((m, i) => {
    results.push(compressModule(checkedModule(m), rank, opts));
    opts.onProgress?.(i + 1, adapter.modules.length, `${m.component}:${m.path}`);
  });
  return assemble(adapter, rank, results);
}

export interface ParallelCompressOptions extends CompressOptions {
  /** Worker threads; 0 runs in this thread. Default: one per core (at most 4) when the work is large enough. */
  workers?: number;
}

/**
 * compressAdapter with the modules spread over a pool of worker threads; the same result, module for module
 * (each module is decomposed by the same code with the same seed). Worth it from a few hundred ms of work: a
 * worker costs ~0.3-1 s to start under tsx.
 */
export async function compressAdapterParallel(
  adapter: Adapter,
  rank: number,
  opts: ParallelCompressOptions = {},
): Promise<{ adapter: Adapter; report: CompressionReport }> {
  checkRanks(rank, opts);
  const modules = adapter.modules.map(checkedModule);
  const workers = opts.workers ?? (estimatedMacs(modules) >= POOL_MIN_MACS ? defaultWorkerCount() : 0);
  if (workers < 1 || modules.length < 2) return compressAdapter(adapter, rank, opts);
  const pool = new WorkerPool(mergeWorkerEntry(), Math.min(workers, modules.length), reviveMergeError);
  const { onProgress, ...cloneable } = opts;
  const settings = {
    convRank: cloneable.convRank,
    oversample: cloneable.oversample,
    powerIterations: cloneable.powerIterations,
    seed: cloneable.seed,
  };
  let done = 0;
  try {
    const results = await Promise.all(
      modules.map(async (m) => {
        const r = await pool.run<ModuleResult>("compressModule", {
          module: compactModule(m),
          rank,
          opts: settings,
        } satisfies CompressModuleArgs);
        onProgress?.(++done, modules.length, `${m.component}:${m.path}`);
        return r;
      }),
    );
    return assemble(adapter, rank, results);
  } catch (err) {
    // Workers that cannot run here (no tsx loader for a .ts entry, a sandbox without threads): same result
    // in this thread. Errors of the compression itself are rethrown.
    if (err instanceof WorkerCrashError) return compressAdapter(adapter, rank, opts);
    throw err;
  } finally {
    await pool.close();
  }
}

/** Below this much work (~0.2 s on one core) a pool's start-up (~0.3-1 s per worker under tsx) is not worth it. */
const POOL_MIN_MACS = 2e9;

/** Rough multiply-add count of compressing these modules: Grams and products over the factors. */
function estimatedMacs(modules: AdapterModule[]): number {
  let macs = 0;
  for (const m of modules) {
    const sizes = Object.values(m.tensors).map((t) => t?.data.length ?? 0);
    const rank = m.tensors.down?.shape[0] ?? 64;
    macs += sizes.reduce((a, b) => a + b, 0) * Math.max(rank, 64);
  }
  return macs;
}

export interface CompressModuleArgs {
  module: AdapterModule;
  rank: number;
  opts: CompressOptions;
}

/** Worker side of compressAdapterParallel (merge-worker.ts). */
export function compressModuleTask(args: CompressModuleArgs): ModuleResult {
  return compressModule(args.module, args.rank, args.opts);
}

interface ModuleResult {
  module: AdapterModule;
  entry: ModuleCompression;
  errorSq: number;
}

function checkRanks(rank: number, opts: CompressOptions): void {
  for (const [name, r] of [
    ["rank", rank],
    ["convRank", opts.convRank ?? rank],
  ] as const) {
    if (!Number.isInteger(r) || r < 1)
      throw new MergeError("BAD_RANK", `${name} must be a positive integer, got ${r}`);
  }
}

function checkedModule(m: AdapterModule): AdapterModule {
  if (m.doraScale) {
    const key = `${m.component}:${m.path}`;
    throw new MergeError(
      "NEEDS_BASE_WEIGHT",
      `module ${key} has dora_scale: its delta needs the base weight`,
      key,
    );
  }
  return m;
}

function assemble(
  adapter: Adapter,
  rank: number,
  results: ModuleResult[],
): { adapter: Adapter; report: CompressionReport } {
  let errorSq = 0;
  let normSq = 0;
  for (const r of results) {
    errorSq += r.errorSq;
    normSq += r.entry.norm ** 2;
  }
  return {
    adapter: {
      ...adapter,
      format: "kohya",
      modules: results.map((r) => r.module),
      metadata: { ...adapter.metadata, ss_network_dim: String(rank), ss_network_alpha: String(rank) },
    },
    report: {
      modules: results.map((r) => r.entry),
      totalRelativeError: normSq > 0 ? Math.sqrt(errorSq / normSq) : 0,
    },
  };
}

/** The module with tensors that own their buffers, so posting it to a worker copies no unrelated bytes. */
function compactModule(m: AdapterModule): AdapterModule {
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of Object.entries(m.tensors)) {
    if (!t) continue;
    const owns = t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength;
    tensors[name] = owns ? t : { shape: t.shape, data: t.data.slice() };
  }
  return { ...m, tensors: tensors as AdapterModule["tensors"] };
}

function compressModule(m: AdapterModule, rank: number, opts: CompressOptions): ModuleResult {
  const svdOpts = { oversample: opts.oversample, powerIterations: opts.powerIterations, seed: opts.seed };
  const base = { component: m.component, path: m.path };

  if (m.kind === "lora" && !m.tensors.mid) {
    const down = m.tensors.down;
    const up = m.tensors.up;
    const R = down.shape[0];
    const kernel = down.shape.length === 4 ? [down.shape[2], down.shape[3]] : [1, 1];
    const target = kernel[0] * kernel[1] > 1 ? (opts.convRank ?? rank) : rank;
    const inner = numel(down.shape.slice(1));
    const out = up.shape[0];
    const scale = m.alpha === undefined ? 1 : m.alpha / R;
    const u = matrix(out, R, scaled(up.data, scale));
    const d = matrix(R, inner, down.data);
    if (R <= target) {
      // Already within the rank: kept exactly (scale folded so every output module has scale 1).
      return {
        module: asLora(m, u, d, R, down.shape, out),
        entry: {
          ...base,
          rankBefore: R,
          rank: R,
          relativeError: 0,
          norm: Math.sqrt(factoredNormSquared(u, d)),
        },
        errorSq: 0,
      };
    }
    const lr = factoredSvd(u, d, target, svdOpts);
    return fromLowRank(m, lr, R, down.shape.length === 4 ? [out, ...down.shape.slice(1)] : [out, inner]);
  }

  const delta = moduleDelta(m, 1);
  const out = delta.shape[0];
  const inner = numel(delta.shape.slice(1));
  const kernelSize = delta.shape.length === 4 ? delta.shape[2] * delta.shape[3] : 1;
  const target = Math.min(kernelSize > 1 ? (opts.convRank ?? rank) : rank, out, inner);
  const lr = randomizedSvd(matrix(out, inner, Float32Array.from(delta.data)), target, svdOpts);
  const result = fromLowRank(m, lr, Math.min(out, inner), delta.shape);
  if (m.tensors.diff_b) result.entry.droppedBias = true;
  return result;
}

function fromLowRank(
  m: AdapterModule,
  lr: LowRank,
  rankBefore: number,
  deltaShape: number[],
): { module: AdapterModule; entry: ModuleCompression; errorSq: number } {
  const r = lr.up.cols;
  const downShape = deltaShape.length === 4 ? [r, ...deltaShape.slice(1)] : [r, deltaShape[1]];
  const norm = Math.sqrt(lr.normSquared);
  return {
    module: asLora(m, lr.up, lr.down, r, downShape, deltaShape[0]),
    entry: {
      component: m.component,
      path: m.path,
      rankBefore,
      rank: r,
      relativeError: norm > 0 ? Math.sqrt(lr.residualSquared) / norm : 0,
      norm,
    },
    errorSq: lr.residualSquared,
  };
}

/** A LoRA module with alpha = rank (scale 1); conv shapes down [r, in, kh, kw], up [out, r, 1, 1]. */
function asLora(
  m: AdapterModule,
  up: Matrix,
  down: Matrix,
  r: number,
  downShape: number[],
  out: number,
): AdapterModule {
  const conv = downShape.length === 4;
  return {
    component: m.component,
    path: m.path,
    kind: "lora",
    layer: m.layer,
    tensors: {
      down: { shape: [r, ...downShape.slice(1)], data: down.data },
      up: { shape: conv ? [out, r, 1, 1] : [out, r], data: up.data },
    },
    alpha: r,
  };
}

function scaled(data: Float32Array, s: number): Float32Array {
  if (s === 1) return data;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] * s;
  return out;
}
