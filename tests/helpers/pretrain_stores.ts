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
import { DEFAULT_CONFIG, type PretrainConfig } from "../../train/pretrain_options.ts";

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

/**
 * A fresh temporary directory (`prefix`) with tiny Pong and Phoenix token stores (vocabulary
 * 16; `stores`: 3 episodes of 12 steps unless given) under `data/`, and the pretraining config
 * of the loop tests on them: batch 4 of 2-step segments, runs under `runs/`, no sampler
 * threads, no report, no periodic checkpoint; `cfg` sets the stages, intervals and seed.
 */
export async function tinyPretrainRun(
  prefix: string,
  cfg: Partial<PretrainConfig>,
  stores: { episodes: number; steps: number } = { episodes: 3, steps: 12 },
): Promise<{ tmp: string; base: PretrainConfig }> {
  const tmp = Deno.makeTempDirSync({ prefix });
  const data = await writeTokenStores(path.join(tmp, "data"), ["Pong", "Phoenix"], {
    ...stores,
    vocab: 16,
    seed: 5,
  });
  const base: PretrainConfig = {
    ...DEFAULT_CONFIG,
    runsDir: path.join(tmp, "runs"),
    data,
    batch: 4,
    segmentLength: 2,
    ckptEvery: 100,
    workers: 0,
    report: false,
    ...cfg,
  };
  return { tmp, base };
}
