/**
 * Small seeded PRNG (sfc32, seeded through a murmur3-style mixer) for reproducible subsampling
 * and sampling. Streams can be derived from (seed, i, j, ...) so that, e.g., batch k of a
 * sampler is a pure function of (seed, k): resuming needs only the batch counter.
 * @module
 */

function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Seeded generator; identical seeds give identical streams on every platform. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** Seed from a seed and optional sub-stream ids (`keys`: safe integers). */
  constructor(...keys: number[]) {
    let h = 0x9e3779b9;
    for (const k of keys) {
      // Fold both halves so seeds above 2^32 still matter.
      h = mix32(h ^ (k >>> 0)) + 0x632be5ab;
      h = mix32(h ^ Math.floor(k / 0x100000000)) + 0x2545f491;
    }
    this.#a = mix32(h + 1);
    this.#b = mix32(h + 2);
    this.#c = mix32(h + 3);
    this.#d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** Next uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  float(): number {
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [0, n) (n up to 2^53). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}
