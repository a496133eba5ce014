/**
 * The project's seeded pseudo-random numbers: every generator and seed hash, in one place.
 * None is cryptographically secure; each gives the same stream on every platform, and each
 * stream is pinned bit-for-bit by tests (weight init, data order and dropout masks are
 * compared run against run), so none of them may change.
 *
 * Which generator serves what, and why:
 *
 * - {@linkcode mulberry32}: weight init (`InitRng`), env policies, test fixtures. 32 bits of
 *   state in one closure: the cheapest float stream where only the seed must reproduce it.
 * - {@linkcode Rng} (sfc32 seeded from a key tuple): offline data (subsampling, the segment
 *   sampler). Keyed by (seed, i, j, ...), so batch k is a pure function of (seed, k): resuming
 *   needs only a counter, never a saved generator state.
 * - {@linkcode Xoshiro128StarStar} seeded by {@linkcode splitMix64}: evaluation statistics (the
 *   stratified bootstrap). A published generator (period 2^128 - 1) with reference C code and
 *   test vectors, seeded as its authors advise; unbiased bounded integers.
 * - {@linkcode stepSeed}: training, the dropout seed of a global step. A hash of (seed, step),
 *   not a running state, so a resumed run draws the same masks.
 * - {@linkcode SeedStream}: models, one seed per dropout site of a forward pass. A counter
 *   hashed with the step's seed: sites get distinct, reproducible seeds.
 *
 * The shared pieces (the xor-shift-multiply mixing step, murmur3's finalizer, 32-bit rotation
 * and the 53-bit float construction) are defined once below.
 *
 * @module
 */

const TWO_POW_32 = 4294967296;
const MASK_64 = (1n << 64n) - 1n;
/** Knuth's multiplicative-hash constant, floor(2^32 / golden ratio) rounded to a prime. */
const KNUTH_32 = 0x9e3779b1;
/** murmur3's two finalizer multipliers. */
const MURMUR_C1 = 0x85ebca6b;
const MURMUR_C2 = 0xc2b2ae35;

/** One mixing step `(h ^ (h >>> shift)) * mul` in uint32 arithmetic. */
function xorShiftMul(h: number, shift: number, mul: number): number {
  return Math.imul(h ^ (h >>> shift), mul) >>> 0;
}

/** murmur3's 32-bit finalizer (fmix32): a bijective avalanche of all 32 bits. */
function mix32(h: number): number {
  h = xorShiftMul(xorShiftMul(h, 16, MURMUR_C1), 13, MURMUR_C2);
  return (h ^ (h >>> 16)) >>> 0;
}

function rotl32(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Uniform double in [0, 1) with 53 random bits from two 32-bit words, as
 * `((a >>> 5) * 2^26 + (b >>> 6)) / 2^53` (the construction numpy's legacy generator uses).
 */
function float53(a: number, b: number): number {
  return ((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992;
}

// ---- mulberry32 ---------------------------------------------------------------------------

/**
 * mulberry32 (Tommy Ettinger): a generator of floats in [0, 1) with 32 bits of state.
 * Written as published (so it can be compared with the reference) rather than with the
 * shared mixing step.
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

// ---- Rng: sfc32 seeded from a key tuple ---------------------------------------------------

/**
 * Keyed generator for reproducible subsampling and sampling: sfc32 (Chris Doty-Humphrey's
 * small fast chaotic generator, 128-bit state) seeded by folding the keys through
 * {@linkcode mix32}. Streams are derived from (seed, i, j, ...) so that, e.g., batch k of a
 * sampler is a pure function of (seed, k).
 */
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
    this.#c = rotl32(this.#c, 21);
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  float(): number {
    const a = this.u32();
    return float53(a, this.u32());
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

// ---- xoshiro128** seeded by SplitMix64 ----------------------------------------------------

/**
 * One step of SplitMix64 (https://prng.di.unimi.it/splitmix64.c): advances `state` by the
 * golden-ratio increment and returns the mixed output together with the new state (all
 * values are unsigned 64-bit bigints).
 */
export function splitMix64(state: bigint): { value: bigint; state: bigint } {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK_64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return { value: z ^ (z >> 31n), state: next };
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
 * xoshiro128** version 1.1 (Blackman & Vigna, "Scrambled linear pseudorandom number
 * generators", 2021; reference code https://prng.di.unimi.it/xoshiro128starstar.c): 128 bits
 * of state, period 2^128 - 1. The state is filled from a 64-bit seed by SplitMix64: two outputs
 * `a`, `b` give the state words `[lo32(a), hi32(a), lo32(b), hi32(b)]`. Produces uniform
 * 32-bit words, unbiased integers in a range and doubles in [0, 1).
 */
export class Xoshiro128StarStar {
  #s: Uint32Array;

  /**
   * Creates a generator from a seed. Numbers must be safe integers; negative numbers and
   * bigints are taken modulo 2^64. The state is filled by SplitMix64 (see above).
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

  /** Uniform double in [0, 1) with 53 random bits from two words (see `float53`). */
  nextFloat(): number {
    const a = this.nextUint32();
    return float53(a, this.nextUint32());
  }
}

// ---- dropout seeds: counter hashes, no running state --------------------------------------

/** Dropout seed of a global training step: a hash of (seed, step), never a running state. */
export function stepSeed(seed: number, step: number): number {
  const h = (Math.imul(seed + 0x632be5ab, KNUTH_32) ^ Math.imul(step, MURMUR_C1)) >>> 0;
  const m = xorShiftMul(h, 15, 0x2c1b3c6d);
  return (m ^ (m >>> 12)) >>> 0;
}

/** Dropout seeds for one forward pass: a counter hashed with the step's seed. */
export class SeedStream {
  #n = 0;
  /**
   * @param stepSeed the step's seed (e.g. {@linkcode stepSeed} of the global step), or a
   * function giving it (a captured step's seed changes on every replay).
   */
  constructor(readonly stepSeed: Seed) {}

  /** A fresh seed for the next dropout site (its value now). */
  next(): number {
    return siteSeed(resolveSeed(this.stepSeed), ++this.#n);
  }

  /**
   * The next site's seed as a {@link Seed}: a number for a numeric step seed, else a function
   * that derives it from the step seed's value whenever it is called (capture and replay).
   */
  nextSeed(): Seed {
    const base = this.stepSeed;
    const n = ++this.#n;
    return typeof base === "number" ? siteSeed(base, n) : () => siteSeed(base(), n);
  }
}

/** A seed, or a function returning the current one (per-call data of a captured step). */
export type Seed = number | (() => number);

/** The value of a {@link Seed} now. */
export function resolveSeed(seed: Seed): number {
  return typeof seed === "number" ? seed : seed();
}

function siteSeed(stepSeed: number, n: number): number {
  const h = xorShiftMul((stepSeed ^ Math.imul(n, KNUTH_32)) >>> 0, 16, MURMUR_C1);
  return (h ^ (h >>> 13)) >>> 0;
}
