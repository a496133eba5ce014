/**
 * Sharded evaluation: which (game, episode) pairs a rank runs, and the seeds of an episode.
 *
 * Results must not depend on how many processes ran them, so nothing about an episode may
 * depend on which rank, which environment slot or which order it ran in: its reset seed and
 * its exploration stream are pure functions of (seed, game, episode index).
 * @module
 */
import { splitMix64 } from "../util/rng.ts";

/** FNV-1a of a string's UTF-16 code units (32-bit). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** 64 mixed bits of (seed, game, episode, stream) as a bigint. */
function mix(seed: number, game: string, episode: number, stream: number): bigint {
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(episode) || episode < 0) {
    throw new RangeError(`episode seed: bad seed ${seed} or episode ${episode}`);
  }
  let s = BigInt.asUintN(64, BigInt(seed));
  for (const word of [fnv1a(game), episode, stream]) {
    s = splitMix64(s ^ BigInt.asUintN(64, BigInt(word))).value;
  }
  return s;
}

/**
 * The emulator reset seed of episode `episode` of `game` (an integer in 0..2^31-2, what
 * `AtariVectorEnv.reset` takes).
 */
export function episodeResetSeed(seed: number, game: string, episode: number): number {
  return Number(mix(seed, game, episode, 1) % 2147483647n);
}

/** The seed of episode `episode`'s exploration (epsilon-greedy) random stream (uint32). */
export function episodeExploreSeed(seed: number, game: string, episode: number): number {
  return Number(mix(seed, game, episode, 2) & 0xffffffffn);
}

/**
 * The episodes of each game that `rank` of `size` runs: the (game, episode) pairs listed
 * game by game, episode by episode, dealt round-robin to the ranks (pair k to rank k mod size).
 * Every rank gets every game's list (possibly empty), so all ranks walk the games in the same
 * order and can gather after each one.
 */
export function shardEpisodes(
  games: readonly string[],
  episodes: number,
  rank: number,
  size: number,
): Map<string, number[]> {
  if (
    !(Number.isInteger(size) && size >= 1 && Number.isInteger(rank) && rank >= 0 && rank < size)
  ) {
    throw new RangeError(`shardEpisodes: rank ${rank} of ${size}`);
  }
  const out = new Map<string, number[]>();
  let k = 0;
  for (const game of games) {
    const mine: number[] = [];
    for (let ep = 0; ep < episodes; ep++, k++) if (k % size === rank) mine.push(ep);
    out.set(game, mine);
  }
  return out;
}
