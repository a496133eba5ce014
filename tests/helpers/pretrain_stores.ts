/**
 * Tiny synthetic token stores for the pretraining tests, written through the real store
 * writer (offline/writer.ts): random tokens from a small vocabulary, actions from each
 * game's minimal set, rewards in {-1, 0, 1}, episodes ending in a terminal.
 *
 * @module
 */
import * as path from "node:path";
import { minimalActionsOf, openTokenStoreWriter } from "../../offline/mod.ts";
import { mulberry32 } from "../../envs/policies.ts";

/** Write `<root>/<game>/` token stores; returns the root. */
export async function writeTokenStores(
  root: string,
  games: string[],
  opts: { episodes: number; steps: number; vocab: number; seed: number },
): Promise<string> {
  const rand = mulberry32(opts.seed);
  for (const game of games) {
    const actions = minimalActionsOf(game);
    const w = await openTokenStoreWriter(path.join(root, game), {
      game,
      minimalActions: actions,
      source: { kind: "synthetic", vocabSize: opts.vocab },
    });
    for (let e = 0; e < opts.episodes; e++) {
      const T = opts.steps;
      const tokens = Uint16Array.from({ length: T * 36 }, () => Math.floor(rand() * opts.vocab));
      const acts = Uint8Array.from(
        { length: T },
        () => actions[Math.floor(rand() * actions.length)],
      );
      const rewards = Float32Array.from({ length: T }, () => Math.floor(rand() * 3) - 1);
      const terminals = new Uint8Array(T);
      terminals[T - 1] = 1;
      await w.addEpisode({ tokens, actions: acts, rewards, terminals, truncated: false });
    }
    await w.close();
  }
  return root;
}
