// dtype conversions checked against independent references: IEEE formulas evaluated in float64 arithmetic
// (not bit manipulation), nearest-value searches over the full set of representable values, and known
// constants of the formats.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ALL_DTYPES,
  bf16ToF32,
  dtypeByteSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  fromFloat32,
  toFloat32,
} from "../src/safetensors/dtypes.ts";
import { SafetensorsError } from "../src/safetensors/errors.ts";

/** binary16 by the textbook formula: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024. */
function halfByFormula(h: number): number {
  const s = h >= 0x8000 ? -1 : 1;
  const e = Math.floor((h % 0x8000) / 1024);
  const m = h % 1024;
  if (e === 31) return m === 0 ? s * Number.POSITIVE_INFINITY : Number.NaN;
  if (e === 0) return s * (m / 1024) * 2 ** -14;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function f32Bits(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0];
}

function fromBits(bits: number): number {
  return new Float32Array(Uint32Array.of(bits).buffer)[0];
}

const allHalves = Uint16Array.from({ length: 65536 }, (_, i) => i);

test("f16ToF32 decodes all 65536 halves like the IEEE formula (signed zeros and NaN included)", () => {
  const decoded = f16ToF32(allHalves);
  for (let h = 0; h < 65536; h++) {
    const want = halfByFormula(h);
    if (Number.isNaN(want)) assert.ok(Number.isNaN(decoded[h]), `half 0x${h.toString(16)}`);
    else
      assert.ok(
        Object.is(decoded[h], want) || (want === 0 && Object.is(decoded[h], want)),
        `half 0x${h.toString(16)}`,
      );
  }
  assert.ok(Object.is(decoded[0x8000], -0));
  // NaN payloads survive (bits are copied, not float values): 0xfe01 -> sign | exponent | payload << 13.
  assert.equal(new Uint32Array(decoded.buffer)[0xfe01], (0x80000000 | 0x7f800000 | (0x201 << 13)) >>> 0);
  assert.equal(decoded[0x7bff], 65504);
  assert.equal(decoded[0x0001], 2 ** -24);
});

test("f32ToF16 maps every half's float32 value back to the same bits", () => {
  const back = f32ToF16(f16ToF32(allHalves));
  for (let h = 0; h < 65536; h++) {
    const isNaNCode = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaNCode)
      assert.ok((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0, `NaN 0x${h.toString(16)}`);
    else assert.equal(back[h], h, `half 0x${h.toString(16)}`);
  }
});

/** Nearest half by search over the sorted finite non-negative halves; ties go to the even code. */
const positiveHalves = Array.from({ length: 0x7c00 }, (_, h) => halfByFormula(h)); // 0 .. 65504, increasing
function nearestHalfByFormula(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (Number.isNaN(x)) return Number.NaN;
  // Overflow threshold: halfway between 65504 and the next step 65536 (which would be 2^16).
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = positiveHalves.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (positiveHalves[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - positiveHalves[lo];
  const dHi = positiveHalves[hi] - a;
  let code: number;
  if (dLo < dHi) code = lo;
  else if (dHi < dLo) code = hi;
  else code = lo % 2 === 0 ? lo : hi;
  if (a >= positiveHalves[hi]) code = hi;
  return sign | code;
}

test("f32ToF16 rounds to nearest, ties to even, at every midpoint between adjacent halves", () => {
  const inputs: number[] = [];
  for (let h = 0; h < 0x7bff; h++) {
    const mid = (positiveHalves[h] + positiveHalves[h + 1]) / 2; // exact in float32: 12 significant bits
    assert.equal(Math.fround(mid), mid);
    inputs.push(mid, -mid, fromBits(f32Bits(mid) + 1), fromBits(f32Bits(mid) - 1));
  }
  inputs.push(
    65519.99,
    65520,
    1e10,
    -1e10,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    1e-30,
    -1e-30,
  );
  const got = f32ToF16(Float32Array.from(inputs));
  const rounded = Float32Array.from(inputs);
  for (let i = 0; i < inputs.length; i++) {
    assert.equal(got[i], nearestHalfByFormula(rounded[i]), `input ${rounded[i]}`);
  }
});

test("f32ToF16 agrees with the nearest-half search on 200k random float32 bit patterns", () => {
  let seed = 12345;
  const bits = new Uint32Array(200_000);
  for (let i = 0; i < bits.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    // Bias the exponent towards the half range so most samples are interesting.
    const exp = 100 + (seed % 45);
    bits[i] = ((seed & 1) << 31) | (exp << 23) | ((Math.imul(seed, 2654435761) >>> 9) & 0x7fffff);
  }
  const values = new Float32Array(bits.buffer);
  const got = f32ToF16(values);
  for (let i = 0; i < values.length; i++) {
    assert.equal(got[i], nearestHalfByFormula(values[i]), `input ${values[i]}`);
  }
  const nan = f32ToF16(Float32Array.of(Number.NaN, fromBits(0x7f800001), fromBits(0xffc00000)));
  for (const h of nan) assert.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0, "NaN stays NaN");
});

test("bf16ToF32 decodes all 65536 bfloat16 values like the formula; f32ToBf16 round-trips them", () => {
  const decoded = bf16ToF32(allHalves);
  for (let b = 0; b < 65536; b++) {
    const s = b >= 0x8000 ? -1 : 1;
    const e = (b >> 7) & 0xff;
    const m = b & 0x7f;
    let want: number;
    if (e === 255) want = m === 0 ? s * Number.POSITIVE_INFINITY : Number.NaN;
    else if (e === 0) want = s * (m / 128) * 2 ** -126;
    else want = s * (1 + m / 128) * 2 ** (e - 127);
    if (Number.isNaN(want)) assert.ok(Number.isNaN(decoded[b]));
    else assert.ok(Object.is(decoded[b], want), `bf16 0x${b.toString(16)}`);
  }
  const back = f32ToBf16(decoded);
  for (let b = 0; b < 65536; b++) {
    if (Number.isNaN(decoded[b])) assert.ok(Number.isNaN(bf16ToF32(Uint16Array.of(back[b]))[0]));
    else assert.equal(back[b], b);
  }
});

test("f32ToBf16 rounds to nearest even (checked with float64 distances)", () => {
  let seed = 99;
  const values = new Float32Array(100_000);
  for (let i = 0; i < values.length; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    values[i] = fromBits(seed);
    if (!Number.isFinite(values[i])) values[i] = 1.5; // NaN/Inf are covered by the exhaustive test
  }
  values[0] = fromBits(0x3f808000); // exact tie, lower code 0x3f80 even -> down
  values[1] = fromBits(0x3f818000); // exact tie, lower code 0x3f81 odd -> up
  values[2] = fromBits(0x7f7fffff); // max float32 rounds past max bf16 -> Inf
  const got = f32ToBf16(values);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    const down = f32Bits(x) >>> 16;
    const lo = bf16ToF32(Uint16Array.of(down))[0];
    const hi = bf16ToF32(Uint16Array.of(down + 1))[0];
    const dLo = Math.abs(x - lo);
    const dHi = Math.abs(hi - x); // hi may be Inf: then dHi is Inf unless x is exactly halfway to 2^128
    let want = dLo < dHi ? down : dHi < dLo ? down + 1 : down % 2 === 0 ? down : down + 1;
    if ((down & 0x7fff) === 0x7f7f && !Number.isFinite(hi)) {
      // Next code is Inf: round to Inf when x is at or past the midpoint to 2^128.
      want = Math.abs(x) >= (Math.abs(lo) + 2 ** 128) / 2 ? down + 1 : down;
    }
    assert.equal(got[i], want, `input ${x}`);
  }
  assert.equal(got[0], 0x3f80);
  assert.equal(got[1], 0x3f82);
  assert.equal(got[2], 0x7f80);
});

test("F8_E4M3 (fn) and F8_E5M2 decode to the formats' known values and round-trip", () => {
  const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const e4 = toFloat32(codes, "F8_E4M3");
  assert.equal(e4[0x7e], 448); // largest finite
  assert.equal(e4[0x01], 2 ** -9); // smallest subnormal
  assert.equal(e4[0x08], 2 ** -6); // smallest normal
  assert.equal(e4[0x38], 1);
  assert.equal(e4[0xb8], -1);
  assert.ok(Number.isNaN(e4[0x7f]) && Number.isNaN(e4[0xff]));
  assert.equal(e4.filter((v) => Number.isNaN(v)).length, 2, "E4M3FN has no Inf and exactly two NaN codes");
  const e5 = toFloat32(codes, "F8_E5M2");
  for (let c = 0; c < 256; c++) {
    const want = halfByFormula(c << 8); // E5M2 is the top byte of a binary16
    if (Number.isNaN(want)) assert.ok(Number.isNaN(e5[c]));
    else assert.ok(Object.is(e5[c], want), `e5m2 0x${c.toString(16)}`);
  }
  for (const [dtype, decoded] of [
    ["F8_E4M3", e4],
    ["F8_E5M2", e5],
  ] as const) {
    const back = fromFloat32(decoded, dtype);
    for (let c = 0; c < 256; c++) {
      if (Number.isNaN(decoded[c])) assert.ok(Number.isNaN(toFloat32(back.subarray(c, c + 1), dtype)[0]));
      else assert.equal(back[c], c, `${dtype} 0x${c.toString(16)}`);
    }
  }
  // Rounding: 1 + 1/16 is halfway between E4M3 1 (0x38) and 1.125 (0x39): ties to even -> 0x38.
  assert.deepEqual(
    [...fromFloat32(Float32Array.of(1.0625, 1.0626, 464, 500, 1e6), "F8_E4M3")],
    [0x38, 0x39, 0x7e, 0x7f, 0x7f],
  );
  assert.deepEqual([...fromFloat32(Float32Array.of(57344, 61440, 1e6), "F8_E5M2")], [0x7b, 0x7c, 0x7c]);
});

test("toFloat32 converts integer and bool dtypes by value, from unaligned views too", () => {
  const raw = new Uint8Array(1 + 8 * 3);
  const view = new DataView(raw.buffer, 1);
  view.setBigInt64(0, -5n, true);
  view.setBigInt64(8, 1n << 40n, true);
  view.setBigInt64(16, 7n, true);
  assert.deepEqual([...toFloat32(raw.subarray(1), "I64")], [-5, 2 ** 40, 7]);
  const i16 = new Uint8Array(5);
  new DataView(i16.buffer, 1).setInt16(0, -300, true);
  new DataView(i16.buffer, 1).setInt16(2, 300, true);
  assert.deepEqual([...toFloat32(i16.subarray(1), "I16")], [-300, 300]);
  assert.deepEqual([...toFloat32(Uint8Array.of(0, 2, 1), "BOOL")], [0, 1, 1]);
  assert.deepEqual([...toFloat32(Uint8Array.of(255, 1), "I8")], [-1, 1]);
  assert.deepEqual([...toFloat32(Uint8Array.of(255, 1), "U8")], [255, 1]);
  const f64 = new Uint8Array(17);
  new DataView(f64.buffer, 1).setFloat64(0, 1 / 3, true);
  new DataView(f64.buffer, 1).setFloat64(8, -2.5, true);
  assert.deepEqual([...toFloat32(f64.subarray(1), "F64")], [Math.fround(1 / 3), -2.5]);
  const f32 = new Uint8Array(9);
  new DataView(f32.buffer, 1).setFloat32(0, 1.25, true);
  new DataView(f32.buffer, 1).setFloat32(4, -7, true);
  assert.deepEqual([...toFloat32(f32.subarray(1), "F32")], [1.25, -7]);
});

test("fromFloat32 then toFloat32 is the identity on values exact in each float dtype", () => {
  const exact = Float32Array.of(0, -0, 1, -2, 0.5, 3, -448, 2 ** -6);
  for (const dtype of ["F32", "F64", "F16", "BF16", "F8_E4M3", "F8_E5M2"] as const) {
    const bytes = fromFloat32(exact, dtype);
    assert.equal(bytes.byteLength, exact.length * dtypeByteSize(dtype));
    assert.deepEqual([...toFloat32(bytes, dtype)], [...exact], dtype);
  }
  assert.throws(() => fromFloat32(exact, "I32"), SafetensorsError);
  assert.throws(() => toFloat32(new Uint8Array(3), "F16"), SafetensorsError);
});

test("byte sizes of every dtype", () => {
  const sizes = Object.fromEntries(ALL_DTYPES.map((d) => [d, dtypeByteSize(d)]));
  assert.deepEqual(sizes, {
    F64: 8,
    F32: 4,
    F16: 2,
    BF16: 2,
    I64: 8,
    I32: 4,
    I16: 2,
    I8: 1,
    U8: 1,
    BOOL: 1,
    F8_E4M3: 1,
    F8_E5M2: 1,
  });
});
