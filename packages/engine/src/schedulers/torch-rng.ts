/**
 * A seeded Gaussian RNG that reproduces PyTorch's CPU `torch.randn` for a given seed, so a seed
 * gives the same initial latents as the WebUI's "CPU" RNG source and diffusers with a CPU generator.
 *
 * Written by hand (no npm package implements ATen's sampling). How torch does it on CPU:
 * - the engine is MT19937, seeded with the low 32 bits of the seed (standard init_genrand);
 * - a float32 uniform is (next32 & 0xFFFFFF) / 2^24; a double uniform takes two draws
 *   (first = high word) and keeps the low 53 bits / 2^53;
 * - `randn` of a contiguous float32 tensor with >= 16 elements first fills every element with a
 *   float32 uniform, then Box-Muller in blocks of 16: for j < 8, u1 = 1 - d[j], u2 = d[j+8],
 *   r = sqrt(-2 ln u1), d[j] = r cos(2 pi u2), d[j+8] = r sin(2 pi u2). When the size is not a
 *   multiple of 16 the last 16 elements are refilled with fresh uniforms and transformed again;
 * - with fewer than 16 elements each value comes from the double-precision Box-Muller
 *   (u1, u2 from 53-bit uniforms, r = sqrt(-2 log1p(-u2)), value r cos(2 pi u1)), caching
 *   r sin(2 pi u1) in the generator for the next scalar draw.
 * The uniforms are bit-exact. The large-tensor transform is evaluated in float32 step by step
 * like torch's; torch's AVX2 build uses polynomial approximations of log and sincos (avx_mathfun)
 * that are not always correctly rounded, so about 1 value in 6 differs by 1 float32 ulp
 * (measured on the fixtures' torch-generated tensors: 84% bit-identical, max diff 2.4e-7). The small
 * path (< 16 values) runs in double as torch's does. The CUDA/"NV" sources (Philox) are not reproduced.
 */

const N = 624;
const M = 397;

/** The Mersenne Twister MT19937 as ATen's at::mt19937 (32-bit output). */
export class Mt19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    const s = this.state;
    s[0] = seed >>> 0;
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1] ^ (s[j - 1] >>> 30);
      s[j] = (Math.imul(1812433253, prev) + j) >>> 0;
    }
  }

  private twist(): void {
    const s = this.state;
    for (let k = 0; k < N; k++) {
      const y = (s[k] & 0x80000000) | (s[(k + 1) % N] & 0x7fffffff);
      s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }

  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/** Anything that can hand out standard normals: the samplers' source of per-step noise. */
export interface NoiseSource {
  /** `count` standard normals, as torch.randn(shape) with shape.numel() === count. */
  randn(count: number): Float32Array;
}

/** Low 32 bits of a seed given as a number (may exceed 2^32) or bigint, as torch.manual_seed keeps them. */
function low32(seed: number | bigint): number {
  if (typeof seed === "bigint") return Number(BigInt.asUintN(32, seed));
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  return Number(BigInt.asUintN(32, BigInt(seed)));
}

/** torch.Generator(device="cpu") after manual_seed(seed). */
export class TorchCpuGenerator implements NoiseSource {
  private engine: Mt19937;
  private cachedNormal: number | undefined;

  constructor(seed: number | bigint) {
    this.engine = new Mt19937(low32(seed));
  }

  manualSeed(seed: number | bigint): this {
    this.engine = new Mt19937(low32(seed));
    this.cachedNormal = undefined;
    return this;
  }

  private uniformF32(): number {
    return (this.engine.nextUint32() & 0xffffff) / 16777216;
  }

  private uniformF64(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  /** torch.rand(count) (float32). */
  rand(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.uniformF32();
    return out;
  }

  /** One draw of at::normal_distribution<double> (the small-tensor path), with its cache. */
  private normalF64(): number {
    if (this.cachedNormal !== undefined) {
      const v = this.cachedNormal;
      this.cachedNormal = undefined;
      return v;
    }
    const u1 = this.uniformF64();
    const u2 = this.uniformF64();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** torch.randn(shape, generator=this) for a contiguous float32 tensor of `count` elements. */
  randn(count: number): Float32Array {
    if (!Number.isInteger(count) || count < 0)
      throw new RangeError(`randn count must be a non-negative integer, got ${count}`);
    const out = new Float32Array(count);
    if (count < 16) {
      for (let i = 0; i < count; i++) out[i] = this.normalF64();
      return out;
    }
    for (let i = 0; i < count; i++) out[i] = this.uniformF32();
    for (let i = 0; i + 16 <= count; i += 16) boxMuller16(out, i);
    if (count % 16 !== 0) {
      const tail = count - 16;
      for (let i = 0; i < 16; i++) out[tail + i] = this.uniformF32();
      boxMuller16(out, tail);
    }
    return out;
  }
}

/** 2 pi rounded to float32, as torch's kernels hold it. */
const TWO_PI_F32 = Math.fround(2 * Math.PI);

/**
 * torch's normal_fill_16: 16 uniforms in place to 16 normals (pairs j and j + 8), every operation
 * rounded to float32 as torch's float kernel does (log/sqrt/cos/sin themselves correctly rounded here).
 */
function boxMuller16(d: Float32Array, at: number): void {
  const f = Math.fround;
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - d[at + j]);
    const u2 = d[at + j + 8];
    const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(TWO_PI_F32 * u2);
    d[at + j] = f(radius * f(Math.cos(theta)));
    d[at + j + 8] = f(radius * f(Math.sin(theta)));
  }
}

/**
 * The WebUI's per-image seeding (its ImageRNG with the CPU source): image k of a batch has its own
 * generator seeded with seeds[k]; the initial latents and every later draw (Euler a's per-step noise)
 * are one torch.randn of the per-image shape from each generator, concatenated in batch order.
 * diffusers instead draws the whole [B, ...] batch from one generator; for B = 1 the two agree.
 */
export class PerImageNoise implements NoiseSource {
  private readonly generators: TorchCpuGenerator[];

  constructor(seeds: readonly (number | bigint)[]) {
    if (seeds.length === 0) throw new RangeError("PerImageNoise needs at least one seed");
    this.generators = seeds.map((s) => new TorchCpuGenerator(s));
  }

  randn(count: number): Float32Array {
    const b = this.generators.length;
    if (count % b !== 0) throw new RangeError(`${count} values do not split into ${b} images`);
    const per = count / b;
    const out = new Float32Array(count);
    for (let k = 0; k < b; k++) out.set(this.generators[k].randn(per), k * per);
    return out;
  }
}
