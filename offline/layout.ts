/**
 * On-disk layout of a per-game store (one directory per game, `<root>/<Game>/`).
 *
 * ```
 * manifest.json          present only once the store is complete (written last, atomically)
 * journal.json           present only while a writer is (or was, if interrupted) filling it
 * obs/chunk_000000.bin   observations, row-major: frames uint8 [n,84,84] or tokens uint16 LE [n,36];
 *                        each chunk holds whole episodes, so a segment never spans two chunks
 * actions.u8             [N] full 18-action ids (0..17)
 * rewards.f32            [N] float32 LE, raw (DQN-Replay's are already clipped to [-1,1])
 * terminals.u8           [N] 1 where the game ended after the step
 * episode_offsets.i64    [E+1] int64 LE, episode e is rows [off[e], off[e+1])
 * episode_truncated.u8   [E] 1 when the episode was cut (time limit, file edge, interrupt)
 * ```
 *
 * Row t of an episode is the observation at which actions[t] was taken, followed by rewards[t]
 * and terminals[t]. As in Dopamine, an episode of T rows does not hold the observation that
 * follows its last action. All files read with numpy: `np.fromfile(f, dtype)`.
 * @module
 */

/** Store format identifier in the manifest. */
export const STORE_FORMAT = "jowa-store";
/** Store format version in the manifest. */
export const STORE_VERSION = 1;

/** File names inside a store directory. */
export const FILES = {
  manifest: "manifest.json",
  journal: "journal.json",
  obsDir: "obs",
  actions: "actions.u8",
  rewards: "rewards.f32",
  terminals: "terminals.u8",
  offsets: "episode_offsets.i64",
  truncated: "episode_truncated.u8",
} as const;

/** The per-step/per-episode binary files, in a fixed order. */
export const META_FILES = [
  FILES.actions,
  FILES.rewards,
  FILES.terminals,
  FILES.offsets,
  FILES.truncated,
] as const;

/** Name of observation chunk `i` (relative to the store directory). */
export function chunkName(i: number): string {
  return `${FILES.obsDir}/chunk_${String(i).padStart(6, "0")}.bin`;
}

/** Frame height/width of the Atari observations. */
export const FRAME_SIZE = 84;
/** Bytes of one 84x84 grayscale frame. */
export const FRAME_BYTES = FRAME_SIZE * FRAME_SIZE;
/** Tokenizer ids per frame (6x6 grid). */
export const TOKENS_PER_FRAME = 36;

/** Which observation form a store holds. */
export type StoreForm = "frames" | "tokens";

/** Observation element layout of a store form. */
export interface ObsSpec {
  /** frames (uint8 [84,84]) or tokens (uint16 [36]). */
  form: StoreForm;
  /** numpy-style element type. */
  dtype: "uint8" | "uint16";
  /** Per-row shape. */
  shape: number[];
  /** Bytes per row. */
  rowBytes: number;
}

/** The observation spec of a form. */
export function obsSpec(form: StoreForm): ObsSpec {
  return form === "frames"
    ? { form, dtype: "uint8", shape: [FRAME_SIZE, FRAME_SIZE], rowBytes: FRAME_BYTES }
    : { form, dtype: "uint16", shape: [TOKENS_PER_FRAME], rowBytes: TOKENS_PER_FRAME * 2 };
}

/** One observation chunk as recorded in the manifest. */
export interface ChunkInfo {
  /** Path relative to the store directory. */
  file: string;
  /** Global row index of the chunk's first row. */
  firstRow: number;
  /** Number of rows. */
  rows: number;
  /** CRC-32 (zlib) of the file, hex. */
  crc32: string;
}

/** Size and checksum of one binary file. */
export interface FileInfo {
  /** Length in bytes. */
  bytes: number;
  /** CRC-32 (zlib) of the file, hex. */
  crc32: string;
}

/** The manifest of a complete store (`manifest.json`). */
export interface StoreManifest {
  /** Always {@link STORE_FORMAT}. */
  format: typeof STORE_FORMAT;
  /** Always {@link STORE_VERSION}. */
  version: number;
  /** Observation form. */
  form: StoreForm;
  /** Observation element type and per-row shape. */
  obs: { dtype: "uint8" | "uint16"; shape: number[] };
  /** Game name (scores.json spelling). */
  game: string;
  /** Row of the task-embedding table (see atari/task_ids.ts). */
  taskId: number;
  /** Full action ids of the game's minimal set, ALE order. */
  minimalActions: number[];
  /** Number of episodes. */
  episodes: number;
  /** Number of rows (transitions) in all episodes. */
  transitions: number;
  /** Episodes flagged truncated. */
  truncatedEpisodes: number;
  /** Observation chunks, in row order. */
  chunks: ChunkInfo[];
  /** Sizes and checksums of the per-step and per-episode files. */
  files: Record<string, FileInfo>;
  /** Provenance (collection settings, DQN-Replay runs/checkpoints, subsampling choices). */
  source: Record<string, unknown>;
  /** ISO time the store was completed. */
  createdAt: string;
}

/** The journal of an incomplete store: what has been durably committed so far. */
export interface StoreJournal {
  /** Always {@link STORE_FORMAT}. */
  format: typeof STORE_FORMAT;
  /** Observation form. */
  form: StoreForm;
  /** Game name. */
  game: string;
  /** Committed chunks. */
  chunks: ChunkInfo[];
  /** Committed byte length of each meta file. */
  bytes: Record<string, number>;
  /** Committed episodes. */
  episodes: number;
  /** Committed rows. */
  transitions: number;
  /** Committed truncated episodes. */
  truncatedEpisodes: number;
  /** Caller state saved with the last commit (e.g. the converter's position). */
  state?: unknown;
}
