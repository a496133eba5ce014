/**
 * Gathering a sharded evaluation: each rank ran some episodes of a game (`sharding.ts`); rank 0
 * puts them back in episode order, so that what it writes equals a one-process run's results.
 * @module
 */
import { pack, unpack } from "msgpackr";
import type { Comm } from "../distributed/mod.ts";
import type { EpisodeRecording, GameRun } from "./episode_runner.ts";

/** The JSON-safe part of one rank's `GameRun` (recordings travel as bytes). */
type RunPart = Omit<GameRun, "recordings">;

/**
 * One game's runs of every rank merged into the run of all `episodes` episodes: per-episode
 * arrays in episode order, agent and batch steps summed, seconds the slowest rank's (the wall
 * time of the sharded run). Throws unless the parts cover each episode exactly once.
 */
export function mergeGameRuns(parts: readonly GameRun[], episodes: number): GameRun {
  if (parts.length === 0) throw new Error("mergeGameRuns: no parts");
  const game = parts[0].game;
  const returns = new Array<number>(episodes).fill(NaN);
  const lengths = new Array<number>(episodes).fill(0);
  const truncated = new Array<boolean>(episodes).fill(false);
  const seen = new Uint8Array(episodes);
  for (const p of parts) {
    if (p.game !== game) throw new Error(`mergeGameRuns: ${p.game} mixed with ${game}`);
    p.episodeIds.forEach((ep, j) => {
      if (!(ep >= 0 && ep < episodes) || seen[ep]++) {
        throw new Error(`mergeGameRuns: ${game} episode ${ep} missing a rank or run twice`);
      }
      returns[ep] = p.returns[j];
      lengths[ep] = p.lengths[j];
      truncated[ep] = p.truncated[j];
    });
  }
  const missing = seen.indexOf(0);
  if (missing >= 0) throw new Error(`mergeGameRuns: ${game} episode ${missing} was not run`);
  return {
    game,
    episodeIds: Array.from({ length: episodes }, (_, i) => i),
    returns,
    lengths,
    truncated,
    agentSteps: parts.reduce((a, p) => a + p.agentSteps, 0),
    batchSteps: parts.reduce((a, p) => a + p.batchSteps, 0),
    seconds: Math.max(...parts.map((p) => p.seconds)),
    recordings: parts.flatMap((p) => p.recordings).sort((a, b) => a.episode - b.episode),
  };
}

/** Recordings as bytes (msgpack; float arrays as their raw little-endian bytes). */
export function packRecordings(recs: readonly EpisodeRecording[]): Uint8Array {
  const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return pack(recs.map((r) => ({ ...r, imagined: r.imagined.map((x) => x && f32Bytes(x)) })));
}

/** Inverse of {@link packRecordings}. */
export function unpackRecordings(bytes: Uint8Array): EpisodeRecording[] {
  // msgpackr gives Node Buffers that may share one allocation: copy into plain arrays.
  const copy = (b: Uint8Array) => new Uint8Array(b);
  const f32 = (b: Uint8Array) => new Float32Array(copy(b).buffer);
  type Packed = Omit<EpisodeRecording, "imagined"> & { imagined: (Uint8Array | null)[] };
  return (unpack(bytes) as Packed[]).map((r) => ({
    ...r,
    frames: r.frames.map(copy),
    imagined: r.imagined.map((x) => x && f32(x)),
  }));
}

/**
 * Every rank's share of one game to rank 0 (a collective: all ranks call it for every game, in
 * the same order). Resolves to the merged run on rank 0, null on the others. Recordings are
 * only moved when `withRecordings` (the same on all ranks).
 */
export async function gatherGameRun(
  comm: Comm,
  run: GameRun,
  episodes: number,
  withRecordings: boolean,
): Promise<GameRun | null> {
  if (comm.size === 1) return mergeGameRuns([run], episodes);
  const { recordings, ...part } = run;
  const parts = await comm.gatherJson<RunPart>(part);
  const recs = withRecordings ? await comm.gatherBytes(packRecordings(recordings)) : null;
  if (!parts) return null;
  return mergeGameRuns(
    parts.map((p, r) => ({ ...p, recordings: recs ? unpackRecordings(recs[r]) : [] })),
    episodes,
  );
}
