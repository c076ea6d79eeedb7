/**
 * HostTensor: the plain {dtype, shape, data} the runtime exchanges with callers and across worker threads
 * (structured-clone friendly, unlike ort.Tensor), plus conversions to/from onnxruntime tensors without copying.
 */
import ort from "onnxruntime-node";
import type { DType } from "../graph/ir.ts";
import { numel } from "../graph/ir.ts";

export type HostData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int8Array
  | Uint8Array;

export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: HostData;
}

const ARRAY_OF: Record<Exclude<DType, "bfloat16">, new (n: number) => HostData> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

/** A zero-filled tensor. */
export function zeros(dtype: DType, shape: number[]): HostTensor {
  if (dtype === "bfloat16") throw new Error("bfloat16 cannot cross the JS boundary in onnxruntime-node");
  return { dtype, shape: [...shape], data: new ARRAY_OF[dtype](numel(shape)) };
}

export function hostTensor(dtype: DType, shape: number[], data: HostData): HostTensor {
  if (data.length !== numel(shape))
    throw new Error(`tensor data has ${data.length} elements for shape [${shape}]`);
  return { dtype, shape, data };
}

/** Wraps without copying. */
export function toOrt(name: string, t: HostTensor): ort.Tensor {
  if (t.dtype === "bfloat16")
    throw new Error(`input ${name}: bfloat16 cannot cross the JS boundary; feed float32 and Cast`);
  if (t.data.length !== numel(t.shape)) {
    throw new Error(`input ${name}: ${t.data.length} elements for shape [${t.shape}]`);
  }
  // biome-ignore lint/suspicious/noExplicitAny: ort's Tensor constructor overloads are keyed by literal dtype.
  return new ort.Tensor(t.dtype as any, t.data as any, t.shape);
}

/** Unwraps without copying (the typed array is the one ORT produced). */
export function fromOrt(name: string, t: ort.Tensor): HostTensor {
  const dtype = t.type as DType;
  if (!(dtype in ARRAY_OF)) throw new Error(`output ${name}: unsupported tensor type ${t.type}`);
  return { dtype, shape: [...t.dims], data: t.data as HostData };
}
