import assert from "node:assert/strict";
import { computeResults, formatNumber, renderResultsMarkdown } from "../eval/results_table.ts";
import { FINETUNE_GAMES, gameReference, PRETRAIN_GAMES } from "../atari/scores.ts";

Deno.test("per-game rows: hand-computed return stats and normalized scores", () => {
  const r = computeResults([
    { game: "Assault", returns: [222.4, 742.0] }, // mean 482.2, population std 259.8
    { game: "pong", returns: [19.5, -20.7, -0.6, -0.6] }, // mean -0.6
  ], { reps: 200 });
  const [assault, pong] = r.games;
  assert.equal(assault.game, "Assault");
  assert.equal(assault.episodes, 2);
  assert.ok(Math.abs(assault.meanReturn - 482.2) < 1e-9);
  assert.ok(Math.abs(assault.stdReturn - 259.8) < 1e-9);
  assert.ok(Math.abs(assault.hns - 0.5) < 1e-12);
  assert.equal(assault.dqnNormalized, null);
  assert.equal(assault.paperReturn, 2302);
  assert.ok(Math.abs(assault.paperHns - 2079.6 / 519.6) < 1e-12);
  assert.equal(pong.game, "Pong");
  assert.equal(pong.split, "finetune");
  assert.ok(Math.abs((pong.dqnNormalized as number) - 0.5) < 1e-12); // (-0.6 + 20.7) / 40.2
  assert.ok(Math.abs(pong.hns - 20.1 / 35.3) < 1e-12);
  assert.ok(Math.abs((pong.paperDqnNormalized as number) - 38.4 / 40.2) < 1e-12);
  assert.equal(r.dqnNormalized, null); // Assault has no DQN reference
  assert.equal(r.paper.dqnNormalized, null);
  assert.equal(r.std, "population");
  // Mean of game means of HNS: (0.5 + 20.1/35.3) / 2.
  assert.ok(Math.abs(r.hns.mean.point - (0.5 + 20.1 / 35.3) / 2) < 1e-12);
  const sample = computeResults([{ game: "Assault", returns: [222.4, 742.0] }], {
    ddof: 1,
    reps: 10,
  });
  assert.ok(Math.abs(sample.games[0].stdReturn - 259.8 * Math.SQRT2) < 1e-9);
  assert.equal(sample.std, "sample");
});

Deno.test("returns equal to the paper's reproduce the paper's aggregates", () => {
  const pre = computeResults(
    PRETRAIN_GAMES.map((g) => ({ game: g, returns: Array(4).fill(gameReference(g).jowa150m) })),
    { reps: 100 },
  );
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  assert.equal(r3(pre.hns.median.point), 0.456);
  assert.equal(r3(pre.hns.iqmOfGameMeans.point), 0.789);
  assert.equal(r3(pre.paper.hns.median), 0.456);
  assert.equal(r3(pre.paper.hns.iqm), 0.789);
  assert.ok(Math.abs(pre.hns.mean.point - pre.paper.hns.mean) < 1e-9);
  // Identical episodes: nothing to resample, so the intervals collapse to the point.
  assert.equal(pre.hns.iqmOfGameMeans.lower, pre.hns.iqmOfGameMeans.point);
  assert.equal(pre.hns.iqmOfGameMeans.upper, pre.hns.iqmOfGameMeans.point);

  const ft = computeResults(
    FINETUNE_GAMES.map((g) => ({ game: g, returns: [gameReference(g).jowa150m] })),
    { reps: 100 },
  );
  assert.ok(ft.dqnNormalized !== null && ft.paper.dqnNormalized !== null);
  assert.equal(r3(ft.dqnNormalized.iqm.point), 0.647);
  assert.equal(r3(ft.paper.dqnNormalized.iqm), 0.647);
});

Deno.test("markdown table has the expected rows", () => {
  const r = computeResults([
    { game: "Assault", returns: [222.4, 742.0] },
    { game: "Carnival", returns: [1000, 2800, 1900] },
    { game: "Pong", returns: [19.5, -20.7] },
  ], { label: "unit test", reps: 300, seed: 4 });
  const md = renderResultsMarkdown(r);
  const lines = md.split("\n");
  assert.equal(lines[0], "### unit test");
  assert.ok(lines.includes("| Assault | 2 | 482.2 ± 259.8 | 0.500 | — | 2302.0 | 4.002 |"), md);
  // Carnival: population std of 1000, 2800, 1900 = sqrt(540000) = 734.8; paper 5316 / 3800.
  assert.ok(lines.includes("| Carnival | 3 | 1900.0 ± 734.8 | 0.500 | — | 5316.0 | 1.399 |"), md);
  // Pong: mean -0.6 -> HNS 20.1 / 35.3 = 0.569, DQN-norm 0.5; paper 17.7 -> 38.4 / 35.3.
  assert.ok(lines.includes("| Pong | 2 | -0.6 ± 20.1 | 0.569 | 0.500 | 17.7 | 1.088 |"), md);
  assert.ok(lines.some((l) => l.startsWith("| Aggregate (3 games) | HNS [95% CI] |")), md);
  for (const row of ["Mean", "Median", "IQM (episodes × games)", "IQM (game means)"]) {
    const line = lines.find((l) => l.startsWith(`| ${row} |`));
    assert.ok(line, `missing aggregate row ${row}`);
    assert.match(
      line,
      /^\| [^|]+ \| -?\d+\.\d{3} \[-?\d+\.\d{3}, -?\d+\.\d{3}\] \| \d+\.\d{3} \| — \| — \|$/,
    );
  }
  // Median of game-mean HNS (0.5, 0.5, 0.569) is 0.5; paper median of 4.002, 1.399, 1.088.
  assert.ok(lines.find((l) => l.startsWith("| Median |"))?.startsWith("| Median | 0.500 ["));
  assert.ok(lines.find((l) => l.startsWith("| Median |"))?.includes("| 1.399 |"));
  assert.match(md, /population \(ddof 0\).*percentile method, 300 replicates, seed 4/);
});

Deno.test("results object is JSON-serializable", () => {
  const r = computeResults(
    FINETUNE_GAMES.map((g, i) => ({
      game: g,
      returns: [gameReference(g).dqn! * (0.5 + i / 10), 3],
    })),
    { reps: 100 },
  );
  assert.deepStrictEqual(JSON.parse(JSON.stringify(r)), r);
  assert.ok(r.dqnNormalized !== null);
  const md = renderResultsMarkdown(r);
  assert.ok(!md.includes("NaN") && !md.includes("undefined"));
  assert.match(md, /\| IQM \(game means\) \| [^|]+ \| [^|]+ \| -?\d+\.\d{3} \[/);
});

Deno.test("input validation and number formatting", () => {
  assert.throws(() => computeResults([]), RangeError);
  assert.throws(() => computeResults([{ game: "Nope", returns: [1] }]), /Nope/);
  assert.throws(() => computeResults([{ game: "Pong", returns: [] }]), /Pong/);
  assert.throws(
    () => computeResults([{ game: "Pong", returns: [1] }, { game: "pong", returns: [2] }]),
    /twice/,
  );
  assert.equal(formatNumber(-0.0001, 3), "0.000");
  assert.equal(formatNumber(-0.6, 1), "-0.6");
  assert.equal(formatNumber(null, 3), "—");
});
