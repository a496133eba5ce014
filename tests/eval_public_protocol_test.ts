/**
 * `deno task eval --protocol public`: the generated settings equal
 * shared/reference/public_eval_settings.json; options resolve per game and model size
 * (context, K, H, the 108k agent-step cap); the window the runner actually plans with is
 * min(8 - H, context); the agent-step cap cuts episodes; the results table puts the authors'
 * means beside ours with the bootstrap verdict; and the CLI runs end to end.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";
import { PUBLIC_EVAL_SETTINGS } from "../atari/public_eval_settings.ts";
import { PRETRAIN_GAMES } from "../atari/mod.ts";
import { CONFIGS } from "../models/world_action/configs.ts";
import { parseEvalArgs } from "../eval/eval_options.ts";
import {
  modelSizeOf,
  publicGames,
  resolveGameProtocol,
  resolveModelSize,
} from "../eval/public_protocol.ts";
import { PlanningAgent } from "../eval/agent.ts";
import { EnvHistory } from "../eval/context_history.ts";
import { runGame } from "../eval/episode_runner.ts";
import {
  compareWithAuthors,
  computeResults,
  renderResultsMarkdown,
} from "../eval/results_table.ts";
import { evaluate } from "../eval/evaluate.ts";
import type { ResultsDocument } from "../eval/results_writer.ts";
import type { FrameTokenizer } from "../eval/frame_tokenizer.ts";
import { randomMdp, StubPlanningModel } from "./helpers/eval_stub_model.ts";
import { writeTinyCheckpoint } from "./helpers/eval_tiny_checkpoint.ts";

// The reference file lives beside the clone (../shared, as in CI) or in a repo-local shared/.
const SETTINGS_JSON = [
  new URL("../../shared/reference/public_eval_settings.json", import.meta.url),
  new URL("../shared/reference/public_eval_settings.json", import.meta.url),
].map((u) => fileURLToPath(u)).find((p) => existsSync(p));
if (!SETTINGS_JSON) {
  console.warn(
    "SKIP public settings equality: shared/reference/public_eval_settings.json is absent, so " +
      "atari/public_eval_settings.ts cannot be compared.",
  );
}

Deno.test({
  name:
    "public protocol: public_eval_settings.ts equals shared/reference/public_eval_settings.json",
  ignore: !SETTINGS_JSON,
  fn() {
    const ref = JSON.parse(readFileSync(SETTINGS_JSON!, "utf8"));
    const ours = JSON.parse(JSON.stringify(PUBLIC_EVAL_SETTINGS));
    assert.deepStrictEqual(ours, ref);
    for (const m of Object.keys(ref.models)) {
      assert.deepStrictEqual(Object.keys(ours.models[m]), Object.keys(ref.models[m]), m);
    }
  },
});

const opts = (...args: string[]) => parseEvalArgs(["--checkpoint", "c", ...args])!;

Deno.test("public protocol: options, caps and their errors", () => {
  const paper = opts();
  assert.equal(paper.protocol, "paper");
  assert.equal(paper.horizon, 2);
  assert.equal(paper.maxFrames, 108_000);
  assert.equal(paper.maxAgentSteps, null);
  assert.equal(paper.context, null);
  const pub = opts("--protocol", "public");
  assert.equal(pub.protocol, "public");
  assert.equal(pub.horizon, null); // per game
  assert.equal(pub.maxAgentSteps, 108_000); // their max_steps counts agent steps
  assert.equal(pub.maxFrames, 0);
  const capped = opts("--protocol", "public", "--max-frames", "400");
  assert.equal(capped.maxFrames, 400);
  assert.equal(capped.maxAgentSteps, null);
  const steps = opts("--max-steps", "50");
  assert.equal(steps.maxAgentSteps, 50);
  assert.equal(steps.maxFrames, 0);
  assert.equal(opts("--model-size", "70M").modelSize, "70M");
  assert.equal(opts("--context", "3").context, 3);
  assert.equal(opts("--rom-dir", "/roms").romDir, "/roms");
  assert.throws(() => opts("--protocol", "iris"), /--protocol must be paper or public/);
  assert.throws(() => opts("--model-size", "99M"), /--model-size must be one of 40M, 70M, 150M/);
  assert.throws(() => opts("--context", "0"), /--context must be an integer in 1..8/);
  assert.throws(() => opts("--context", "9"), /--context must be an integer in 1..8/);
  assert.throws(() => opts("--max-frames", "4", "--max-steps", "1"), /give one/);
});

// The 150M contexts as the authors' code report (jowa_diff_report.md §4.2), typed in here
// independently of the JSON: Assault, Carnival 4; BeamRider, Seaquest, Centipede 6;
// NameThisGame, DemonAttack 3; Berzerk 1; every other game 2.
const CONTEXT_150M: Record<string, number> = {
  Assault: 4,
  Carnival: 4,
  BeamRider: 6,
  Seaquest: 6,
  Centipede: 6,
  NameThisGame: 3,
  DemonAttack: 3,
  Berzerk: 1,
};

Deno.test("public protocol: per game and size context, K and H; overrides; paper unchanged", () => {
  const pub = opts("--protocol", "public");
  assert.deepEqual(new Set(publicGames("150M")), new Set(PRETRAIN_GAMES));
  for (const game of PRETRAIN_GAMES) {
    const p = resolveGameProtocol(pub, game, "150M");
    assert.equal(p.context, CONTEXT_150M[game] ?? 2, game);
    assert.equal(p.horizon, 2, game);
    assert.equal(p.authorsReturns!.length, 16, game);
  }
  // Beam widths: 4 for Seaquest/TimePilot/Zaxxon in their code (the paper's T16 says 3).
  assert.equal(resolveGameProtocol(pub, "Seaquest", "150M").beamWidth, 4);
  assert.equal(resolveGameProtocol(opts(), "Seaquest", null).beamWidth, 3);
  assert.equal(resolveGameProtocol(pub, "Atlantis", "150M").beamWidth, 3);
  assert.equal(resolveGameProtocol(pub, "Phoenix", "150M").beamWidth, 2);
  // Sizes differ: Berzerk keeps 6 timesteps at 40M, 1 at 70M and 150M.
  assert.equal(resolveGameProtocol(pub, "Berzerk", "40M").context, 6);
  assert.equal(resolveGameProtocol(pub, "Berzerk", "70M").context, 1);
  assert.equal(resolveGameProtocol(pub, "StarGunner", "70M").context, 6);
  assert.equal(resolveGameProtocol(pub, "Assault", "40M").authorsReturns![2], 2666);
  // Flags win over the protocol's values; no planning is K 1, H 0.
  const o = resolveGameProtocol(
    opts("--protocol", "public", "--beam-width", "3", "--context", "5", "--horizon", "1"),
    "Assault",
    "150M",
  );
  assert.deepEqual([o.beamWidth, o.horizon, o.context], [3, 1, 5]);
  const greedy = resolveGameProtocol(opts("--protocol", "public", "--no-plan"), "Assault", "150M");
  assert.deepEqual([greedy.beamWidth, greedy.horizon, greedy.context], [1, 0, 4]);
  // The paper protocol: H 2, T16's K, all that fits, no authors' returns.
  const paper = resolveGameProtocol(opts(), "Assault", null);
  assert.deepEqual([paper.horizon, paper.context, paper.authorsReturns], [2, null, null]);
  // Held-out games have no public settings.
  assert.throws(() => resolveGameProtocol(pub, "Pong", "150M"), /no settings for Pong/);
});

Deno.test("public protocol: model size from the config's shapes, else --model-size", () => {
  assert.equal(modelSizeOf(CONFIGS["40M"]), "40M");
  assert.equal(modelSizeOf(CONFIGS["70M"]), "70M");
  assert.equal(modelSizeOf(CONFIGS["150M"]), "150M");
  assert.equal(modelSizeOf({ ...CONFIGS["150M"], name: "imported" }), "150M");
  assert.equal(modelSizeOf(CONFIGS.tiny), null);
  assert.equal(modelSizeOf({ ...CONFIGS["150M"], qEnsemble: 2 }), null);
  assert.equal(resolveModelSize(CONFIGS["70M"], null), "70M");
  assert.equal(resolveModelSize(CONFIGS.tiny, "40M"), "40M");
  assert.throws(() => resolveModelSize(CONFIGS.tiny, null), /pass --model-size/);
  assert.throws(() => resolveModelSize(CONFIGS["150M"], "40M"), /contradicts the checkpoint/);
});

/** A stub model that records the context length of every prefill. */
class RecordingModel extends StubPlanningModel {
  prefillLengths: number[] = [];
  override prefill(tokens: Tensor, tasks: Tensor) {
    this.prefillLengths.push(tokens.shape[1]);
    return super.prefill(tokens, tasks);
  }
}

/** Every frame becomes node 0 of the stub MDP (36 zero tokens). */
const stubTokenizer: FrameTokenizer = {
  tokensPerFrame: 36,
  encode: (frames) => {
    const n = (frames as Uint8Array).length / (84 * 84);
    return tensor(new Int32Array(n * 36), [n, 36], "i32");
  },
  decode: () => {
    throw new Error("not recording");
  },
};

/** Context tokens of a window of w observations ending on the current one. */
const windowTokens = (w: number) => (w - 1) * 37 + 36;

Deno.test("public protocol: the agent plans with min(8 - H, context) observations", async () => {
  await initRuntime();
  const mdp = randomMdp(4, 18, 3);
  const valid = new Array(18).fill(1);
  for (
    const [H, K, context] of [[2, 2, 1], [2, 4, 4], [2, 2, 6], [2, 2, 8], [1, 3, 7], [2, 2, null]]
  ) {
    const model = new RecordingModel(mdp);
    const agent = new PlanningAgent(model, stubTokenizer, { horizon: H!, beamWidth: K!, context });
    const W = Math.min(8 - H!, context ?? 8);
    assert.equal(agent.window, W, `H ${H} context ${context}`);
    const history = new EnvHistory(agent.window);
    for (let step = 0; step < 9; step++) {
      const [d] = await agent.decide(new Uint8Array(84 * 84), [{ history, task: 0, valid }]);
      history.push(d.tokens, d.action);
    }
    const want = Array.from({ length: 9 }, (_, s) => windowTokens(Math.min(s + 1, W)));
    assert.deepEqual(model.prefillLengths, want, `H ${H} context ${context}`);
    model.dispose();
  }
  assert.throws(
    () =>
      new PlanningAgent(new RecordingModel(mdp), stubTokenizer, {
        horizon: 2,
        beamWidth: 2,
        context: 0,
      }),
    /context must be a positive integer/,
  );
});

Deno.test("public protocol: the runner's window and the agent-step cap on Pong", async () => {
  await initRuntime();
  // Their 150M Assault settings (context 4, K 2, H 2), played on Pong for speed.
  const p = resolveGameProtocol(opts("--protocol", "public"), "Assault", "150M");
  const model = new RecordingModel(randomMdp(4, 18, 5));
  const agent = new PlanningAgent(model, stubTokenizer, {
    horizon: p.horizon,
    beamWidth: p.beamWidth,
    context: p.context,
  });
  const run = await runGame(agent, {
    game: "Pong",
    taskId: 39,
    episodes: 2,
    maxAgentSteps: 7,
    epsilon: 0,
  });
  // Both episodes are cut by the cap after exactly 7 agent steps (28 frames), not 7 frames.
  assert.deepEqual(run.lengths, [7, 7]);
  assert.deepEqual(run.truncated, [true, true]);
  assert.equal(run.agentSteps, 14);
  assert.equal(run.batchSteps, 7);
  // One prefill per batched step (both environments share a window length): min(6, 4) = 4.
  assert.deepEqual(model.prefillLengths, [1, 2, 3, 4, 4, 4, 4].map(windowTokens));
  // Berzerk's episode frame counter starts at 20 after a reset: the cap still counts steps.
  // Three episodes on two environments: one environment is reset by the runner at the cap.
  const berzerk = await runGame(agent, {
    game: "Berzerk",
    taskId: 10,
    episodes: 3,
    numEnvs: 2,
    maxAgentSteps: 3,
    epsilon: 0,
  });
  assert.deepEqual(berzerk.lengths, [3, 3, 3]);
  assert.deepEqual(berzerk.truncated, [true, true, true]);
  await assert.rejects(
    () => runGame(agent, { game: "Pong", taskId: 39, episodes: 1, maxAgentSteps: 0 }),
    /maxAgentSteps must be a positive integer/,
  );
  model.dispose();
});

Deno.test("public protocol: results beside the authors' means with the bootstrap verdict", () => {
  // Constant samples: the CI of the difference is the point itself.
  const same = compareWithAuthors([5, 5, 5], [5, 5, 5, 5]);
  assert.deepEqual(same.difference, { point: 0, lower: 0, upper: 0 });
  assert.equal(same.withinCI, true);
  const off = compareWithAuthors([4000, 4000], [5460, 5460]);
  assert.equal(off.difference.point, -1460);
  assert.equal(off.withinCI, false);
  // Noisy overlap: ours {0, 10} vs theirs {5}: the difference 0 is inside [-5, 5].
  const noisy = compareWithAuthors([0, 10, 0, 10], [5], { reps: 500 });
  assert.equal(noisy.difference.point, 0);
  assert.ok(noisy.difference.lower <= -2.5 && noisy.difference.upper >= 2.5);
  assert.equal(noisy.withinCI, true);

  const theirs = resolveGameProtocol(opts("--protocol", "public"), "Phoenix", "150M")
    .authorsReturns!; // sixteen 5230s
  const results = computeResults([
    { game: "Phoenix", returns: [5230, 5230] },
    { game: "Assault", returns: [100, 120] },
    { game: "Pong", returns: [1, 2] },
  ], {
    reps: 200,
    authors: {
      model: "JOWA-150M",
      returns: {
        Phoenix: theirs,
        Assault: resolveGameProtocol(opts("--protocol", "public"), "Assault", "150M")
          .authorsReturns!,
      },
    },
  });
  assert.equal(results.authorsModel, "JOWA-150M");
  const [phoenix, assault, pong] = results.games;
  assert.equal(phoenix.authors!.mean, 5230);
  assert.equal(phoenix.authors!.withinCI, true);
  assert.equal(assault.authors!.mean, 1458.5625); // mean of their 16 Assault returns
  assert.equal(assault.authors!.withinCI, false);
  assert.equal(pong.authors, undefined);
  const md = renderResultsMarkdown(results);
  assert.match(md, /JOWA-150M public mean \| Ours − theirs \[95% CI\] \| Within CI \|/);
  assert.match(md, /\| Phoenix \| 2 \|.*\| 5230\.0 \| 0\.0 \[0\.0, 0\.0\] \| yes \|/);
  assert.match(md, /\| Assault \|.*\| 1458\.6 \| -1348\.6 \[[-\d.]+, [-\d.]+\] \| no \|/);
  assert.match(md, /\| Pong \|.*\| — \| — \| — \|/);
  assert.match(md, /1 of 2 games within the CI/);
  // Without authors' returns (the paper protocol) the table keeps its paper columns only.
  const plain = renderResultsMarkdown(
    computeResults([{ game: "Pong", returns: [1] }], { reps: 20 }),
  );
  assert.doesNotMatch(plain, /public mean/);
});

Deno.test("public protocol: eval end to end with --model-size on a tiny checkpoint", async () => {
  await initRuntime();
  const tmp = await Deno.makeTempDir({ prefix: "jowa-eval-public-" });
  try {
    const ckpt = await writeTinyCheckpoint(path.join(tmp, "ckpt"));
    const out = path.join(tmp, "out");
    const base = [
      "--checkpoint",
      ckpt,
      "--protocol",
      "public",
      "--games",
      "Berzerk",
      "--episodes",
      "2",
      "--max-steps",
      "5",
      "--bootstrap-reps",
      "50",
      "--out",
      out,
      "--quiet",
    ];
    // The tiny config is none of the released sizes: the size must be given.
    await assert.rejects(() => evaluate(parseEvalArgs(base)!), /pass --model-size/);
    await evaluate(parseEvalArgs([...base, "--model-size", "70M"])!);
    const doc = JSON.parse(
      await Deno.readTextFile(path.join(out, "results.json")),
    ) as ResultsDocument;
    const g = doc.games[0];
    // JOWA-70M Berzerk: context 1, K 4, H 2 -> a window of min(6, 1) = 1 observation.
    assert.deepEqual([g.beamWidth, g.horizon, g.window], [4, 2, 1]);
    assert.deepEqual(g.lengths, [5, 5]);
    assert.deepEqual(g.truncated, [true, true]);
    assert.equal(doc.settings.protocol, "public");
    assert.equal(doc.settings.modelSize, "70M");
    assert.equal(doc.settings.maxAgentSteps, 5);
    assert.equal(doc.results.authorsModel, "JOWA-70M");
    assert.equal(doc.results.games[0].authors!.mean, 7790 / 16);
    const md = await Deno.readTextFile(path.join(out, "results.md"));
    assert.match(md, /JOWA-70M public mean/);
    assert.match(md, /\| Berzerk \| 2 \|/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
