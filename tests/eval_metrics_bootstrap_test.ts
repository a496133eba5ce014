import assert from "node:assert/strict";
import {
  bootstrapDistributions,
  DEFAULT_BOOTSTRAP_REPS,
  intervalFromDistribution,
  percentile,
  resolveBootstrapOptions,
  stratifiedBootstrapCI,
  stratifiedBootstrapCIs,
  stratifiedResample,
} from "../eval/bootstrap.ts";
import { aggregateIqm, aggregateMean, aggregateMedian } from "../eval/metrics.ts";
import { Xoshiro128StarStar } from "../util/rng.ts";

function close(actual: number, expected: number, tol = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} != ${expected} (tol ${tol})`);
}

/** Synthetic scores: `games` games, `runs` runs each, game g ~ Normal(g, 1 + g / 2). */
function synthetic(games: number, runs: number, seed: number): number[][] {
  const g = new Xoshiro128StarStar(seed);
  const normal = () => {
    const u = 1 - g.nextFloat();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * g.nextFloat());
  };
  return Array.from(
    { length: games },
    (_, k) => Array.from({ length: runs }, () => k + (1 + k / 2) * normal()),
  );
}

const AGGREGATES = { mean: aggregateMean, median: aggregateMedian, iqm: aggregateIqm };

Deno.test("percentile: numpy 'linear' quantiles, hand-computed", () => {
  const v = [4, 1, 10, 3, 2]; // sorted 1 2 3 4 10, index = q/100 * 4
  close(percentile(v, 2.5), 1.1);
  close(percentile(v, 97.5), 9.4);
  close(percentile(v, 50), 3);
  close(percentile(v, 0), 1);
  close(percentile(v, 100), 10);
  close(percentile(v, 62.5), 3.5);
  close(percentile([5], 2.5), 5);
  assert.throws(() => percentile([], 50), RangeError);
  assert.throws(() => percentile(v, 101), RangeError);
});

Deno.test("percentile and basic intervals from a known distribution", () => {
  const dist = [4, 1, 10, 3, 2];
  assert.deepStrictEqual(intervalFromDistribution(5, dist), {
    point: 5,
    lower: percentile(dist, 2.5),
    upper: percentile(dist, 97.5),
  });
  const basic = intervalFromDistribution(5, dist, 0.95, "basic");
  close(basic.lower, 10 - 9.4);
  close(basic.upper, 10 - 1.1);
  const wide = intervalFromDistribution(5, dist, 0.5); // quartiles: index 1 and 3
  close(wide.lower, 2);
  close(wide.upper, 4);
});

Deno.test("stratified resampling keeps every game's runs inside its own stratum", () => {
  const scores = [[1, 2, 3], [100, 200], [-5, -6, -7, -8]];
  const rng = new Xoshiro128StarStar(3);
  for (let r = 0; r < 200; r++) {
    const s = stratifiedResample(scores, rng);
    assert.deepStrictEqual(s.map((x) => x.length), [3, 2, 4]);
    s.forEach((runs, g) => runs.forEach((v) => assert.ok(scores[g].includes(v))));
  }
  // With task bootstrap each slot holds runs of one (randomly drawn) game, with its length.
  let moved = 0;
  for (let r = 0; r < 200; r++) {
    const s = stratifiedResample(scores, rng, true);
    s.forEach((runs, g) => {
      const src = scores.findIndex((game) => game.includes(runs[0]));
      assert.equal(runs.length, scores[src].length);
      runs.forEach((v) => assert.ok(scores[src].includes(v)));
      if (src !== g) moved++;
    });
  }
  assert.ok(moved > 0);
});

Deno.test("seeded bootstrap is reproducible; another seed gives other bounds", () => {
  const scores = synthetic(6, 10, 1);
  const a = stratifiedBootstrapCIs(scores, AGGREGATES, { seed: 11, reps: 500 });
  const b = stratifiedBootstrapCIs(scores, AGGREGATES, { seed: 11, reps: 500 });
  const c = stratifiedBootstrapCIs(scores, AGGREGATES, { seed: 12, reps: 500 });
  assert.deepStrictEqual(a, b);
  assert.equal(a.iqm.point, c.iqm.point);
  assert.notEqual(a.iqm.lower, c.iqm.lower);
  // Shared replicates: a statistic's interval does not depend on the others computed with it.
  const alone = stratifiedBootstrapCI(scores, aggregateMedian, { seed: 11, reps: 500 });
  assert.deepStrictEqual(alone, a.median);
});

Deno.test("CIs contain the point estimate and shrink with more runs", () => {
  const few = stratifiedBootstrapCIs(synthetic(8, 5, 2), AGGREGATES);
  const many = stratifiedBootstrapCIs(synthetic(8, 80, 2), AGGREGATES);
  for (const est of [few, many]) {
    for (const e of Object.values(est)) {
      assert.ok(e.lower <= e.point && e.point <= e.upper, JSON.stringify(e));
      assert.ok(e.upper > e.lower);
    }
  }
  for (const k of ["mean", "median", "iqm"] as const) {
    const wFew = few[k].upper - few[k].lower;
    const wMany = many[k].upper - many[k].lower;
    // Widths scale like 1/sqrt(runs): 16x more runs, about 4x narrower.
    assert.ok(wMany < wFew / 2, `${k}: ${wMany} vs ${wFew}`);
  }
});

Deno.test("bootstrap CI of a mean matches the normal approximation", () => {
  // One game, 400 runs: the 95% CI half-width of the mean is about 1.96 * sd / sqrt(n).
  const runs = synthetic(1, 400, 5);
  const n = runs[0].length;
  const m = runs[0].reduce((s, v) => s + v, 0) / n;
  const sd = Math.sqrt(runs[0].reduce((s, v) => s + (v - m) ** 2, 0) / n);
  const ci = stratifiedBootstrapCI(runs, aggregateMean, { reps: 4000, seed: 9 });
  const half = (ci.upper - ci.lower) / 2;
  const expected = 1.959964 * sd / Math.sqrt(n);
  assert.ok(Math.abs(half / expected - 1) < 0.1, `${half} vs ${expected}`);
  close(ci.point, m, 1e-12);
  assert.ok(Math.abs((ci.upper + ci.lower) / 2 - m) < 0.2 * half);
});

Deno.test("degenerate data gives zero-width intervals at the point estimate", () => {
  const ci = stratifiedBootstrapCIs([[2, 2, 2], [5], [7, 7]], AGGREGATES, { reps: 50 });
  assert.deepStrictEqual(ci.mean, { point: 14 / 3, lower: 14 / 3, upper: 14 / 3 });
  assert.deepStrictEqual(ci.median, { point: 5, lower: 5, upper: 5 });
});

Deno.test("bootstrap distribution has reps entries per statistic; options are validated", () => {
  const d = bootstrapDistributions(synthetic(3, 4, 1), [aggregateMean, aggregateIqm], { reps: 37 });
  assert.deepStrictEqual(d.map((x) => x.length), [37, 37]);
  assert.deepStrictEqual(resolveBootstrapOptions(), {
    reps: DEFAULT_BOOTSTRAP_REPS,
    confidence: 0.95,
    seed: 0,
    method: "percentile",
    taskBootstrap: false,
  });
  assert.equal(DEFAULT_BOOTSTRAP_REPS, 2000);
  assert.throws(() => resolveBootstrapOptions({ reps: 0 }), RangeError);
  assert.throws(() => resolveBootstrapOptions({ confidence: 1 }), RangeError);
  assert.throws(() => stratifiedBootstrapCI([[1], []], aggregateMean), /game 1/);
});
