/**
 * Extract a LoRA from two checkpoints of the same model (fine-tuned minus base), as kohya's
 * extract_lora_from_models does: per module, delta = W_tuned - W_base, truncated SVD to rank r.
 *
 * - Linear and 1x1-conv modules get rank r; k x k convs only with convRank (kohya's --conv_dim), else skipped.
 * - Randomized SVD (math/rsvd.ts) on the float32 delta, flattened [out, in*kh*kw] for convs.
 * - Split: up = U sqrt(S), down = sqrt(S) V^T, alpha = rank (scale 1). kohya's script puts S on the up side;
 *   the balanced split gives the same product and keeps both factors in range when saved as fp16.
 * - Modules whose delta is all within `minDiff` (default 0: identical) are left out.
 */
import type { Adapter, AdapterModule, ModelFamily } from "../adapters/types.ts";
import { moduleTree } from "../architecture/index.ts";
import { matrix } from "../math/matrix.ts";
import { randomizedSvd } from "../math/rsvd.ts";
import { openModuleWeights } from "./checkpoint.ts";
import { MergeError } from "./errors.ts";
import type { ProgressCallback } from "./types.ts";

export interface ExtractOptions {
  base: string;
  tuned: string;
  rank: number;
  family: Exclude<ModelFamily, "unknown">;
  /** Rank for k x k convs (kernel > 1); absent or 0: those are not extracted. */
  convRank?: number;
  /** Largest |delta| treated as "unchanged" (default 0). */
  minDiff?: number;
  layout?: "original" | "diffusers";
  onProgress?: ProgressCallback;
  oversample?: number;
  powerIterations?: number;
  seed?: number;
}

export async function extractAdapter(opts: ExtractOptions): Promise<Adapter> {
  if (!Number.isInteger(opts.rank) || opts.rank < 1) {
    throw new MergeError("BAD_RANK", `rank must be a positive integer, got ${opts.rank}`);
  }
  const specs = moduleTree(opts.family).filter(
    (s) => s.kernel[0] * s.kernel[1] === 1 || (opts.convRank ?? 0) > 0,
  );
  const base = await openModuleWeights(opts.base, opts.family, opts.layout);
  const tuned = await openModuleWeights(opts.tuned, opts.family, opts.layout);
  const modules: AdapterModule[] = [];
  try {
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      const key = `${spec.component}:${spec.path}`;
      opts.onProgress?.(i, specs.length, key);
      const [wb, wt] = await Promise.all([
        base.weight(spec.component, spec.path),
        tuned.weight(spec.component, spec.path),
      ]);
      if (!wb || !wt) continue;
      if (wb.data.length !== wt.data.length) {
        throw new MergeError(
          "SHAPE_MISMATCH",
          `module ${key}: base [${wb.shape}] vs tuned [${wt.shape}]`,
          key,
        );
      }
      const delta = new Float32Array(wb.data.length);
      let maxAbs = 0;
      for (let j = 0; j < delta.length; j++) {
        delta[j] = wt.data[j] - wb.data[j];
        maxAbs = Math.max(maxAbs, Math.abs(delta[j]));
      }
      if (maxAbs <= (opts.minDiff ?? 0)) continue;
      const out = wb.shape[0];
      const inner = delta.length / out;
      const conv = wb.shape.length === 4;
      const kernelSize = conv ? wb.shape[2] * wb.shape[3] : 1;
      const target = Math.min(kernelSize > 1 ? (opts.convRank as number) : opts.rank, out, inner);
      const lr = randomizedSvd(matrix(out, inner, delta), target, opts);
      const r = lr.up.cols;
      modules.push({
        component: spec.component,
        path: spec.path,
        kind: "lora",
        layer: spec.layer,
        tensors: {
          down: { shape: conv ? [r, ...wb.shape.slice(1)] : [r, inner], data: lr.down.data },
          up: { shape: conv ? [out, r, 1, 1] : [out, r], data: lr.up.data },
        },
        alpha: r,
      });
    }
    opts.onProgress?.(specs.length, specs.length, "done");
  } finally {
    await base.close();
    await tuned.close();
  }
  return {
    source: `${opts.tuned} - ${opts.base}`,
    format: "kohya",
    family: opts.family,
    modules,
    metadata: {
      ss_network_module: "networks.lora",
      ss_network_dim: String(opts.rank),
      ss_network_alpha: String(opts.rank),
      ...(opts.convRank
        ? { ss_network_args: JSON.stringify({ conv_dim: opts.convRank, conv_alpha: opts.convRank }) }
        : {}),
    },
    unknownKeys: [],
  };
}
