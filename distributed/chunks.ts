/**
 * Splitting long buffers into MPI-sized pieces: MPI counts are C `int`s, so one call moves at
 * most 2^31-1 elements.
 * @module
 */

/** Largest count one MPI call accepts (C `int`). */
export const MPI_MAX_COUNT = 0x7fffffff;

/**
 * Default elements per MPI call: 2^28 (1 GiB of f32). Below the int limit on purpose: a few
 * MPI builds and transports have mishandled single messages of 2 GiB and more, and 1 GiB
 * pieces cost nothing measurable. A 109M-float gradient still goes in one call.
 */
export const DEFAULT_MAX_COUNT = 1 << 28;

/** Consecutive `[offset, count]` pieces covering `[0, total)`, each at most `maxCount` long. */
export function chunkRanges(
  total: number,
  maxCount: number = DEFAULT_MAX_COUNT,
): [number, number][] {
  if (!Number.isSafeInteger(total) || total < 0) throw new RangeError(`bad element count ${total}`);
  if (!Number.isInteger(maxCount) || maxCount < 1 || maxCount > MPI_MAX_COUNT) {
    throw new RangeError(`maxCount must be in [1, ${MPI_MAX_COUNT}], got ${maxCount}`);
  }
  const out: [number, number][] = [];
  for (let off = 0; off < total; off += maxCount) out.push([off, Math.min(maxCount, total - off)]);
  return out;
}
