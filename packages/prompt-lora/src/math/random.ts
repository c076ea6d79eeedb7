/**
 * Seeded pseudo-random numbers for reproducible sketches (same seed, same compressed adapter, byte for byte).
 * xoshiro128** for uniforms, Box-Muller for Gaussians: small, fast, well studied; Math.random cannot be seeded.
 */

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  constructor(seed = 0x5eed) {
    // splitmix32 expands the seed into four non-zero state words.
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3 >>> 0, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    return result;
  }

  /** Uniform in (0, 1). */
  uniform(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  /** Standard normal. */
  gaussian(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const t = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(t);
    return r * Math.cos(t);
  }

  /**
   * Fills a new Float32Array with standard normals: the same sequence as calling gaussian() n times, but
   * Box-Muller pairs are written directly (no per-value spare bookkeeping), which is several times faster.
   */
  gaussianArray(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    let i = 0;
    if (n > 0 && this.spare !== undefined) out[i++] = this.gaussian() * std;
    for (; i + 1 < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(this.uniform()));
      const t = 2 * Math.PI * this.uniform();
      out[i] = r * Math.cos(t) * std;
      out[i + 1] = r * Math.sin(t) * std;
    }
    if (i < n) out[i] = this.gaussian() * std;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
