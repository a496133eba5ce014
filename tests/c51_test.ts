/** C51 projection, target selection, TD loss and CQL against float64 references. */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import {
  c51Project,
  expectedValue,
  maskedArgmax,
  selectAction,
  softmax,
} from "../kernels/ops/mod.ts";
import { actionLoss, c51TdLoss, cqlPenalty, jointLoss } from "../train/losses.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { atoms, type CpuActionBatch, cql, project, tdLoss } from "./helpers/cpu_c51.ts";
import { assertClose, randArray, rng } from "./helpers/reference.ts";

await initRuntime();

/** Random distributions [rows, K] (softmax of random logits), float32-exact. */
function dists(rows: number, K: number, seed: number, sharp = 3): Float64Array {
  const x = randArray(rows * K, seed, -sharp, sharp);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < K; i++) s += x[r * K + i] = Math.exp(x[r * K + i]);
    for (let i = 0; i < K; i++) x[r * K + i] = Math.fround(x[r * K + i] / s);
  }
  return x;
}

Deno.test("c51Project: matches the floor/ceil scatter, incl. terminals, clipping and exact atoms", async () => {
  const cases: [number, number, number][] = [
    [0.5, 0, 0.99], // ordinary
    [1, 1, 0.99], // terminal: all mass at r
    [35, 0, 0.99], // clipped at vMax
    [-25, 0, 0.99], // clipped at vMin
    [0, 0, 1], // b lands exactly on atoms (identity)
    [-1, 0, 0.5],
    [0.8, 1, 0.99], // terminal between atoms
  ];
  const N = cases.length;
  const p = dists(N, 51, 1);
  const out = c51Project(
    tensor(Float32Array.from(p), [N, 51]),
    tensor(cases.map((c) => c[0]), [N]),
    tensor(cases.map((c) => c[1]), [N]),
    0.99,
  );
  const got = await out.read();
  // gamma is per call: recompute the per-case ones separately.
  for (let n = 0; n < N; n++) {
    if (cases[n][2] !== 0.99) continue;
    const want = project(p.subarray(n * 51, n * 51 + 51), cases[n][0], cases[n][1], 0.99);
    assertClose(got.subarray(n * 51, n * 51 + 51), want, { atol: 1e-6, what: `case ${n}` });
  }
  for (const [r, d, g] of cases.filter((c) => c[2] !== 0.99)) {
    const one = await c51Project(
      tensor(Float32Array.from(p.subarray(0, 51)), [1, 51]),
      tensor([r]),
      tensor([d]),
      g,
    ).read();
    assertClose(one, project(p.subarray(0, 51), r, d, g), {
      atol: 1e-6,
      what: `r=${r} gamma=${g}`,
    });
  }
  // Mass is conserved.
  for (let n = 0; n < N; n++) {
    const s = Array.from(got.subarray(n * 51, n * 51 + 51)).reduce((a, b) => a + b, 0);
    assertClose([s], [1], { atol: 1e-5, what: `mass of case ${n}` });
  }
});

Deno.test("maskedArgmax never picks an invalid action; expectedValue is the mean over the support", async () => {
  const q = tensor([5, 1, 2, 9, 0, 3], [2, 3]);
  const valid = tensor([0, 1, 1, 0, 1, 1], [2, 3]);
  const best = await maskedArgmax(q, valid).read();
  assert.deepEqual([...best], [2, 2]);
  const p = dists(3, 51, 4);
  const ev = await expectedValue(tensor(Float32Array.from(p), [3, 51])).read();
  const z = atoms();
  assertClose(ev, [0, 1, 2].map((r) => z.reduce((s, zi, i) => s + zi * p[r * 51 + i], 0)), {
    atol: 1e-4,
  });
});

Deno.test("selectAction: forward and gradient", async () => {
  const N = 3, A = 4, K = 5;
  const acts = [2, 0, 3];
  await checkOp(
    "selectAction",
    ([x]) => selectAction(x, tensor(acts, [N], "i32")),
    ([x]) =>
      Float64Array.from(
        { length: N * K },
        (_, k) => x[(Math.floor(k / K) * A + acts[Math.floor(k / K)]) * K + (k % K)],
      ),
    [{ data: randArray(N * A * K, 5), shape: [N, A, K] }],
  );
  const before = runtime().dispatchCount;
  assert.throws(
    () =>
      selectAction(tensor(new Float32Array(N * A * K), [N, A, K]), tensor([0, 1, 4], [3], "i32")),
    /outside \[0, 3\]/,
  );
  assert.equal(runtime().dispatchCount, before);
});

function randomBatch(seed: number): CpuActionBatch {
  const r = rng(seed);
  const N = 6, A = 18, K = 51;
  const valid = Array.from({ length: N * A }, (_, i) => (i % A < 6 || r() < 0.3 ? 1 : 0));
  const actions = Array.from({ length: N }, (_, n) => {
    let a;
    do a = Math.floor(r() * A); while (!valid[n * A + a]);
    return a;
  });
  return {
    N,
    A,
    K,
    probs: dists(N * A, K, seed + 1, 2),
    next: dists(N * A, K, seed + 2, 2),
    actions,
    rewards: [0, 1, -1, 0.5, 40, -30].map(Math.fround),
    terminals: [0, 0, 1, 0, 0, 1],
    valid,
    mask: [1, 1, 1, 0, 1, 1],
  };
}

/** CQL's rows differ from the TD transitions (every real step vs transitions). */
const CQL_MASK = [1, 1, 1, 1, 0, 1];

function upload(b: CpuActionBatch, cqlMask = CQL_MASK) {
  return {
    probs: tensor(Float32Array.from(b.probs), [b.N, b.A, b.K]),
    nextTargetProbs: tensor(Float32Array.from(b.next), [b.N, b.A, b.K]),
    actions: tensor(b.actions, [b.N], "i32"),
    rewards: tensor(b.rewards, [b.N]),
    terminals: tensor(b.terminals, [b.N]),
    valid: tensor(b.valid, [b.N, b.A]),
    mask: tensor(b.mask, [b.N]),
    cqlMask: tensor(cqlMask, [b.N]),
  };
}

Deno.test("C51 TD loss and CQL match float64 references (a* over valid actions, terminals, clipping)", async () => {
  const b = randomBatch(7);
  const g = upload(b);
  const parts = actionLoss(g);
  const cqlRows = { probs: g.probs, actions: g.actions, mask: g.cqlMask, valid: g.valid };
  const [td, pen, penValid, both, joint] = await readAll([
    c51TdLoss(g, { gamma: 0.99 }),
    cqlPenalty(cqlRows, { cqlAlpha: 0.1 }),
    cqlPenalty(cqlRows, { cqlAlpha: 0.1, cqlActions: "valid" }),
    parts.action,
    jointLoss(tensor([2.5], []), parts.action, 0.1),
  ]);
  const wantTd = tdLoss(b, 0.99);
  const wantCql = cql({ ...b, mask: CQL_MASK }, 0.1);
  const wantValid = cql({ ...b, mask: CQL_MASK }, 0.1, "valid");
  // The options must differ on this batch, or the test could not tell them apart.
  assert.ok(Math.abs(wantCql - wantValid) > 1e-3, `${wantCql} vs ${wantValid}`);
  assertClose([td[0]], [wantTd], { rtol: 1e-4, what: "TD loss" });
  assertClose([pen[0]], [wantCql], { rtol: 1e-4, atol: 1e-5, what: "CQL (all actions)" });
  assertClose([penValid[0]], [wantValid], { rtol: 1e-4, atol: 1e-5, what: "CQL (valid only)" });
  assertClose([both[0]], [wantTd + wantCql], { rtol: 1e-4, what: "action loss" });
  assertClose([joint[0]], [0.25 + wantTd + wantCql], { rtol: 1e-4, what: "joint loss" });
  assert.throws(
    () => cqlPenalty({ ...cqlRows, valid: undefined }, { cqlActions: "valid" }),
    /needs the valid-action mask/,
  );
});

Deno.test("action loss gradient w.r.t. online logits matches float64 finite differences", async () => {
  const b = randomBatch(9);
  const N = 2, A = 3, K = 51;
  const small: CpuActionBatch = {
    ...b,
    N,
    A,
    next: dists(N * A, K, 3),
    actions: [1, 2],
    valid: [1, 1, 0, 1, 1, 1],
    rewards: [0.5, -1],
    terminals: [0, 1],
    mask: [1, 1],
    probs: new Float64Array(0),
  };
  const logits = randArray(N * A * K, 21, -2, 2);
  const softmaxRows = (x: Float64Array) => {
    const p = new Float64Array(x.length);
    for (let r = 0; r < N * A; r++) {
      let m = -Infinity;
      for (let i = 0; i < K; i++) m = Math.max(m, x[r * K + i]);
      let s = 0;
      for (let i = 0; i < K; i++) s += p[r * K + i] = Math.exp(x[r * K + i] - m);
      for (let i = 0; i < K; i++) p[r * K + i] /= s;
    }
    return p;
  };
  const cpuLoss = (x: Float64Array) => {
    const bb = { ...small, probs: softmaxRows(x) };
    return tdLoss(bb, 0.99) + cql({ ...bb, mask: [1, 0] }, 0.1);
  };
  await checkOp(
    "actionLoss",
    ([x]) => {
      const gb = upload({ ...small, probs: new Float64Array(N * A * K) }, [1, 0]);
      gb.probs.dispose();
      return actionLoss({ ...gb, probs: softmax(x) }).action;
    },
    ([x]) => Float64Array.of(cpuLoss(x)),
    [{ data: logits, shape: [N, A, K] }],
    { rtol: 1e-4, gradAtol: 1e-5, gradRtol: 2e-3 },
  );
});
