/**
 * Graph IR: plain data describing an ONNX graph with static shapes.
 *
 * Values are typed (dtype + fully static shape): onnxruntime-node ignores `freeDimensionOverrides`, so every
 * graph is built for one concrete shape. Nodes are kept in creation order, which is a topological order because
 * a node can only consume values that already exist. The builder (builder.ts) creates these objects; the
 * serializer (../onnx) and autodiff read them.
 */

/** Element types. bfloat16 may only live inside a graph (it cannot cross the JS boundary in onnxruntime-node). */
export type DType =
  | "float32"
  | "float16"
  | "float64"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int8"
  | "uint8"
  | "bool";

/** ONNX TensorProto.DataType codes (onnx.proto). */
export const ONNX_DTYPE_CODE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
};

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4,
  float16: 2,
  float64: 8,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isFloatDType(d: DType): boolean {
  return d === "float32" || d === "float16" || d === "float64" || d === "bfloat16";
}

export function dtypeFromOnnxCode(code: number): DType {
  for (const [name, c] of Object.entries(ONNX_DTYPE_CODE)) if (c === code) return name as DType;
  throw new Error(`unsupported ONNX data type code ${code}`);
}

/** Tensor bytes held in memory (constants, small initializers). `data` is little-endian raw storage. */
export interface InlineTensor {
  dtype: DType;
  shape: number[];
  /** Typed array matching dtype: Float32Array, Float64Array, BigInt64Array, Int32Array, Uint8Array (bool/uint8),
   *  Int8Array, or Uint16Array (float16 / bfloat16 bit patterns). */
  data: ArrayBufferView;
}

/** Tensor bytes that stay in a file on disk (e.g. inside a user's .safetensors), read by ORT via memory map. */
export interface ExternalTensor {
  dtype: DType;
  shape: number[];
  /** Absolute path of the file holding the raw little-endian bytes. */
  path: string;
  /** Byte offset of the tensor inside that file. */
  offset: number;
  byteLength: number;
}

export type TensorSource = InlineTensor | ExternalTensor;

export function isExternal(t: TensorSource): t is ExternalTensor {
  return (t as ExternalTensor).path !== undefined;
}

/**
 * How a value comes into being:
 * - "input": a graph input fed at run time;
 * - "initializer": a named weight (inline or external), never differentiated unless also declared trainable
 *   by the caller (trainable parameters should be graph inputs);
 * - "constant": a builder-made constant (shape vectors, axes, scalars), serialized as an inline initializer;
 * - "node": an output of a node.
 */
export type ValueKind = "input" | "initializer" | "constant" | "node";

export interface Value {
  readonly id: number;
  /** Unique name inside the graph; carries the scope path ("down_blocks.0.attentions.0/MatMul_3:0"). */
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly kind: ValueKind;
  /** Producing node (kind "node"). */
  readonly producer?: Node;
  /** Index among the producer's outputs. */
  readonly outputIndex?: number;
  /** Tensor data for "initializer" and "constant" values. */
  readonly tensor?: TensorSource;
  /** Scope path in which the value was created ("" at the root). */
  readonly scope: string;
}

export type Attribute =
  | { kind: "int"; value: number }
  | { kind: "float"; value: number }
  | { kind: "string"; value: string }
  | { kind: "ints"; value: number[] }
  | { kind: "floats"; value: number[] }
  | { kind: "tensor"; value: InlineTensor };

export interface Node {
  readonly id: number;
  readonly op: string;
  /** Unique node name: "<scope>/<Op>_<n>". */
  readonly name: string;
  readonly domain: string;
  /** Inputs; `undefined` stands for an omitted optional input (serialized as ""). */
  readonly inputs: readonly (Value | undefined)[];
  readonly outputs: readonly Value[];
  readonly attributes: Readonly<Record<string, Attribute>>;
  readonly scope: string;
}

export interface Graph {
  name: string;
  inputs: Value[];
  /** Graph outputs, in order; output names are the values' names. */
  outputs: Value[];
  /** Initializer and constant values used by the nodes. */
  initializers: Value[];
  /** Nodes in topological order. */
  nodes: Node[];
}

/** Number of elements of a shape ([] is a scalar: 1 element). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/** Attribute readers with defaults, for the serializer and autodiff rules. */
export function attrInt(node: Node, name: string, dflt: number): number {
  const a = node.attributes[name];
  return a && a.kind === "int" ? a.value : dflt;
}
export function attrFloat(node: Node, name: string, dflt: number): number {
  const a = node.attributes[name];
  return a && a.kind === "float" ? a.value : dflt;
}
export function attrInts(node: Node, name: string, dflt: number[]): number[] {
  const a = node.attributes[name];
  return a && a.kind === "ints" ? a.value : dflt;
}
export function attrString(node: Node, name: string, dflt: string): string {
  const a = node.attributes[name];
  return a && a.kind === "string" ? a.value : dflt;
}

/** Reads an int64/int32 constant (shape vectors, axes) as numbers; undefined if the value is not a constant. */
export function constantInts(v: Value | undefined): number[] | undefined {
  if (!v?.tensor || isExternal(v.tensor)) return undefined;
  const d = v.tensor.data;
  if (d instanceof BigInt64Array) return Array.from(d, (x) => Number(x));
  if (d instanceof Int32Array) return Array.from(d);
  return undefined;
}

/** Reads a float constant as numbers (float32/float64 constants only). */
export function constantFloats(v: Value | undefined): number[] | undefined {
  if (!v?.tensor || isExternal(v.tensor)) return undefined;
  const d = v.tensor.data;
  if (d instanceof Float32Array || d instanceof Float64Array) return Array.from(d);
  return undefined;
}
