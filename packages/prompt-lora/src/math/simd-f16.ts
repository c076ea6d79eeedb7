/**
 * Fused "half + float32 delta -> half" for baking fp16 checkpoints: out = f16(f32(h) + d), bit-identical to
 * decoding with safetensors/dtypes f16ToF32, adding in float32 and encoding with f32ToF16 (round to nearest
 * even), but 8 lanes at a time in WebAssembly SIMD and without materialising the float32 weight.
 *
 * Why: decoding, adding and re-encoding 122M SD1.5 attention weights in JS loops took ~1.5 s of a bake; here it
 * is a few hundred ms. Only the common case runs in the kernel: halves that are normal numbers, whose sums are
 * normal halves (or round up to Inf). A group of 8 holding anything else (zero, subnormal, Inf/NaN in or out) is
 * listed by the kernel and redone by the exact scalar code, so every input gives the scalar result.
 */
import { f16BitsToF32Bits, f32BitsToF16 } from "../safetensors/dtypes.ts";
import { packColumnPanels } from "./gemm-packed.ts";
import { gemmInstance } from "./simd-gemm.ts";
import {
  add32,
  end,
  f32x4add,
  forLoop,
  get,
  I32,
  i32c,
  mul32,
  set,
  simd,
  singleFunctionModule,
  uleb,
  V128,
  type WasmMemory,
  wasmApi,
} from "./wasm-asm.ts";

// SIMD opcodes (WebAssembly SIMD, final numbering).
const load16x4u = (offset: number) => [...simd(0x04), 0, ...uleb(offset)];
const load = (offset: number) => [...simd(0x00), 0, ...uleb(offset)];
const store = [...simd(0x0b), 0, 0];
const splat32 = simd(0x11);
const vAnd = simd(0x4e);
const vOr = simd(0x50);
const anyTrue = simd(0x53);
const geU32 = simd(0x40);
const shl32 = simd(0xab);
const shrS32 = simd(0xac);
const shrU32 = simd(0xad);
const addI32 = simd(0xae);
const subI32 = simd(0xb1);
const maxU32 = simd(0xb9);
const narrowU16 = simd(0x86);
const ifVoid = [0x04, 0x40];
const i32store = [0x36, 2, 0];

// Params: h, d, o (byte pointers), n (elements, multiple of 8), exc (pointer to the list of flagged groups).
const [H, D, O, N, EXC] = [0, 1, 2, 3, 4];
const [Ii, CNT, HP, DP, OP] = [5, 6, 7, 8, 9];
const [LO, HI, WORST, X, A] = [10, 11, 12, 13, 14];
const [K7C00, K0400, KSIGNEXP, KBIAS, KABS, KMIN, KRANGE, KREB, K1, K8000, KZERO] = [
  15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
];

const c32 = (v: number) => [...i32c(v | 0), ...splat32];

/**
 * Four lanes at byte offset `off` of the halves: result halves (as i32x4) into `dst`. Both range checks map
 * onto one unsigned scale, where a lane is in the fast path iff its value is below KRANGE (2^27 - 2^24):
 * - input: ((h & 0x7c00) - 0x400) << 13 is below it iff the half's exponent is 1..30 (normal);
 * - output: |x| - 2^-14 (bits) is below it iff the float32 sum lies in [2^-14, 2^16), i.e. is a normal half
 *   or rounds up to Inf (which the encoding below gives exactly).
 * WORST keeps the unsigned maximum of both over the group; the group is flagged when it reaches KRANGE.
 */
function fourLanes(off: number, dst: number): number[] {
  return [
    ...get(HP),
    ...load16x4u(off),
    ...set(X),
    // input check
    ...get(WORST),
    ...get(X),
    ...get(K7C00),
    ...vAnd,
    ...get(K0400),
    ...subI32,
    ...i32c(13),
    ...shl32,
    ...maxU32,
    ...set(WORST),
    // float bits = sign | (exponent + 112) << 23 | mantissa << 13: the half moved to the top (h << 16) and
    // shifted arithmetically by 3 puts sign, exponent and mantissa in place (the sign smeared over bits
    // 28..30, masked off); adding 112 << 23 rebiases the exponent. Then + delta in float32.
    ...get(X),
    ...i32c(16),
    ...shl32,
    ...i32c(3),
    ...shrS32,
    ...get(KSIGNEXP),
    ...vAnd,
    ...get(KBIAS),
    ...addI32,
    ...get(DP),
    ...load(off * 2),
    ...f32x4add,
    ...set(X),
    // output check on a = |x| bits
    ...get(X),
    ...get(KABS),
    ...vAnd,
    ...set(A),
    ...get(WORST),
    ...get(A),
    ...get(KMIN),
    ...subI32,
    ...maxU32,
    ...set(WORST),
    // half = ((a - rebias + 0xfff + ((a >> 13) & 1)) >> 13) | sign (round to nearest even)
    ...get(A),
    ...get(KREB),
    ...subI32,
    ...get(A),
    ...i32c(13),
    ...shrS32,
    ...get(K1),
    ...vAnd,
    ...addI32,
    ...i32c(13),
    ...shrS32,
    ...get(X),
    ...i32c(16),
    ...shrU32,
    ...get(K8000),
    ...vAnd,
    ...vOr,
    ...set(dst),
  ];
}

function kernelBody(): number[] {
  const constants = [
    [K7C00, 0x7c00],
    [K0400, 0x0400],
    [KSIGNEXP, 0x8fffe000],
    [KBIAS, 0x38000000],
    [KABS, 0x7fffffff],
    [KMIN, 0x38800000],
    [KRANGE, 0x47800000 - 0x38800000],
    [KREB, 0x38000000 - 0xfff],
    [K1, 1],
    [K8000, 0x8000],
    [KZERO, 0],
  ].flatMap(([local, v]) => [...c32(v), ...set(local)]);
  const group = [
    ...get(KZERO),
    ...set(WORST),
    ...fourLanes(0, LO),
    ...fourLanes(8, HI),
    ...get(OP),
    ...get(LO),
    ...get(HI),
    ...narrowU16,
    ...store,
    ...get(WORST),
    ...get(KRANGE),
    ...geU32,
    ...anyTrue,
    ...ifVoid,
    ...get(EXC),
    ...get(CNT),
    ...i32c(4),
    ...mul32,
    ...add32,
    ...get(Ii),
    ...i32store,
    ...get(CNT),
    ...i32c(1),
    ...add32,
    ...set(CNT),
    ...end,
    // next group: 8 halves in and out, 8 floats of delta
    ...get(HP),
    ...i32c(16),
    ...add32,
    ...set(HP),
    ...get(DP),
    ...i32c(32),
    ...add32,
    ...set(DP),
    ...get(OP),
    ...i32c(16),
    ...add32,
    ...set(OP),
  ];
  const pointers = [...get(H), ...set(HP), ...get(D), ...set(DP), ...get(O), ...set(OP)];
  return [...constants, ...pointers, ...i32c(0), ...set(CNT), ...forLoop(Ii, N, 8, group), ...get(CNT)];
}

type AddFn = (h: number, d: number, o: number, n: number, exc: number) => number;

let state: { memory: WasmMemory; add: AddFn } | null | undefined;

function instance(): { memory: WasmMemory; add: AddFn } | null {
  if (state !== undefined) return state;
  const bytes = singleFunctionModule(
    "addHalves",
    5,
    1,
    [
      [5, I32],
      [16, V128],
    ],
    kernelBody(),
  );
  if (!wasmApi?.validate(bytes)) {
    state = null;
    return state;
  }
  // Same memory as the GEMM kernel, so addProductToHalves can hand the product over without copying it.
  const memory = gemmInstance()?.memory ?? new wasmApi.Memory({ initial: 1 });
  const inst = new wasmApi.Instance(new wasmApi.Module(bytes), { env: { mem: memory } });
  state = { memory, add: inst.exports.addHalves as AddFn };
  return state;
}

/** Elements per kernel call: bounds the wasm memory (16 bytes per element incl. the flag list). */
const BLOCK = 1 << 20;

/** out[i] = f16(f32(halves[i]) + delta[i]), exactly as the scalar conversions would give. */
export function addToHalves(
  halves: Uint16Array,
  delta: Float32Array,
  out = new Uint16Array(halves.length),
): Uint16Array {
  const n = halves.length;
  if (delta.length !== n || out.length !== n) throw new RangeError("addToHalves: length mismatch");
  const inst = instance();
  let done = 0;
  if (inst) {
    const block = Math.min(BLOCK, n - (n % 8));
    const need = block * (2 + 4 + 2) + (block / 8) * 4;
    const have = inst.memory.buffer.byteLength;
    if (need > have) inst.memory.grow(Math.ceil((need - have) / 65536));
    const hOff = 0;
    const dOff = block * 2;
    const oOff = block * 6;
    const eOff = block * 8;
    for (; n - done >= 8; ) {
      const len = Math.min(block, (n - done) & ~7);
      const buf = inst.memory.buffer;
      new Uint16Array(buf, hOff, len).set(halves.subarray(done, done + len));
      new Float32Array(buf, dOff, len).set(delta.subarray(done, done + len));
      const flagged = inst.add(hOff, dOff, oOff, len, eOff);
      out.set(new Uint16Array(buf, oOff, len), done);
      const groups = new Int32Array(buf, eOff, flagged);
      for (let g = 0; g < flagged; g++) scalar(halves, delta, out, done + groups[g], done + groups[g] + 8);
      done += len;
    }
  }
  scalar(halves, delta, out, done, n);
  return out;
}

/** The reference path, element by element: decode, add in float32, encode (the dtypes.ts routines). */
const scratchBits = new Uint32Array(1);
const scratchFloat = new Float32Array(scratchBits.buffer);
function scalar(halves: Uint16Array, delta: Float32Array, out: Uint16Array, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    scratchBits[0] = f16BitsToF32Bits(halves[i]);
    scratchFloat[0] += delta[i];
    out[i] = f32BitsToF16(scratchBits[0]);
  }
}

/** Rows of the product formed per kernel round: the block of W + delta stays in cache between the kernels. */
const ROW_BLOCK = 32;

/**
 * out = f16(f32(halves) + up @ down) for up [rows x r], down [r x cols] (row-major float32), the product
 * formed block by block in the kernels' shared memory and never copied out: the same values as
 * `addToHalves(halves, matmul(up, down))` (same kernel, same summation order). Returns undefined when the
 * shapes fall outside the fused case (cols not a multiple of 16, r > 512, or no SIMD): use that route then.
 * `out` may be `halves` itself (the bake patches the tensor it read in place, allocating nothing).
 */
export function addProductToHalves(
  up: Float32Array,
  down: Float32Array,
  rows: number,
  r: number,
  cols: number,
  halves: Uint16Array,
  out?: Uint16Array,
): Uint16Array | undefined {
  const gemm = gemmInstance();
  const inst = instance();
  if (!gemm || !inst || cols % 16 !== 0 || r < 1 || r > 512 || halves.length !== rows * cols)
    return undefined;
  if (out && out.length !== halves.length) throw new RangeError("addProductToHalves: length mismatch");
  const result = out ?? new Uint16Array(rows * cols);
  const { packed } = gemm;
  const rb = ROW_BLOCK; // a multiple of every packed tile's rows
  const rowsPadded = Math.ceil(rows / packed.rows) * packed.rows;
  // Layout (bytes): down in column panels | up (zero rows to a whole block) | product block (rb x cols) |
  // halves in | halves out | flags. cols is a multiple of the panel width: no column padding.
  const bOff = 0;
  const aOff = bOff + r * cols * 4;
  const cOff = aOff + rowsPadded * r * 4;
  const hOff = cOff + rb * cols * 4;
  const oOff = hOff + rb * cols * 2;
  const eOff = oOff + rb * cols * 2;
  const need = eOff + (rb * cols) / 2;
  const have = gemm.memory.buffer.byteLength;
  if (need > have) gemm.memory.grow(Math.ceil((need - have) / 65536));
  const buf = gemm.memory.buffer;
  const heap = new Float32Array(buf);
  packColumnPanels(down, r, cols, packed.cols, heap, bOff / 4);
  heap.set(up.subarray(0, rows * r), aOff / 4);
  heap.fill(0, aOff / 4 + rows * r, aOff / 4 + rowsPadded * r);
  const hBlock = new Uint16Array(buf, hOff, rb * cols);
  const oBlock = new Uint16Array(buf, oOff, rb * cols);
  const flags = new Int32Array(buf, eOff, (rb * cols) / 8);
  for (let i0 = 0; i0 < rows; i0 += rb) {
    const m = Math.min(rb, rows - i0);
    const mp = Math.ceil(m / packed.rows) * packed.rows; // zero rows pad the last block
    packed.kernel(aOff + i0 * r * 4, bOff, cOff, mp, r, cols, r * 4, 4, cols * 4, r * 4);
    const len = m * cols;
    const start = i0 * cols;
    hBlock.set(halves.subarray(start, start + len));
    const flagged = inst.add(hOff, cOff, oOff, len, eOff);
    result.set(oBlock.subarray(0, len), start);
    if (flagged > 0) {
      // The input block's copy in wasm memory: `halves` may be `result`, already overwritten here.
      const delta = new Float32Array(buf, cOff, len);
      const src = hBlock.subarray(0, len);
      const dst = result.subarray(start, start + len);
      for (let g = 0; g < flagged; g++) scalar(src, delta, dst, flags[g], flags[g] + 8);
    }
  }
  return result;
}
