/**
 * Bit-level emulation of the few PyTorch / NumPy numerics the reference schedulers depend on.
 *
 * Written by hand because no npm package reproduces ATen's float32 kernels: the reference
 * (diffusers 0.26 on torch CPU) builds its beta table with `torch.linspace(..., dtype=float32)`,
 * whose AVX2 kernel fills 8 lanes at a time from one fused-multiply-add base, and its
 * `torch.cumprod` accumulates in double before rounding each output to float32. Matching those
 * two details is what makes `alphas_cumprod` equal the reference bit for bit (checked against
 * tiny-sd1/reference/06_ddpm_add_noise.safetensors in the tests).
 */

export const f32 = Math.fround;

/** ATen's AVX2 vector width for float32: linspace writes lanes of 8 from one base value. */
const AVX2_FLOAT_LANES = 8;

/**
 * torch.linspace(start, end, steps, dtype=float32) as the AVX2 CPU kernel computes it: step in
 * float32, the first half counted up from `start`, the second half down from `end` (chosen per
 * vector of 8 by its first index), each vector base computed with one rounding (FMA), the lanes
 * as base + k*step.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let base = 0; base < steps; base += AVX2_FLOAT_LANES) {
    // step*index is exact in double (24 + 11 bits), so one f32() is the FMA's single rounding.
    const v0 = base < halfway ? f32(s + step * base) : f32(e - step * (steps - base - 1));
    for (let k = 0; k < AVX2_FLOAT_LANES && base + k < steps; k++) out[base + k] = f32(v0 + f32(k * step));
  }
  return out;
}

/** torch.cumprod on a float32 CPU tensor: accumulate in double, round each prefix to float32. */
export function torchCumprodF32(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  let acc = 1;
  for (let i = 0; i < values.length; i++) {
    acc *= values[i];
    out[i] = acc;
  }
  return out;
}

/**
 * numpy.interp(x, arange(len(fp)), fp) in double: the reference interpolates sigma tables this
 * way (`xp` is always 0..n-1 there, so the bracketing index is floor(x)).
 */
export function numpyInterpUnitGrid(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (x <= 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  const j = Math.floor(x);
  if (j === x) return fp[j];
  const slope = (fp[j + 1] - fp[j]) / 1;
  return slope * (x - j) + fp[j];
}

/** numpy.linspace(start, stop, num) in double (float64 arithmetic as numpy does it). */
export function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const div = num - 1;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

/** numpy.round: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
