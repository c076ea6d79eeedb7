/**
 * Rewrites where the external initializers of a serialized ModelProto point, leaving every other byte of the model
 * as it was. Used on models ORT saved (optimizedModelFilePath): ORT writes *all* large initializers into one new
 * data file, and the optimized-model cache (../runtime/optimized-cache.ts) points the unchanged ones back at the
 * weight files they came from.
 *
 * Works on the wire format (protobufjs's Reader for parsing, raw byte slices for copying) instead of a decoded
 * schema, so fields we do not know (or ORT adds later) survive untouched. Only top-level graph initializers
 * (ModelProto.graph = 7, GraphProto.initializer = 5) are rewritten; callers check that no other reference to the
 * old data file remains (subgraph initializers, sparse initializers).
 * TensorProto fields used: name 8, external_data 13 (StringStringEntryProto key 1, value 2), data_location 14.
 */
import protobuf from "protobufjs/minimal.js";

const LEN = 2;

/** An initializer's external data reference as ORT saved it. */
export interface ExternalRef {
  name: string;
  location: string;
  offset: number;
  length: number;
}

/** New reference for an initializer; undefined keeps the old one. */
export type Relocate = (ref: ExternalRef) => Promise<Omit<ExternalRef, "name"> | undefined>;

interface Field {
  no: number;
  wire: number;
  /** Whole field, tag included. */
  start: number;
  end: number;
  /** Payload of a length-delimited field. */
  valueStart: number;
}

function fields(buf: Uint8Array, start: number, end: number): Field[] {
  const r = protobuf.Reader.create(buf);
  r.pos = start;
  const out: Field[] = [];
  while (r.pos < end) {
    const fieldStart = r.pos;
    const tag = r.uint32();
    const wire = tag & 7;
    let valueStart = r.pos;
    if (wire === LEN) {
      const len = r.uint32();
      valueStart = r.pos;
      r.skip(len);
    } else r.skipType(wire);
    out.push({ no: tag >>> 3, wire, start: fieldStart, end: r.pos, valueStart });
  }
  return out;
}

function varint(n: number): Uint8Array {
  const bytes: number[] = [];
  let v = n;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

function lenField(no: number, parts: Uint8Array[]): Uint8Array[] {
  const len = parts.reduce((n, p) => n + p.byteLength, 0);
  return [varint((no << 3) | LEN), varint(len), ...parts];
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

function entry(key: string, value: string): Uint8Array[] {
  return lenField(13, [...lenField(1, [utf8.encode(key)]), ...lenField(2, [utf8.encode(value)])]);
}

async function rewriteTensor(buf: Uint8Array, f: Field, relocate: Relocate): Promise<Uint8Array[]> {
  const own = fields(buf, f.valueStart, f.end);
  let name = "";
  const ext: Record<string, string> = {};
  for (const g of own) {
    if (g.no === 8) name = text.decode(buf.subarray(g.valueStart, g.end));
    if (g.no === 13) {
      let k = "";
      let v = "";
      for (const h of fields(buf, g.valueStart, g.end)) {
        if (h.no === 1) k = text.decode(buf.subarray(h.valueStart, h.end));
        if (h.no === 2) v = text.decode(buf.subarray(h.valueStart, h.end));
      }
      ext[k] = v;
    }
  }
  const whole = [buf.subarray(f.start, f.end)];
  if (ext.location === undefined) return whole;
  const next = await relocate({
    name,
    location: ext.location,
    offset: Number(ext.offset ?? 0),
    length: Number(ext.length ?? 0),
  });
  if (!next) return whole;
  const body = own.filter((g) => g.no !== 13).map((g) => buf.subarray(g.start, g.end));
  body.push(
    ...entry("location", next.location),
    ...entry("offset", String(next.offset)),
    ...entry("length", String(next.length)),
  );
  return lenField(5, body);
}

/** The model with every top-level initializer's external reference passed through `relocate`. */
export async function rewriteExternalData(model: Uint8Array, relocate: Relocate): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for (const f of fields(model, 0, model.byteLength)) {
    if (f.no !== 7 || f.wire !== LEN) {
      out.push(model.subarray(f.start, f.end));
      continue;
    }
    const graph: Uint8Array[] = [];
    for (const g of fields(model, f.valueStart, f.end)) {
      if (g.no === 5 && g.wire === LEN) graph.push(...(await rewriteTensor(model, g, relocate)));
      else graph.push(model.subarray(g.start, g.end));
    }
    out.push(...lenField(7, graph));
  }
  return Buffer.concat(out);
}
