/**
 * Offline data for JOWA: the DQN-Replay reader and converter, the per-game on-disk store
 * (frames or tokenizer ids), its writer (also used by emulator collection), and the
 * multi-game, resumable, prefetching segment sampler.
 * @module
 */
export { DataError } from "./fs_util.ts";
export {
  type ChunkInfo,
  type FileInfo,
  FILES,
  FRAME_BYTES,
  FRAME_SIZE,
  type ObsSpec,
  obsSpec,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreForm,
  type StoreManifest,
  TOKENS_PER_FRAME,
} from "./layout.ts";
export {
  type EpisodeRecord,
  type FrameStoreWriter,
  openStoreWriter,
  openTokenStoreWriter,
  type StoreWriter,
  type StoreWriterControl,
  type StoreWriterOptions,
  type TokenEpisodeRecord,
  type TokenStoreWriter,
} from "./writer.ts";
export {
  datasetStoreDirs,
  type GameStore,
  openDataset,
  type OpenDatasetOptions,
  openStore,
  type OpenStoreOptions,
  readManifest,
  type StoredEpisode,
} from "./store.ts";
export {
  type BatchShard,
  type GameWeighting,
  type SegmentBatch,
  SegmentSampler,
  type SegmentSamplerOptions,
} from "./segment_sampler.ts";
export { openSampler, type Sampler, type SamplerOptions, type SamplerState } from "./sampler.ts";
// The game catalog (re-exported here for existing callers of the data module).
export {
  ATARI_GAMES,
  gameOfTaskId,
  MINIMAL_ACTIONS,
  minimalActionsOf,
  NUM_TASKS,
  taskIdOf,
} from "../atari/mod.ts";
export { convertGame, type ConvertOptions, type ConvertResult } from "./converter.ts";
export { PADDING_ROWS } from "./dqn_replay.ts";
export { type FrameEncoder, type TokenizeOptions, tokenizeStore } from "./tokenize_store.ts";
export { chooseRuns, type EpisodeRef, selectEpisodes, type Selection } from "./subsample.ts";
export { encodeNpyHeader, type NpyDtype, type NpyHeader, parseNpyHeader } from "./npy.ts";
export { NpyGzReader } from "./npy_gz.ts";
export { Rng } from "../util/rng.ts";
export {
  collect,
  type CollectedGame,
  type CollectOptions,
  type CollectSummary,
} from "./collector.ts";
