/**
 * Element types of safetensors files: byte sizes and conversion to/from float32.
 *
 * Written here rather than taken from a library because the npm options either cover only F16 (and are slow
 * per-element functions) or pull in a tensor runtime; we need every safetensors float type, bulk conversion over
 * typed arrays and exact IEEE rounding (round-to-nearest-even) so that F16/BF16 round trips are bit-exact.
 *
 * All multi-byte data is little-endian, which is what every machine Node runs on in practice; typed arrays are
 * built over aligned copies when a byte view is not aligned to the element size.
 */

import { SafetensorsError } from "./errors.ts";
import type { DType } from "./types.ts";

const BYTE_SIZE: Readonly<Record<DType, number>> = {
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
};

export const ALL_DTYPES: readonly DType[] = Object.keys(BYTE_SIZE) as DType[];

const FLOAT_DTYPES: ReadonlySet<DType> = new Set<DType>(["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"]);

/** Label used as the `file` of errors raised on in-memory data (no file involved). */
const IN_MEMORY = "<memory>";

export function isDType(value: unknown): value is DType {
  return typeof value === "string" && Object.hasOwn(BYTE_SIZE, value);
}

export function isFloatDType(dtype: DType): boolean {
  return FLOAT_DTYPES.has(dtype);
}

export function dtypeByteSize(dtype: DType): number {
  const size = BYTE_SIZE[dtype];
  if (size === undefined)
    throw new SafetensorsError("UNKNOWN_DTYPE", IN_MEMORY, `unknown dtype ${String(dtype)}`);
  return size;
}

// ---------------------------------------------------------------------------------------------------------------
// Half precision (IEEE 754 binary16)

let f16Table: Uint32Array | undefined;

/**
 * Float32 bit patterns of all 65536 halves (256 KiB), built once: a table lookup is the fastest bulk decoder in
 * JS, and copying bits (not float values) keeps NaN payloads exact.
 */
function halfTable(): Uint32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  const asFloat = new Float32Array(bits.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      bits[h] = sign | 0x7f800000 | (mant << 13); // Inf / NaN, payload kept
    } else if (exp !== 0) {
      bits[h] = sign | ((exp + 112) << 23) | (mant << 13); // rebias 15 -> 127
    } else {
      asFloat[h] = mant * 2 ** -24; // zero and subnormals are exact in float32
      bits[h] |= sign;
    }
  }
  f16Table = bits;
  return bits;
}

export function f16ToF32(halves: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(halves.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < halves.length; i++) outBits[i] = table[halves[i]];
  return out;
}

/** One half (bits) to float32 bits, as f16ToF32 decodes it. */
export function f16BitsToF32Bits(h: number): number {
  return halfTable()[h & 0xffff];
}

/** One float32 (as bits) to half bits, round-to-nearest-even, overflow to Inf, NaN stays (quiet) NaN. */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // half exponent field if the value were normal
  if (e >= 31) return sign | 0x7c00;
  if (e >= 1) {
    let q = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (q & 1) !== 0)) q++; // a carry into the exponent is correct
    return sign | q;
  }
  // Half subnormal (or zero): value / 2^-24 = full * 2^(exp-126), so drop (14 - e) low bits.
  const shift = 14 - e;
  if (shift > 24 || exp === 0) return sign; // below half of the smallest subnormal (f32 subnormals included)
  const full = mant | 0x800000;
  let q = full >>> shift;
  const rem = full & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (q & 1) !== 0)) q++;
  return sign | q;
}

/** |x| bits of the smallest float32 that is a normal half (2^-14), and of 2^16 (beyond: overflow or Inf/NaN). */
const HALF_NORMAL_MIN = 0x38800000;
const HALF_NORMAL_END = 0x47800000;
/** Exponent rebias 127 -> 15 on the float32 bits (112 << 23), minus the round-half-up bias just below bit 13. */
const REBIAS_ROUND = 0x38000000 - 0xfff;

export function f32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  f32ToF16Into(values, out);
  return out;
}

/**
 * Encodes `values` into `out` (same length). Hot path (|x| in [2^-14, 2^16), i.e. the normal halves and the
 * values that round up to Inf): rebias the exponent in the integer bits and round to nearest-even by adding
 * 0xfff plus the lowest kept mantissa bit before dropping 13 bits. A carry out of the mantissa bumps the
 * exponent, which is exactly the right result, up to 0x7c00 (Inf). Zeros, subnormals, Inf and NaN are rare in
 * weights and take the per-case routine. ~1-2 ns per element instead of ~16 for the per-case routine alone.
 */
export function f32ToF16Into(values: Float32Array, out: Uint16Array): void {
  // Signed 32-bit view: V8 keeps every value below in int32 registers (a Uint32Array read above 2^31 is not).
  const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
  const n = values.length;
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    const a = x & 0x7fffffff;
    if (a >= HALF_NORMAL_MIN && a < HALF_NORMAL_END) {
      out[i] = ((x >> 16) & 0x8000) | ((a - REBIAS_ROUND + ((a >> 13) & 1)) >> 13);
    } else out[i] = f32BitsToF16(x >>> 0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// bfloat16: the top half of a float32

export function bf16ToF32(values: Uint16Array): Float32Array {
  const out = new Float32Array(values.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < values.length; i++) bits[i] = values[i] << 16;
  return out;
}

export function f32ToBf16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = bits[i];
    if ((x & 0x7fffffff) > 0x7f800000)
      out[i] = (x >>> 16) | 0x40; // NaN: keep it a (quiet) NaN
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16; // round-to-nearest-even, overflow carries to Inf
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// 8-bit floats. E4M3 is the "FN" variant used by PyTorch/safetensors (bias 7, no Inf, only S.1111.111 is NaN,
// max 448); E5M2 is IEEE-like (bias 15, Inf and NaN) and is exactly the top byte of a half.

interface MiniFloat {
  mantBits: number;
  bias: number;
  /** Largest finite code without the sign bit. */
  maxCode: number;
  /** Code (without sign) that overflow and Inf become: Inf for E5M2, NaN for E4M3FN (as PyTorch casts). */
  overflowCode: number;
  nanCode: number;
}

const E4M3: MiniFloat = { mantBits: 3, bias: 7, maxCode: 0x7e, overflowCode: 0x7f, nanCode: 0x7f };
const E5M2: MiniFloat = { mantBits: 2, bias: 15, maxCode: 0x7b, overflowCode: 0x7c, nanCode: 0x7e };

function decodeMiniFloat(code: number, f: MiniFloat): number {
  const sign = code & 0x80 ? -1 : 1;
  const mag = code & 0x7f;
  if (f === E4M3 && mag === 0x7f) return Number.NaN;
  const exp = mag >> f.mantBits;
  const mant = mag & ((1 << f.mantBits) - 1);
  const expMax = (1 << (7 - f.mantBits)) - 1;
  if (f === E5M2 && exp === expMax) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exp === 0) return sign * mant * 2 ** (1 - f.bias - f.mantBits);
  return sign * (1 + mant / (1 << f.mantBits)) * 2 ** (exp - f.bias);
}

function miniTable(f: MiniFloat): Float32Array {
  const t = new Float32Array(256);
  for (let c = 0; c < 256; c++) t[c] = decodeMiniFloat(c, f);
  return t;
}

let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

function encodeMiniFloat(x: number, f: MiniFloat): number {
  const sign = (x >>> 24) & 0x80;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? f.nanCode : f.overflowCode);
  const drop = 23 - f.mantBits;
  const e = exp - 127 + f.bias;
  let q: number;
  let rem: number;
  let half: number;
  if (e >= 1) {
    if (e > 31) return sign | f.overflowCode;
    q = (e << f.mantBits) | (mant >>> drop);
    rem = mant & ((1 << drop) - 1);
    half = 1 << (drop - 1);
  } else {
    const shift = drop + 1 - e;
    if (shift > 24 || exp === 0) return sign;
    const full = mant | 0x800000;
    q = full >>> shift;
    rem = full & ((1 << shift) - 1);
    half = 1 << (shift - 1);
  }
  if (rem > half || (rem === half && (q & 1) !== 0)) q++;
  return sign | (q > f.maxCode ? f.overflowCode : q);
}

function encodeAll(values: Float32Array, f: MiniFloat): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeMiniFloat(bits[i], f);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Bulk conversion of raw little-endian bytes

/** The bytes as a view of the given element size, copied first if the view is not aligned. */
function aligned(bytes: Uint8Array, elementSize: number): ArrayBuffer {
  if (bytes.byteOffset % elementSize === 0 && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  return bytes.slice().buffer;
}

function checkLength(bytes: Uint8Array, dtype: DType): number {
  const size = dtypeByteSize(dtype);
  if (bytes.byteLength % size !== 0) {
    throw new SafetensorsError(
      "INVALID_TENSOR",
      IN_MEMORY,
      `${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`,
    );
  }
  return bytes.byteLength / size;
}

/**
 * Raw bytes of any dtype to float32. Floats are converted (F64 rounds to nearest), integers and BOOL become
 * their numeric value (I64 beyond 2^24 loses precision, as any float32 would).
 */
export function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = checkLength(bytes, dtype);
  const size = dtypeByteSize(dtype);
  const offset = bytes.byteOffset % size === 0 && bytes.buffer instanceof ArrayBuffer ? bytes.byteOffset : 0;
  const buf = aligned(bytes, size);
  switch (dtype) {
    case "F32":
      return new Float32Array(buf.slice(offset, offset + n * 4));
    case "F16":
      return f16ToF32(new Uint16Array(buf, offset, n));
    case "BF16":
      return bf16ToF32(new Uint16Array(buf, offset, n));
    case "F64":
      return Float32Array.from(new Float64Array(buf, offset, n));
    case "F8_E4M3":
    case "F8_E5M2": {
      if (dtype === "F8_E4M3") e4m3Table ??= miniTable(E4M3);
      else e5m2Table ??= miniTable(E5M2);
      const table = dtype === "F8_E4M3" ? e4m3Table! : e5m2Table!;
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[bytes[i]];
      return out;
    }
    case "I64": {
      const src = new BigInt64Array(buf, offset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    case "I32":
      return Float32Array.from(new Int32Array(buf, offset, n));
    case "I16":
      return Float32Array.from(new Int16Array(buf, offset, n));
    case "I8":
      return Float32Array.from(new Int8Array(buf, offset, n));
    case "U8":
      return Float32Array.from(bytes);
    case "BOOL":
      return Float32Array.from(bytes, (b) => (b !== 0 ? 1 : 0));
  }
}

/** Float32 values to raw little-endian bytes of a float dtype (round-to-nearest-even for narrower types). */
export function fromFloat32(values: Float32Array, dtype: DType): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(values.slice().buffer);
    case "F16":
      return new Uint8Array(f32ToF16(values).buffer);
    case "BF16":
      return new Uint8Array(f32ToBf16(values).buffer);
    case "F64":
      return new Uint8Array(Float64Array.from(values).buffer);
    case "F8_E4M3":
      return encodeAll(values, E4M3);
    case "F8_E5M2":
      return encodeAll(values, E5M2);
    default:
      throw new SafetensorsError(
        "UNSUPPORTED_CONVERSION",
        IN_MEMORY,
        `cannot convert float32 to ${dtype}: only float dtypes are supported`,
      );
  }
}
