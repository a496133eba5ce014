/**
 * Stage-2 data: turn a frame store into a token store (each frame as its 36 tokenizer ids,
 * uint16) with the same episodes, actions, rewards and terminals. The tokenizer is passed in
 * as a function, so this module does not depend on the GPU engine. Resumable like conversion.
 * @module
 */
import * as path from "node:path";
import { DataError } from "./fs_util.ts";
import { FILES, TOKENS_PER_FRAME } from "./layout.ts";
import { openStore } from "./store.ts";
import { openTokenStoreWriter } from "./writer.ts";

/** Encodes one episode's frames [T,84,84] uint8 to tokenizer ids [T,36]. */
export type FrameEncoder = (frames: Uint8Array, T: number) => Promise<Uint16Array> | Uint16Array;

/** Options of {@link tokenizeStore}. */
export interface TokenizeOptions {
  /** Tokenizer provenance for the manifest (checkpoint path, step, hash...). */
  tokenizer: Record<string, unknown>;
  /** Vocabulary size: every id must be below it (default 2048). */
  vocabSize?: number;
  /** Replace a complete token store. */
  overwrite?: boolean;
  /** Start over instead of resuming an interrupted run. */
  restart?: boolean;
  /** Token bytes per chunk file (default 64 MiB). */
  chunkBytes?: number;
  /** Progress in episodes. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Tokenize every episode of the frame store `src` into a new token store `dst`.
 * @throws DataError when `src` is not a complete frame store, the encoder returns the wrong
 *   shape or out-of-vocabulary ids, or an interrupted run came from another source.
 */
export async function tokenizeStore(
  src: string,
  dst: string,
  encode: FrameEncoder,
  opts: TokenizeOptions,
): Promise<{ episodes: number; transitions: number }> {
  const s = openStore(src);
  try {
    if (s.spec.form !== "frames") throw new DataError(`${src}: not a frame store`);
    const vocab = opts.vocabSize ?? 2048;
    const m = s.manifest;
    const sourceId = `${m.game}:${m.transitions}:${m.files[FILES.offsets].crc32}:${m.createdAt}`;
    const chunkBytes = opts.chunkBytes ?? 64 << 20;
    const w = await openTokenStoreWriter(dst, {
      game: m.game,
      minimalActions: m.minimalActions,
      source: {
        kind: "tokenized",
        from: { dir: path.resolve(src), sourceId, source: m.source },
        tokenizer: opts.tokenizer,
        vocabSize: vocab,
      },
      resume: !opts.restart,
      overwrite: opts.overwrite,
      chunkBytes,
      autoCommit: false,
    });
    const state = w.resumeState as { episode: number; sourceId: string } | undefined;
    if (state && state.sourceId !== sourceId) {
      w.abort();
      throw new DataError(`${path.join(dst, FILES.journal)}: interrupted run used another source`);
    }
    let committedRows = w.transitions;
    try {
      for (let e = state?.episode ?? 0; e < s.numEpisodes; e++) {
        const ep = s.readEpisode(e);
        const T = ep.actions.length;
        const tokens = await encode(ep.obs as Uint8Array, T);
        if (!(tokens instanceof Uint16Array) || tokens.length !== T * TOKENS_PER_FRAME) {
          throw new DataError(`${src}: encoder returned ${tokens?.length} ids for ${T} frames`);
        }
        for (let i = 0; i < tokens.length; i++) {
          if (tokens[i] >= vocab) {
            throw new DataError(`${src}: encoder returned id ${tokens[i]} >= vocab ${vocab}`);
          }
        }
        await w.addEpisode({ ...ep, tokens });
        if ((w.transitions - committedRows) * TOKENS_PER_FRAME * 2 >= chunkBytes) {
          await w.commit({ episode: e + 1, sourceId });
          committedRows = w.transitions;
        }
        opts.onProgress?.(e + 1, s.numEpisodes);
      }
      const r = { episodes: w.episodes, transitions: w.transitions };
      await w.close();
      return r;
    } catch (err) {
      if (err instanceof DataError) w.discard();
      else w.abort();
      throw err;
    }
  } finally {
    s.close();
  }
}
