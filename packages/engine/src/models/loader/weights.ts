/**
 * Weights referenced where they lie: a diffusers key is mapped to a tensor of an open safetensors file and
 * returned as an ExternalTensor {path, offset, byteLength}, which ORT memory-maps; nothing is read or copied.
 * Every stored tensor handed out is recorded, so a loader can report the tensors no model used.
 *
 * With an fp32 cache (fp32-cache.ts) attached, names, shapes and dtypes are still checked against the checkpoint
 * (errors and usage name its keys), but the reference points into the cache file, whose tensors carry the same
 * names as float32: no 16-bit initializer reaches the graph, so no Cast is emitted.
 */
import type { SafetensorsFile } from "@lora-studio/prompt-lora";
import type { DType, ExternalTensor } from "../../graph/ir.ts";
import { formatShape } from "../../graph/ir.ts";
import type { WeightSource } from "../../nn/module.ts";
import { CheckpointError } from "./errors.ts";
import type { Fp32CacheFile } from "./fp32-cache.ts";

const DTYPES: Record<string, DType> = { F32: "float32", F16: "float16", BF16: "bfloat16", F64: "float64" };

/**
 * Maps a diffusers key of one component to the stored key (undefined: the layout has no place for it), or to a
 * row range of a stored tensor (OpenCLIP's fused in_proj_weight holds q, k and v as rows [0,d) [d,2d) [2d,3d)):
 * rows of a row-major tensor are contiguous bytes, so a slice is still a plain external reference.
 */
export type KeyMapper = (
  diffusersKey: string,
) => string | { key: string; rows: [number, number] } | undefined;

export class FileWeights implements WeightSource {
  /** Stored keys handed out so far. */
  readonly used = new Set<string>();
  /** float32 copies of this component's tensors, same names (see fp32-cache.ts); undefined: use `file`. */
  fp32Cache: Fp32CacheFile | undefined;

  constructor(
    readonly file: SafetensorsFile,
    private readonly mapKey: KeyMapper,
    private readonly component: string,
  ) {}

  tensor(key: string, expected: readonly number[]): ExternalTensor {
    const target = this.mapKey(key);
    const where = `${this.component} parameter ${key}`;
    if (target === undefined) {
      throw new CheckpointError(
        "MISSING_TENSOR",
        this.file.path,
        `${where} has no place in this layout`,
        key,
      );
    }
    const stored = typeof target === "string" ? target : target.key;
    const rows = typeof target === "string" ? undefined : target.rows;
    const info = this.file.tensors.get(stored);
    if (!info) {
      throw new CheckpointError(
        "MISSING_TENSOR",
        this.file.path,
        `${where}: tensor "${stored}" ${formatShape(expected)} is not in the file`,
        stored,
      );
    }
    const dtype = DTYPES[info.dtype];
    if (!dtype) {
      throw new CheckpointError(
        "BAD_DTYPE",
        this.file.path,
        `${where}: dtype ${info.dtype} is not a float type`,
        stored,
      );
    }
    const cached = this.fp32Cache?.file.tensors.get(stored);
    const at = cached ?? info;
    let shape = info.shape;
    let offset = at.fileOffset;
    let byteLength = at.byteLength;
    if (rows) {
      const [from, to] = rows;
      if (info.shape.length === 0 || to > info.shape[0] || from < 0 || from >= to) {
        throw new CheckpointError(
          "SHAPE_MISMATCH",
          this.file.path,
          `${where}: rows ${from}..${to} do not fit "${stored}" ${formatShape(info.shape)}`,
          stored,
        );
      }
      const rowBytes = at.byteLength / info.shape[0];
      shape = [to - from, ...info.shape.slice(1)];
      offset += from * rowBytes;
      byteLength = (to - from) * rowBytes;
    }
    if (!sameData(shape, expected)) {
      const part = rows ? ` rows ${rows[0]}..${rows[1]}` : "";
      throw new CheckpointError(
        "SHAPE_MISMATCH",
        this.file.path,
        `${where}: tensor "${stored}"${part} has shape ${formatShape(shape)}, the model needs ${formatShape(expected)}`,
        stored,
      );
    }
    this.used.add(stored);
    if (cached) this.fp32Cache?.markUsed();
    const path = cached ? (this.fp32Cache as Fp32CacheFile).file.path : this.file.path;
    return { dtype: cached ? "float32" : dtype, shape: [...expected], path, offset, byteLength };
  }
}

/**
 * Equal shapes, or equal after dropping trailing 1s: the original layout stores the VAE attention projections as
 * 1x1 convs [C, C, 1, 1] where diffusers has Linear [C, C]; the bytes are identical.
 */
function sameData(stored: readonly number[], expected: readonly number[]): boolean {
  const trim = (s: readonly number[]) => {
    const out = [...s];
    while (out.length > 2 && out[out.length - 1] === 1) out.pop();
    return out;
  };
  const a = trim(stored);
  const b = trim(expected);
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
