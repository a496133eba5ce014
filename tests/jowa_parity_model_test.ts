/**
 * Parity with the authors' JOWA code (fixtures made by THEIR classes, tests/fixtures/jowa):
 * `importJowaCheckpoint` converts their world_model.pt and tokenizer.pt into a checkpoint
 * directory, checkpoint/loader.ts loads it like any checkpoint, and our forward passes give
 * their outputs: tokenizer tokens identical, z and decoded frames within 1e-4; world-action
 * logits (observations, rewards, ends, Q and target Q per ensemble member) and the backbone
 * features within 1e-4 relative; the beam-search planner's first action (H = 2, K = 2), which
 * differs from the greedy one, and the root Q values.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";
import { importJowaCheckpoint } from "../checkpoint/import_jowa.ts";
import { loadCheckpoint } from "../checkpoint/loader.ts";
import { interleave, type WorldActionModel } from "../models/world_action/model.ts";
import type { Tokenizer } from "../models/tokenizer/model.ts";
import { SeedStream } from "../util/rng.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { beamSearch } from "../eval/beam_search.ts";
import { MINIMAL_ACTIONS, validActionMask } from "../atari/games.ts";
import { type Array32, jowaDecode, jowaEncode, jowaForward } from "../models/jowa_authors_api.ts";
import { assertClose } from "./helpers/reference.ts";
import { JOWA_FIXTURES, jowaMeta, readNpy } from "./helpers/jowa_fixtures.ts";

await initRuntime();

const meta = jowaMeta();
const tmp = Deno.makeTempDirSync({ prefix: "jowa_parity_" });
const dir = path.join(tmp, "imported");
const result = await importJowaCheckpoint(
  JOWA_FIXTURES + "world_model.pt",
  JOWA_FIXTURES + "tokenizer.pt",
  dir,
  { heads: meta.transformer_config.num_heads },
);
const loaded = await loadCheckpoint(dir);
const wam: WorldActionModel = loaded.worldAction;
const tok: Tokenizer = loaded.tokenizer;
wam.eval();
tok.eval();

const i32 = (name: string) => {
  const a = readNpy(name);
  return tensor(a.data as Int32Array, a.shape, "i32");
};
const f32 = (name: string) => readNpy(name).data as Float32Array;
/** Their tolerance: 1e-4 relative (with a 1e-5 floor for values near 0). */
const close = (got: ArrayLike<number>, want: ArrayLike<number>, what: string) =>
  assertClose(got, want, { rtol: 1e-4, atol: 1e-5, what });

Deno.test("jowa import: configs inferred from the shapes of their fixture", () => {
  const w = result.worldAction;
  assert.deepEqual(
    [w.layers, w.d, w.heads, w.obsVocab, w.actions, w.timesteps, w.tasks, w.qHidden, w.qEnsemble],
    [2, 64, 2, 32, 18, 8, 60, 32, 2],
  );
  assert.equal(w.gelu, "erf");
  const t = result.tokenizer;
  assert.deepEqual([t.ch, t.zChannels, t.embedDim, t.vocab, t.numResBlocks, t.groups], [
    8,
    16,
    16,
    32,
    2,
    2,
  ]);
  assert.deepEqual(t.attnResolutions, [12, 6]);
  assert.deepEqual(t.decoderAttnResolutions, []);
  assert.equal(result.lpips, null, "the fixture's tokenizer.pt holds no lpips.* tensors");
});

Deno.test("jowa parity: tokenizer tokens identical, z and decoded frames within 1e-4", async () => {
  const frames = readNpy("tok_frames.npy");
  // Their preprocess: x * 2 - 1 for frames in [0, 1]; ours takes f32 as already in [-1, 1].
  const x = tensor(Float32Array.from(frames.data, (v) => v * 2 - 1), frames.shape);
  const ids = tok.encode(x);
  assert.deepEqual(Array.from(await ids.read()), Array.from(readNpy("tok_tokens.npy").data));
  // z: our latent rows [N*36, E] (row n*36 + p) vs their [N, E, 6, 6].
  const rows = await tok.latents(x).read();
  const wantZ = f32("tok_z.npy");
  const E = tok.cfg.embedDim;
  const gotZ = new Float32Array(wantZ.length);
  for (let n = 0; n < 2; n++) {
    for (let e = 0; e < E; e++) {
      for (let p = 0; p < 36; p++) gotZ[(n * E + e) * 36 + p] = rows[(n * 36 + p) * E + e];
    }
  }
  close(gotZ, wantZ, "z");
  close(await tok.decode(ids).read(), f32("tok_decoded.npy"), "decoded frames");
});

const tokens = interleave(i32("wm_in_obs_tokens.npy"), i32("wm_in_actions.npy"));
const tasks = i32("wm_in_tasks.npy");

Deno.test("jowa parity: world-action logits of every head within 1e-4 relative", async () => {
  const out = wam.forward(tokens, tasks, { target: true });
  assert.deepEqual(out.obsLogits!.shape, [2, 288, 32]);
  close(await out.obsLogits!.read(), f32("wm_out_logits_observations.npy"), "observations");
  close(await out.rewardLogits!.read(), f32("wm_out_logits_rewards.npy"), "rewards");
  close(await out.endLogits!.read(), f32("wm_out_logits_ends.npy"), "ends");
  // Theirs: [num_q, B, 8, 18 * 51] with axis a * 51 + z; ours one [B, 8, 18, 51] per member.
  const q = f32("wm_out_logits_q.npy");
  const qt = f32("wm_out_logits_q_target.npy");
  const per = q.length / 2;
  for (let e = 0; e < 2; e++) {
    close(await out.q!.logits[e].read(), q.subarray(e * per, (e + 1) * per), `Q member ${e}`);
    close(
      await out.targetQ!.logits[e].read(),
      qt.subarray(e * per, (e + 1) * per),
      `target Q member ${e}`,
    );
  }
});

Deno.test("jowa parity: backbone features after ln_f (first timestep)", async () => {
  const seeds = new SeedStream(0);
  let x: Tensor = wam.embed(tokens, tasks, 0);
  for (const b of wam.blocks) x = b.forward(x, seeds);
  const h = await wam.lnF.forward(x).read(); // [2, 296, 64]
  const got = new Float32Array(2 * 37 * 64);
  for (let b = 0; b < 2; b++) got.set(h.subarray(b * 296 * 64, (b * 296 + 37) * 64), b * 37 * 64);
  close(got, f32("wm_out_sequence_t0.npy"), "sequence t0");
});

Deno.test("jowa parity: planner's first action (H = 2, K = 2) and root Q values", async () => {
  const plan = meta.plan as typeof meta.plan & { game: string; task: number };
  const valid = validActionMask(MINIMAL_ACTIONS[plan.game]);
  const planner = new WamPlanningModel(wam);
  const ctx = i32("plan_context_tokens.npy");
  const taskIds = i32("plan_task.npy");
  const validT = tensor(Float32Array.from(valid), [1, 18]);
  const { state, q } = planner.prefill(ctx, taskIds);
  const rootQ = await q.read();
  state.dispose();
  const wantQ = f32("plan_root_q.npy");
  const idx = [...valid.keys()].filter((a) => valid[a]);
  close(idx.map((a) => rootQ[a]), idx.map((a) => wantQ[a]), "root Q (valid actions)");
  const out = beamSearch(planner, { tokens: ctx, tasks: taskIds, valid: validT }, {
    horizon: plan.horizon,
    beamWidth: plan.beam_width,
  });
  const [action] = await out.actions.read();
  assert.equal(action, plan.first_action);
  assert.notEqual(action, plan.greedy_action, "the fixture tells planning from greedy apart");
});

Deno.test("jowa parity: jowaForward / jowaEncode / jowaDecode return their layouts", async () => {
  const obs = readNpy("wm_in_obs_tokens.npy");
  const act = readNpy("wm_in_actions.npy");
  const ids = new Int32Array(2 * 296);
  for (let b = 0; b < 2; b++) {
    for (let t = 0; t < 8; t++) {
      for (let j = 0; j < 36; j++) ids[b * 296 + t * 37 + j] = obs.data[(b * 8 + t) * 36 + j];
      ids[b * 296 + t * 37 + 36] = act.data[b * 8 + t];
    }
  }
  const out = await jowaForward(wam, ids, [2, 296], readNpy("wm_in_tasks.npy").data as Int32Array);
  const pairs: [Array32, string][] = [
    [out.logitsObservations, "wm_out_logits_observations.npy"],
    [out.logitsRewards, "wm_out_logits_rewards.npy"],
    [out.logitsEnds, "wm_out_logits_ends.npy"],
    [out.logitsQ, "wm_out_logits_q.npy"],
    [out.logitsQTarget, "wm_out_logits_q_target.npy"],
  ];
  for (const [got, file] of pairs) {
    assert.deepEqual(got.shape, readNpy(file).shape, file);
    close(got.data, f32(file), file);
  }
  assert.deepEqual(out.outputSequence.shape, [2, 296, 64]);
  const frames = readNpy("tok_frames.npy");
  const enc = await jowaEncode(tok, frames.data as Float32Array, [2, 1, 84, 84]);
  assert.deepEqual(Array.from(enc.tokens), Array.from(readNpy("tok_tokens.npy").data));
  close(enc.z.data, f32("tok_z.npy"), "jowaEncode z");
  close(enc.zQuantized.data, f32("tok_z_quantized.npy"), "jowaEncode z_quantized");
  const dec = await jowaDecode(tok, enc.zQuantized.data, [2, 16, 6, 6], false);
  assert.deepEqual(dec.shape, [2, 1, 84, 84]);
  close(dec.data, f32("tok_decoded.npy"), "jowaDecode");
  const post = await jowaDecode(tok, enc.zQuantized.data, [2, 16, 6, 6]);
  close(post.data, f32("tok_decoded.npy").map((v) => (v + 1) / 2), "jowaDecode postprocessed");
});

Deno.test({
  name: "jowa parity: cleanup",
  fn: () => Deno.removeSync(tmp, { recursive: true }),
});
