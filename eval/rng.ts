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
