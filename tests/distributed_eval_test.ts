/**
 * Sharded evaluation: `mpiexec -n 2 deno run -A eval/evaluate.ts ...` writes the same results
 * (and the same recordings) as one process with the same seed; the sharding and the
 * per-episode seeds are pure functions.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { episodeExploreSeed, episodeResetSeed, shardEpisodes } from "../eval/sharding.ts";
import { mergeGameRuns, packRecordings, unpackRecordings } from "../eval/gather_runs.ts";
import type { GameRun } from "../eval/episode_runner.ts";
import { writeTinyCheckpoint } from "./helpers/eval_tiny_checkpoint.ts";
import { initRuntime } from "../kernels/core/runtime.ts";

const ROOT = path.resolve(import.meta.dirname!, "..");

Deno.test("eval sharding: round-robin over (game, episode), a partition for any rank count", () => {
  const games = ["Pong", "Breakout", "Qbert"];
  assert.deepEqual(
    [...shardEpisodes(games, 3, 0, 2)],
    [["Pong", [0, 2]], ["Breakout", [1]], ["Qbert", [0, 2]]],
  );
  assert.deepEqual(
    [...shardEpisodes(games, 3, 1, 2)],
    [["Pong", [1]], ["Breakout", [0, 2]], ["Qbert", [1]]],
  );
  assert.deepEqual([...shardEpisodes(games, 2, 0, 1)].map(([, e]) => e), [[0, 1], [0, 1], [0, 1]]);
  for (const size of [1, 2, 3, 5, 8]) {
    for (const game of games) {
      const all = Array.from(
        { length: size },
        (_, r) => shardEpisodes(games, 7, r, size).get(game)!,
      )
        .flat().sort((a, b) => a - b);
      assert.deepEqual(all, [0, 1, 2, 3, 4, 5, 6], `size ${size} ${game}`);
    }
  }
  // 2 episodes of 1 game on 8 ranks: 6 ranks run nothing (empty lists, still listed).
  assert.deepEqual(shardEpisodes(["Pong"], 2, 7, 8).get("Pong"), []);
  assert.throws(() => shardEpisodes(games, 3, 2, 2), RangeError);
});

Deno.test("eval sharding: episode seeds depend on (seed, game, episode) only", () => {
  const a = episodeResetSeed(0, "Pong", 3);
  assert.equal(a, episodeResetSeed(0, "Pong", 3));
  assert.ok(Number.isInteger(a) && a >= 0 && a < 2 ** 31 - 1);
  const seeds = new Set<number>();
  for (const seed of [0, 1]) {
    for (const game of ["Pong", "Breakout"]) {
      for (let ep = 0; ep < 16; ep++) seeds.add(episodeResetSeed(seed, game, ep));
    }
  }
  assert.equal(seeds.size, 64, "distinct across seed, game and episode");
  assert.notEqual(episodeExploreSeed(0, "Pong", 0), episodeExploreSeed(0, "Pong", 1));
  assert.throws(() => episodeResetSeed(0, "Pong", -1), RangeError);
});

function part(ids: number[], rets: number[], steps: number, seconds: number): GameRun {
  return {
    game: "Pong",
    episodeIds: ids,
    returns: rets,
    lengths: ids.map((i) => 10 + i),
    truncated: ids.map((i) => i % 2 === 0),
    agentSteps: steps,
    batchSteps: steps,
    seconds,
    recordings: [],
  };
}

Deno.test("eval gather: parts merge in episode order; gaps and duplicates are errors", () => {
  const m = mergeGameRuns([part([0, 2], [5, 7], 30, 2), part([1], [6], 11, 3)], 3);
  assert.deepEqual(m.returns, [5, 6, 7]);
  assert.deepEqual(m.lengths, [10, 11, 12]);
  assert.deepEqual(m.truncated, [true, false, true]);
  assert.deepEqual(m.episodeIds, [0, 1, 2]);
  assert.equal(m.agentSteps, 41);
  assert.equal(m.seconds, 3);
  assert.throws(() => mergeGameRuns([part([0], [5], 1, 1)], 2), /episode 1 was not run/);
  assert.throws(() => mergeGameRuns([part([0], [5], 1, 1), part([0], [5], 1, 1)], 1), /twice/);
  const rec = {
    episode: 1,
    frames: [Uint8Array.from([1, 2, 3])],
    imagined: [null, Float32Array.from([0.5, -1])],
    actions: [3],
    return: 2,
  };
  const back = unpackRecordings(packRecordings([rec]));
  assert.deepEqual(back, [rec]);
  assert.ok(back[0].imagined[1] instanceof Float32Array);
});

async function hasMpiexec(): Promise<boolean> {
  try {
    const out = await new Deno.Command("mpiexec", { args: ["--version"], stdout: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}
const MPIEXEC = await hasMpiexec();

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(600_000),
  }).output();
  const dec = new TextDecoder();
  assert.equal(
    out.code,
    0,
    `${cmd} ${args.join(" ")}:\n${dec.decode(out.stdout)}\n${dec.decode(out.stderr)}`,
  );
}

/** results.json without what depends on timing and the clock. */
function comparable(doc: Record<string, unknown>): unknown {
  return JSON.parse(
    JSON.stringify(doc),
    (k, v) => ["createdAt", "seconds", "agentStepsPerSecond"].includes(k) ? undefined : v,
  );
}

Deno.test({
  name: "eval sharded: mpiexec -n 2 writes the results and recordings of one process",
  ignore: !MPIEXEC,
  fn: async () => {
    await initRuntime();
    const tmp = await Deno.makeTempDir({ prefix: "jowa-eval-mpi-" });
    try {
      const ckpt = await writeTinyCheckpoint(path.join(tmp, "ckpt"));
      // 3 episodes over 2 environments (rank 0 runs episodes 0 and 2, rank 1 episode 1: the
      // episodes change environment slots), random actions (epsilon 1) from each episode's
      // own stream, 10 agent steps each. (Sharding across games: the unit test above.)
      const args = (out: string) => [
        "run",
        "-A",
        "eval/evaluate.ts",
        ...["--checkpoint", ckpt, "--games", "Pong", "--episodes", "3", "--envs", "2"],
        ...["--no-plan", "--epsilon", "1", "--max-frames", "40", "--seed", "5"],
        ...["--record", "3", "--bootstrap-reps", "20", "--quiet", "--out", out],
      ];
      const one = path.join(tmp, "one"), two = path.join(tmp, "two");
      await run(Deno.execPath(), args(one));
      await run("mpiexec", ["-n", "2", Deno.execPath(), ...args(two)]);
      const read = async (d: string) =>
        JSON.parse(await Deno.readTextFile(path.join(d, "results.json")));
      const [a, b] = [await read(one), await read(two)];
      assert.deepEqual(comparable(b), comparable(a));
      assert.equal(a.games.length, 1);
      assert.equal(a.games[0].returns.length, 3);
      // Only rank 0 wrote: the same files, byte-identical recordings.
      const list = async (d: string) =>
        (await Array.fromAsync(Deno.readDir(d))).map((e) => e.name).sort();
      assert.deepEqual(await list(two), await list(one));
      const gifs = await list(path.join(one, "recordings"));
      assert.equal(gifs.length, 3);
      assert.deepEqual(await list(path.join(two, "recordings")), gifs);
      for (const g of gifs) {
        assert.deepEqual(
          await Deno.readFile(path.join(two, "recordings", g)),
          await Deno.readFile(path.join(one, "recordings", g)),
          g,
        );
      }
      // Different episodes saw different frames (the comparison above is not vacuous).
      const f0 = await Deno.readFile(path.join(one, "recordings", gifs[0]));
      const f1 = await Deno.readFile(path.join(one, "recordings", gifs[1]));
      assert.notDeepEqual(f0, f1);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
