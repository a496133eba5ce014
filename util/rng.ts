/** The project's small seeded PRNG, shared by initialization, policies and tests. */

/**
 * mulberry32: a 32-bit state generator of floats in [0, 1). Fast, seedable, reproducible
 * across platforms; not for cryptography.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

/**
 * Seeded pseudo-random number generator for reproducible evaluation statistics.
 *
 * Generator: xoshiro128** version 1.1 (Blackman & Vigna, "Scrambled linear pseudorandom number
 * generators", 2021; reference code https://prng.di.unimi.it/xoshiro128starstar.c), a 32-bit
 * generator with 128 bits of state and period 2^128 - 1. The state is initialised from a 64-bit
 * seed with SplitMix64 (https://prng.di.unimi.it/splitmix64.c), as the xoshiro authors recommend:
 * two SplitMix64 outputs `a`, `b` give the state words `[lo32(a), hi32(a), lo32(b), hi32(b)]`.
 *
 * Not cryptographically secure. The same seed gives the same stream on every platform.
 *
 * @module
 */

const TWO_POW_32 = 4294967296;
const MASK_64 = (1n << 64n) - 1n;

/**
 * One step of SplitMix64: advances `state` by the golden-ratio increment and returns the
 * mixed output together with the new state (all values are unsigned 64-bit bigints).
 */
export function splitMix64(state: bigint): { value: bigint; state: bigint } {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK_64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return { value: z ^ (z >> 31n), state: next };
}

function rotl32(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

function toSeed64(seed: number | bigint): bigint {
  if (typeof seed === "number") {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`rng seed must be a safe integer, got ${seed}`);
    }
    return BigInt(seed) & MASK_64;
  }
  return seed & MASK_64;
}

/**
 * xoshiro128** 1.1 generator (see module docs). Produces uniform 32-bit words, unbiased
 * integers in a range and doubles in [0, 1).
 */
export class Xoshiro128StarStar {
  #s: Uint32Array;

  /**
   * Creates a generator from a seed. Numbers must be safe integers; negative numbers and
   * bigints are taken modulo 2^64. The state is filled by SplitMix64 (see module docs).
   */
  constructor(seed: number | bigint = 0) {
    let st = toSeed64(seed);
    const a = splitMix64(st);
    st = a.state;
    const b = splitMix64(st);
    this.#s = new Uint32Array([
      Number(a.value & 0xffffffffn),
      Number(a.value >> 32n),
      Number(b.value & 0xffffffffn),
      Number(b.value >> 32n),
    ]);
  }

  /** Creates a generator with the exact 128-bit state `[s0, s1, s2, s3]` (not all zero). */
  static fromState(state: readonly [number, number, number, number]): Xoshiro128StarStar {
    if (state.every((w) => (w >>> 0) === 0)) {
      throw new RangeError("xoshiro128** state must not be all zero");
    }
    const g = new Xoshiro128StarStar(0);
    g.#s.set(state.map((w) => w >>> 0));
    return g;
  }

  /** The current state words `[s0, s1, s2, s3]` (a copy). */
  state(): [number, number, number, number] {
    const s = this.#s;
    return [s[0], s[1], s[2], s[3]];
  }

  /** Next uniform unsigned 32-bit integer in [0, 2^32). */
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl32(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl32(s[3], 11);
    return result;
  }

  /**
   * Unbiased uniform integer in [0, n) for an integer 1 <= n <= 2^32, by rejection: words at
   * or above the largest multiple of n below 2^32 are redrawn, then the word is reduced mod n.
   */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new RangeError(`nextInt bound must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /**
   * Uniform double in [0, 1) with 53 random bits, built from two words as
   * `((a >>> 5) * 2^26 + (b >>> 6)) / 2^53` (the construction numpy's legacy generator uses).
   */
  nextFloat(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}
