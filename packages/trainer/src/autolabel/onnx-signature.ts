/**
 * Reads the declared inputs and outputs (name, element type, dims) of an .onnx file without loading it.
 *
 * Why by hand: the engine's Session exposes input/output names but not their shapes, and a tagger needs the
 * image size, the layout (NHWC or NCHW) and whether the batch dimension is free. protobufjs is not a
 * dependency of the trainer, and decoding a 300-500 MB ModelProto just to see four small ValueInfoProtos
 * would read the whole file: this walker reads only field headers through positional reads and skips the
 * length-delimited fields it does not need (initializers, nodes), so it touches a few kilobytes.
 *
 * Field numbers (onnx.proto): ModelProto.graph = 7; GraphProto.input = 11, output = 12; ValueInfoProto.name = 1,
 * type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1, shape = 2; TensorShapeProto.dim = 1;
 * Dimension.dim_value = 1, dim_param = 2.
 */
import { open } from "node:fs/promises";

export class OnnxSignatureError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "OnnxSignatureError";
  }
}

/** A dimension: a fixed size, or a symbolic/unknown one (`param` holds its name when the file gives one). */
export type OnnxDim = { value: number } | { param: string | undefined };

export interface OnnxValueInfo {
  name: string;
  /** onnx TensorProto.DataType name ("float", "uint8", ...) or "non-tensor". */
  elemType: string;
  dims: OnnxDim[];
}

export interface OnnxSignature {
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

const ELEM_TYPES: Record<number, string> = {
  1: "float",
  2: "uint8",
  3: "int8",
  4: "uint16",
  5: "int16",
  6: "int32",
  7: "int64",
  8: "string",
  9: "bool",
  10: "float16",
  11: "double",
  12: "uint32",
  13: "uint64",
  16: "bfloat16",
};

export function fixedDim(d: OnnxDim): number | undefined {
  return "value" in d && d.value > 0 ? d.value : undefined;
}

/** Reads the graph's declared inputs and outputs. Old IR versions list initializers as inputs too. */
export async function readOnnxSignature(path: string): Promise<OnnxSignature> {
  const fh = await open(path, "r").catch((e: NodeJS.ErrnoException) => {
    throw new OnnxSignatureError(path, `cannot open the model (${e.code ?? e.message})`);
  });
  try {
    const size = (await fh.stat()).size;
    const readAt = async (pos: number, len: number): Promise<Uint8Array> => {
      const buf = new Uint8Array(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    };
    const sig: OnnxSignature = { inputs: [], outputs: [] };
    // Walk ModelProto fields, descend into every graph occurrence (repeated messages merge in protobuf).
    let seenGraph = false;
    for await (const f of fieldsAt(readAt, 0, size, path)) {
      if (f.field !== 7 || f.wire !== 2) continue;
      seenGraph = true;
      for await (const g of fieldsAt(readAt, f.start, f.end, path)) {
        if ((g.field === 11 || g.field === 12) && g.wire === 2) {
          const info = decodeValueInfo(await readAt(g.start, g.end - g.start), path);
          (g.field === 11 ? sig.inputs : sig.outputs).push(info);
        }
      }
    }
    if (!seenGraph) throw new OnnxSignatureError(path, "no graph in the file (is it an ONNX model?)");
    return sig;
  } finally {
    await fh.close();
  }
}

interface FieldSpan {
  field: number;
  wire: number;
  /** For wire type 2: the payload's byte range; otherwise start = end = the position after the value. */
  start: number;
  end: number;
}

/** Field headers in [begin, end) read through small windows; payloads of wire type 2 are skipped over. */
async function* fieldsAt(
  readAt: (pos: number, len: number) => Promise<Uint8Array>,
  begin: number,
  end: number,
  file: string,
): AsyncGenerator<FieldSpan> {
  let pos = begin;
  while (pos < end) {
    const head = await readAt(pos, Math.min(32, end - pos));
    const r = new Reader(head, file, pos);
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0) throw new OnnxSignatureError(file, `invalid protobuf field 0 at byte ${pos}`);
    if (wire === 0) r.varint();
    else if (wire === 1) r.skip(8);
    else if (wire === 5) r.skip(4);
    else if (wire !== 2)
      throw new OnnxSignatureError(file, `unsupported protobuf wire type ${wire} at byte ${pos}`);
    if (wire === 2) {
      const len = r.varint();
      const start = pos + r.pos;
      if (start + len > end)
        throw new OnnxSignatureError(file, `a field at byte ${pos} runs past its message`);
      yield { field, wire, start, end: start + len };
      pos = start + len;
    } else {
      pos += r.pos;
      yield { field, wire, start: pos, end: pos };
    }
  }
}

class Reader {
  pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly file: string,
    private readonly base = 0,
  ) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) this.fail("truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    return this.fail("varint longer than 10 bytes");
  }
  bytes(): Uint8Array {
    const len = this.varint();
    if (this.pos + len > this.buf.length) this.fail("length-delimited field runs past its message");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(n: number): void {
    if (this.pos + n > this.buf.length) this.fail("truncated fixed-size field");
    this.pos += n;
  }
  skipValue(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.skip(8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.skip(4);
    else this.fail(`unsupported protobuf wire type ${wire}`);
  }
  fail(what: string): never {
    throw new OnnxSignatureError(this.file, `${what} at byte ${this.base + this.pos}`);
  }
}

/** Iterates (field, wire) pairs of one in-memory message, handing the reader positioned at the value. */
function eachField(buf: Uint8Array, file: string, visit: (field: number, wire: number, r: Reader) => void) {
  const r = new Reader(buf, file);
  while (!r.done) {
    const key = r.varint();
    const before = r.pos;
    visit(Math.floor(key / 8), key % 8, r);
    if (r.pos === before) r.skipValue(key % 8);
  }
}

function decodeValueInfo(buf: Uint8Array, file: string): OnnxValueInfo {
  const info: OnnxValueInfo = { name: "", elemType: "non-tensor", dims: [] };
  eachField(buf, file, (field, wire, r) => {
    if (field === 1 && wire === 2) info.name = new TextDecoder().decode(r.bytes());
    else if (field === 2 && wire === 2) {
      eachField(r.bytes(), file, (tf, tw, tr) => {
        if (tf !== 1 || tw !== 2) return; // only tensor types matter here
        eachField(tr.bytes(), file, (ef, ew, er) => {
          if (ef === 1 && ew === 0) {
            const code = er.varint();
            info.elemType = ELEM_TYPES[code] ?? `type ${code}`;
          } else if (ef === 2 && ew === 2) {
            eachField(er.bytes(), file, (sf, sw, sr) => {
              if (sf === 1 && sw === 2) info.dims.push(decodeDim(sr.bytes(), file));
            });
          }
        });
      });
    }
  });
  return info;
}

function decodeDim(buf: Uint8Array, file: string): OnnxDim {
  let dim: OnnxDim = { param: undefined };
  eachField(buf, file, (field, wire, r) => {
    if (field === 1 && wire === 0) {
      const v = r.varint();
      // A negative int64 (-1 for "any", written by some exporters) decodes as a huge unsigned number.
      dim = v <= Number.MAX_SAFE_INTEGER ? { value: v } : { param: undefined };
    } else if (field === 2 && wire === 2) dim = { param: new TextDecoder().decode(r.bytes()) };
  });
  return dim;
}

export function formatDims(dims: readonly OnnxDim[]): string {
  return `[${dims.map((d) => ("value" in d ? String(d.value) : (d.param ?? "?"))).join(", ")}]`;
}
