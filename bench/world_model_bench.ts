/**
 * World-action model benchmarks:
 * - training step (forward with the target head, joint loss touching every head, backward,
 *   AdamW with clipping) of JOWA-40M and JOWA-150M at batch 64 x 296 tokens: ms/step, tokens/s;
 * - attention alone at the model's shapes, fused kernels vs the unfused reference
 *   (forward + backward);
 * - KV-cached decoding: latency of one single-token step for N = 1, 16, 64 sequences after a
 *   6-timestep prefill, and the cost of branching a cache (beam expansion).
 *
 *   deno task bench world_model [-- --quick]
 *
 * Anchors (PyTorch eager, same architecture, H100, fp32): JOWA-40M 46.5 ms/step,
 * JOWA-150M 255 ms/step.
 */
import { parseArgs } from "node:util";
import { backward, describeAdapter, initRuntime, tensor, tidy } from "../mod.ts";
import {
  add,
  attentionReference,
  crossEntropy,
  fusedAttention,
  meanAll,
  mul,
  mulScalar,
  neg,
  sumAll,
} from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import type { Tensor } from "../kernels/core/tensor.ts";
import {
  contextLength,
  type WorldActionConfig,
  worldActionConfig,
} from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(`world_model_bench — JOWA training step, attention fused/unfused, KV decoding

  --quick   tiny config and small batches (for CPU adapters such as lavapipe)`);
  Deno.exit(0);
}
const quick = values.quick;
const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);

async function time(fn: () => void, reps: number, warmup = 2): Promise<number> {
  for (let i = 0; i < warmup; i++) fn();
  await rt.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await rt.sync();
  return (performance.now() - t0) / reps;
}

function randomInts(n: number, hi: number, seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % hi;
  });
}

/** Interleaved random tokens (obs ids at obs positions, actions at action positions). */
function tokensFor(c: WorldActionConfig, N: number, T: number, seed: number): Int32Array {
  const obs = randomInts(N * T, c.obsVocab, seed);
  const act = randomInts(N * T, c.actions, seed + 1);
  return obs.map((v, i) => ((i % T) % (c.obsTokens + 1) === c.obsTokens ? act[i] : v));
}

// ---- training step ---------------------------------------------------------------------
console.log("\ntraining step (forward + target head + joint loss + backward + AdamW)");
const trainCases: { name: "tiny" | "40M" | "150M"; B: number; anchor?: number }[] = quick
  ? [{ name: "tiny", B: 4 }]
  : [{ name: "40M", B: 64, anchor: 46.5 }, { name: "150M", B: 64, anchor: 255 }];
for (const tc of trainCases) {
  const cfg = worldActionConfig(tc.name);
  const T = contextLength(cfg);
  const L = cfg.timesteps;
  const model = new WorldActionModel(cfg);
  const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1 });
  const B = tc.B;
  const keepAlive: Tensor[] = [
    tensor(tokensFor(cfg, B, T, 1), [B, T], "i32"),
    tensor(randomInts(B, cfg.tasks, 2), [B], "i32"),
    tensor(randomInts(B * L * 36, cfg.obsVocab, 3), [B, L * 36], "i32"),
    tensor(randomInts(B * L, 3, 4), [B, L], "i32"),
    tensor(randomInts(B * L, 2, 5), [B, L], "i32"),
    tensor(new Float32Array(B * L * cfg.actions * cfg.atoms).fill(1 / cfg.atoms), [
      B,
      L,
      cfg.actions,
      cfg.atoms,
    ]),
  ];
  const [tokens, tasks, obsT, rewT, endT, qT] = keepAlive;
  let step = 0;
  const ms = await time(() =>
    tidy(() => {
      const out = model.forward(tokens, tasks, { stepSeed: ++step, target: true });
      const world = add(
        add(crossEntropy(out.obsLogits!, obsT), crossEntropy(out.rewardLogits!, rewT)),
        crossEntropy(out.endLogits!, endT),
      );
      const action = add(
        neg(meanAll(mul(out.q!.logProbs, qT))),
        mulScalar(sumAll(mul(out.q!.values, out.targetQ!.values)), 1e-6),
      );
      opt.zeroGrad();
      backward(add(mulScalar(world, 0.1), action));
      opt.update();
    }), quick ? 2 : 10);
  const anchor = tc.anchor ? `  (PyTorch eager H100 fp32: ${tc.anchor} ms)` : "";
  console.log(
    `  ${tc.name.padEnd(5)} B=${B} T=${T}: ${ms.toFixed(1)} ms/step  ${
      (B * T / ms * 1000).toFixed(0)
    } tokens/s  params ${model.parameterCount().toLocaleString("en-US")}${anchor}`,
  );
  for (const t of keepAlive) t.dispose();
  for (const s of opt.state) {
    s.m.dispose();
    s.v.dispose();
  }
  await rt.trim();
}

// ---- attention fused vs unfused ---------------------------------------------------------
console.log("\nattention forward + backward at the model's shapes (causal, dropout 0.1)");
const attnCases = quick
  ? [{ name: "tiny", B: 4, T: 296, H: 2, D: 16 }]
  : [{ name: "40M", B: 64, T: 296, H: 8, D: 64 }, { name: "150M", B: 64, T: 296, H: 12, D: 64 }];
for (const ac of attnCases) {
  const qkv = tensor(
    Float32Array.from(randomInts(ac.B * ac.T * 3 * ac.H * ac.D, 1000, 9), (v) => v / 1000 - 0.5),
    [ac.B, ac.T, 3 * ac.H * ac.D],
  );
  qkv.requiresGrad = true;
  const row: string[] = [];
  for (const [label, fn] of [["fused", fusedAttention], ["unfused", attentionReference]] as const) {
    const ms = await time(() =>
      tidy(() => {
        const y = fn(qkv, { heads: ac.H, causal: true, dropout: 0.1, seed: 3 });
        backward(sumAll(y));
        qkv.grad?.dispose();
        qkv.grad = null;
      }), quick ? 2 : 10);
    row.push(`${label} ${ms.toFixed(2)} ms`);
  }
  console.log(`  ${ac.name.padEnd(5)} B=${ac.B} T=${ac.T} H=${ac.H} D=${ac.D}: ${row.join("  ")}`);
  qkv.dispose();
  await rt.trim();
}

// ---- KV-cached decoding -------------------------------------------------------------------
console.log("\nKV-cached decoding (eval): one single-token step after a 6-timestep prefill");
for (const name of quick ? ["tiny"] as const : ["40M", "150M"] as const) {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg).eval();
  const pre = 6 * (cfg.obsTokens + 1) - 1; // ends on the last observation token
  for (const N of quick ? [1, 16] : [1, 16, 64]) {
    const tasks = tensor(randomInts(N, cfg.tasks, 7), [N], "i32");
    const cache = model.newCache(tasks);
    tidy(() => model.step(cache, tensor(tokensFor(cfg, N, pre, 8), [N, pre], "i32")));
    await rt.sync();
    const action = tensor(randomInts(N, cfg.actions, 9), [N, 1], "i32");
    const obs = tensor(randomInts(N, cfg.obsVocab, 10), [N, 1], "i32");
    // Latency: each step submitted and awaited alone (the planner's critical path).
    const reps = quick ? 3 : 20;
    let lat = 0;
    for (let i = 0; i < reps + 1; i++) {
      cache.length = pre;
      const t0 = performance.now();
      tidy(() => model.step(cache, action));
      tidy(() => model.step(cache, obs));
      await rt.sync();
      if (i > 0) lat += (performance.now() - t0) / 2;
    }
    // Throughput of one imagined timestep (action + 36 observation tokens) in one submit.
    const imagine = await time(
      () => {
        cache.length = pre;
        tidy(() => model.step(cache, action));
        for (let j = 0; j < cfg.obsTokens && cache.length < cache.capacity; j++) {
          tidy(() => model.step(cache, obs));
        }
      },
      quick ? 1 : 5,
      1,
    );
    const branch = await time(() => cache.repeat(4).dispose(), quick ? 2 : 10);
    console.log(
      `  ${name.padEnd(5)} N=${String(N).padStart(2)}: ${
        (lat / reps).toFixed(2)
      } ms/step (latency)  ` +
        `imagined timestep ${imagine.toFixed(1)} ms  branch x4 ${branch.toFixed(2)} ms`,
    );
    cache.dispose();
    for (const t of [tasks, action, obs]) t.dispose();
  }
  await rt.trim();
}
