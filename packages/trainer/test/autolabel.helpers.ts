/**
 * A tiny WD14-shaped tagger the tests build with the engine's GraphBuilder: NHWC float32 BGR 0-255 pictures ->
 * mean colour per channel (scaled to 0..1) -> a fixed linear map -> sigmoid, written as model.onnx plus
 * selected_tags.csv. Every score is a closed-form function of the picture's mean colour, so the tests compute
 * the expected tags independently (expectedScores).
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { add, encodeModel, GraphBuilder, matmul, mul, reduceMean, sigmoid } from "@lora-studio/engine";
import sharp from "sharp";

const logit = (p: number) => Math.log(p / (1 - p));

/** name, category, [wB, wG, wR], bias — weights act on the mean of each channel in 0..1, BGR order. */
export const TINY_TAGS: [string, number, [number, number, number], number][] = [
  ["general", 9, [0, 0, 0], 2],
  ["sensitive", 9, [0, 0, 0], 0],
  ["red_background", 0, [-5, -5, 10], -2],
  ["blue_background", 0, [10, -5, -5], -2],
  ["hatsune_miku_(cosplay)", 4, [8, 0, 0], -4],
  ["^_^", 0, [0, 0, 0], 0],
  ["long_hair", 0, [0, 0, 0], logit(0.6)],
  ["simple_background", 0, [0, 0, 0], logit(0.4)],
  ["weak_character_(series)", 4, [0, 0, 0], logit(0.7)],
];

export function expectedScores(meanRgb: [number, number, number]): number[] {
  const [r, g, b] = meanRgb.map((v) => v / 255);
  return TINY_TAGS.map(([, , w, bias]) => 1 / (1 + Math.exp(-(w[0] * b + w[1] * g + w[2] * r + bias))));
}

/**
 * Writes model.onnx + selected_tags.csv; batch: a fixed batch size, or "dynamic" for a symbolic "N".
 * With `logits` the model ends before the sigmoid (some exports do), named "logits".
 */
export async function writeTinyTagger(
  dir: string,
  size: number,
  batch: number | "dynamic",
  opts: { logits?: boolean } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const t = TINY_TAGS.length;
  const b = new GraphBuilder("tiny_tagger");
  const x = b.input("input_1:0", "float32", [batch === "dynamic" ? 1 : batch, size, size, 3]);
  const w = new Float32Array(3 * t);
  for (const [j, [, , wt]] of TINY_TAGS.entries()) for (let c = 0; c < 3; c++) w[c * t + j] = wt[c];
  const weight = b.initializer("weight", { dtype: "float32", shape: [3, t], data: w });
  const bias = b.initializer("bias", {
    dtype: "float32",
    shape: [t],
    data: Float32Array.from(TINY_TAGS.map((r) => r[3])),
  });
  const mean = mul(reduceMean(x, [1, 2], false), 1 / 255);
  const logits = add(matmul(mean, weight), bias);
  if (opts.logits) b.output(logits, "logits");
  else b.output(sigmoid(logits), "predictions_sigmoid");
  let bytes = encodeModel(b.build());
  if (batch === "dynamic") bytes = symbolicBatch(bytes);
  await writeFile(join(dir, "model.onnx"), bytes);
  const csv = [
    "tag_id,name,category,count",
    ...TINY_TAGS.map(([n, c], i) => `${1000 + i},${n},${c},${100 - i}`),
  ];
  await writeFile(join(dir, "selected_tags.csv"), `${csv.join("\n")}\n`);
  return dir;
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function solidPng(
  path: string,
  w: number,
  h: number,
  rgb: [number, number, number],
): Promise<void> {
  await sharp({
    create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } },
  })
    .png()
    .toFile(path);
}

// --- a minimal protobuf rewrite, test-only: the first dim of every graph input/output becomes dim_param "N" ---

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

export type Field = { field: number; wire: number; raw: Uint8Array };

export function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let p = 0;
  const readVarint = () => {
    let r = 0;
    let m = 1;
    for (;;) {
      const byte = buf[p++];
      r += (byte & 0x7f) * m;
      if (byte < 0x80) return r;
      m *= 128;
    }
  };
  while (p < buf.length) {
    const key = readVarint();
    const wire = key % 8;
    const start = p;
    if (wire === 0) readVarint();
    else if (wire === 2) {
      const len = readVarint();
      out.push({ field: Math.floor(key / 8), wire, raw: buf.subarray(p, p + len) });
      p += len;
      continue;
    } else p += wire === 1 ? 8 : 4;
    out.push({ field: Math.floor(key / 8), wire, raw: buf.subarray(start, p) });
  }
  return out;
}

export function encode(fs: Field[]): Uint8Array {
  const parts: number[] = [];
  for (const f of fs) {
    parts.push(...varint(f.field * 8 + f.wire));
    if (f.wire === 2) parts.push(...varint(f.raw.length));
    parts.push(...f.raw);
  }
  return Uint8Array.from(parts);
}

const mapField = (buf: Uint8Array, field: number, fn: (raw: Uint8Array) => Uint8Array) =>
  encode(fields(buf).map((f) => (f.field === field && f.wire === 2 ? { ...f, raw: fn(f.raw) } : f)));

function symbolicBatch(model: Uint8Array): Uint8Array {
  const firstDimN = (shape: Uint8Array) => {
    const fs = fields(shape);
    fs[0] = { field: 1, wire: 2, raw: encode([{ field: 2, wire: 2, raw: new TextEncoder().encode("N") }]) };
    return encode(fs);
  };
  const valueInfo = (vi: Uint8Array) =>
    mapField(vi, 2, (type) => mapField(type, 1, (tt) => mapField(tt, 2, firstDimN)));
  return mapField(model, 7, (graph) =>
    encode(
      fields(graph).map((f) => (f.field === 11 || f.field === 12 ? { ...f, raw: valueInfo(f.raw) } : f)),
    ),
  );
}
