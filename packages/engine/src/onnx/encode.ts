/**
 * Graph -> ONNX ModelProto bytes (ir_version 10, ai.onnx opset 21: a pair onnxruntime-node 1.30 accepts).
 *
 * Written by hand on protobufjs's low-level Writer instead of a generated/reflected schema: we only ever *write*
 * eight message types, all fields are plain scalars/strings/packed ints, and the Writer keeps external weights out
 * of the proto entirely (only location/offset/length strings), so no .proto file, codegen step or reflection
 * runtime is needed. Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
 * TensorProto, ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto, StringStringEntryProto).
 */
import protobuf from "protobufjs/minimal.js";
import type { Attribute, ExternalTensor, Graph, InlineTensor, Node, Value } from "../graph/ir.ts";
import { isExternal, ONNX_DTYPE_CODE } from "../graph/ir.ts";

export const IR_VERSION = 10;
export const OPSET = 21;

type Writer = protobuf.Writer;
const VARINT = 0;
const FIXED32 = 5;
const LEN = 2;

const tag = (w: Writer, field: number, wire: number): Writer => w.uint32((field << 3) | wire);

function str(w: Writer, field: number, s: string): void {
  tag(w, field, LEN).string(s);
}

function msg(w: Writer, field: number, body: (w: Writer) => void): void {
  tag(w, field, LEN).fork();
  body(w);
  w.ldelim();
}

function packedInt64(w: Writer, field: number, values: readonly number[]): void {
  if (values.length === 0) return;
  tag(w, field, LEN).fork();
  for (const v of values) w.int64(v);
  w.ldelim();
}

/** Where the bytes of an initializer live in the serialized model. */
export type TensorPlacement =
  | { kind: "inline" }
  /** location is relative to the directory of the .onnx file (a bare file name, see model-file.ts). */
  | { kind: "external"; location: string; offset: number; length: number };

export interface EncodeOptions {
  /** Decides, per initializer/constant value, whether its bytes are inline or external. Default: inline. */
  placement?: (v: Value) => TensorPlacement;
  producerName?: string;
  docString?: string;
}

function rawBytes(t: InlineTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function tensorProto(
  w: Writer,
  name: string,
  t: InlineTensor | ExternalTensor,
  place: TensorPlacement,
): void {
  packedInt64(w, 1, t.shape); // dims
  tag(w, 2, VARINT).int32(ONNX_DTYPE_CODE[t.dtype]); // data_type
  if (name !== "") str(w, 8, name);
  if (place.kind === "inline") {
    if (isExternal(t))
      throw new Error(`tensor ${name} lives in ${t.path}; it cannot be inlined by the encoder`);
    tag(w, 9, LEN).bytes(rawBytes(t)); // raw_data
    return;
  }
  const entry = (key: string, value: string) =>
    msg(w, 13, (e) => {
      str(e, 1, key);
      str(e, 2, value);
    });
  entry("location", place.location);
  entry("offset", String(place.offset));
  entry("length", String(place.length));
  tag(w, 14, VARINT).int32(1); // data_location = EXTERNAL
}

const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function attributeProto(w: Writer, name: string, a: Attribute): void {
  str(w, 1, name);
  tag(w, 20, VARINT).int32(ATTR_TYPE[a.kind]);
  switch (a.kind) {
    case "float":
      tag(w, 2, FIXED32).float(a.value);
      break;
    case "int":
      tag(w, 3, VARINT).int64(a.value);
      break;
    case "string":
      tag(w, 4, LEN).bytes(new TextEncoder().encode(a.value));
      break;
    case "tensor":
      msg(w, 5, (t) => tensorProto(t, "", a.value, { kind: "inline" }));
      break;
    case "floats":
      if (a.value.length > 0) {
        tag(w, 7, LEN).fork();
        for (const f of a.value) w.float(f);
        w.ldelim();
      }
      break;
    case "ints":
      packedInt64(w, 8, a.value);
      break;
  }
}

function nodeProto(w: Writer, n: Node): void {
  for (const i of n.inputs) str(w, 1, i ? i.name : "");
  for (const o of n.outputs) str(w, 2, o.name);
  str(w, 3, n.name);
  str(w, 4, n.op);
  if (n.domain !== "") str(w, 7, n.domain);
  for (const [k, a] of Object.entries(n.attributes)) msg(w, 5, (x) => attributeProto(x, k, a));
}

function valueInfo(w: Writer, v: Value): void {
  str(w, 1, v.name);
  msg(w, 2, (type) =>
    msg(type, 1, (tt) => {
      tag(tt, 1, VARINT).int32(ONNX_DTYPE_CODE[v.dtype]);
      msg(tt, 2, (shape) => {
        for (const d of v.shape) msg(shape, 1, (dim) => tag(dim, 1, VARINT).int64(d));
      });
    }),
  );
}

/** Serializes the graph. Initializers are placed by `options.placement` (external tensors must be external). */
export function encodeModel(graph: Graph, options: EncodeOptions = {}): Uint8Array {
  const place = options.placement ?? (() => ({ kind: "inline" }) as TensorPlacement);
  const w = protobuf.Writer.create();
  tag(w, 1, VARINT).int64(IR_VERSION);
  str(w, 2, options.producerName ?? "lora-studio");
  if (options.docString) str(w, 6, options.docString);
  msg(w, 7, (g) => {
    for (const n of graph.nodes) msg(g, 1, (x) => nodeProto(x, n));
    str(g, 2, graph.name);
    for (const v of graph.initializers) {
      if (!v.tensor) throw new Error(`initializer ${v.name} has no tensor data`);
      const tensor = v.tensor;
      msg(g, 5, (t) => tensorProto(t, v.name, tensor, place(v)));
    }
    for (const v of graph.inputs) msg(g, 11, (x) => valueInfo(x, v));
    for (const v of graph.outputs) msg(g, 12, (x) => valueInfo(x, v));
  });
  msg(w, 8, (o) => {
    str(o, 1, "");
    tag(o, 2, VARINT).int64(OPSET);
  });
  return w.finish();
}
