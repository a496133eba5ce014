/**
 * The authors' JOWA calls with their inputs and output layouts (github.com/CJReinforce/JOWA,
 * `JOWAModel.forward`, `Tokenizer.encode` / `decode`), computed by our networks, on CPU
 * arrays. For comparing with their code or porting code written against it; the rest of
 * this toolkit uses WorldActionModel.forward and Tokenizer directly.
 *
 * ```ts
 * import { loadAuthorsTokenizer, loadAuthorsWorldModel, jowaEncode, jowaForward } from "./mod.ts";
 * const model = await loadAuthorsWorldModel("JOWA_150M.pt");
 * const tokenizer = await loadAuthorsTokenizer("tokenizer.pt");
 * const enc = await jowaEncode(tokenizer, frames, [8, 1, 84, 84]); // frames in [0, 1]
 * // tokens [1, 8 * 37]: per timestep the 36 observation tokens, then the action (0..17)
 * const out = await jowaForward(model, tokens, [1, 296], Int32Array.of(taskId));
 * out.logitsQ.shape; // [numQ, 1, 8, 18 * 51]
 * ```
 *
 * @module
 */
import { noGrad } from "../kernels/core/autograd.ts";
import { type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { SeedStream } from "../util/rng.ts";
import type { WorldActionModel } from "./world_action/model.ts";
import type { Tokenizer } from "./tokenizer/model.ts";

/** A row-major float array with its shape. */
export interface Array32 {
  data: Float32Array;
  shape: number[];
}

/** What their `JOWAModel.forward(tokens, tasks)` returns (`JOWAOutput`), field for field. */
export interface JowaForwardOutput {
  /** `output_sequence`: the backbone after ln_f, [B, T, d]. */
  outputSequence: Array32;
  /** [B, rows, obsVocab]: every position but each timestep's last observation token. */
  logitsObservations: Array32;
  /** [B, actionTokens, 3]: at action tokens; class = sign(reward) + 1. */
  logitsRewards: Array32;
  /** [B, actionTokens, 2]: at action tokens. */
  logitsEnds: Array32;
  /** [numQ, B, qRows, actions * atoms] at each timestep's last observation token; a*atoms+z. */
  logitsQ: Array32;
  /** The target Q head, same layout. */
  logitsQTarget: Array32;
}

async function read(t: Tensor): Promise<Array32> {
  return { data: (await t.read()) as Float32Array, shape: [...t.shape] };
}

/** Stack the members' [B, n, A, Z] logits into their [numQ, B, n, A * Z]. */
async function stackMembers(logits: Tensor[]): Promise<Array32> {
  const parts = await Promise.all(logits.map((l) => l.read()));
  const [B, n, A, Z] = logits[0].shape;
  const data = new Float32Array(parts.length * parts[0].length);
  parts.forEach((p, e) => data.set(p, e * p.length));
  return { data, shape: [logits.length, B, n, A * Z] };
}

/**
 * Their `JOWAModel.forward(tokens, tasks)` in eval mode (no dropout; no KV cache, so the
 * positions start at 0): `tokens` [B, T] interleaved ids (36 observation tokens then one
 * action per timestep, T <= 296), `tasks` [B] (index in their 60-game list).
 */
export async function jowaForward(
  model: WorldActionModel,
  tokens: Int32Array,
  shape: [number, number],
  tasks: Int32Array,
): Promise<JowaForwardOutput> {
  const [B, T] = shape;
  if (tokens.length !== B * T || tasks.length !== B) {
    throw new Error(`jowaForward: ${tokens.length} tokens for [${shape}], ${tasks.length} tasks`);
  }
  const wasTraining = model.training;
  model.eval();
  try {
    // A flat result: tidy keeps exactly these tensors (top level and arrays).
    const r = noGrad(() =>
      tidy(() => {
        const ids = tensor(tokens, [B, T], "i32");
        const taskIds = tensor(tasks, [B], "i32");
        const seeds = new SeedStream(0);
        let x = model.embed(ids, taskIds, 0);
        for (const b of model.blocks) x = b.forward(x, seeds);
        const h = model.lnF.forward(x);
        const o = model.heads(h, 0, seeds, { target: true });
        return {
          h,
          obs: o.obsLogits,
          rew: o.rewardLogits,
          end: o.endLogits,
          q: o.q?.logits ?? [],
          qt: o.targetQ?.logits ?? [],
        };
      })
    );
    const { cfg } = model;
    const none = (shape: number[]): Array32 => ({ data: new Float32Array(0), shape });
    const qWidth = cfg.actions * cfg.atoms;
    try {
      return {
        outputSequence: await read(r.h),
        logitsObservations: r.obs ? await read(r.obs) : none([B, 0, cfg.obsVocab]),
        logitsRewards: r.rew ? await read(r.rew) : none([B, 0, cfg.rewardClasses]),
        logitsEnds: r.end ? await read(r.end) : none([B, 0, cfg.endClasses]),
        logitsQ: r.q.length ? await stackMembers(r.q) : none([cfg.qEnsemble, B, 0, qWidth]),
        logitsQTarget: r.qt.length ? await stackMembers(r.qt) : none([cfg.qEnsemble, B, 0, qWidth]),
      };
    } finally {
      for (const t of [r.h, r.obs, r.rew, r.end, ...r.q, ...r.qt]) t?.dispose();
    }
  } finally {
    model.train(wasTraining);
  }
}

/** What their `Tokenizer.encode(x, should_preprocess=True)` returns. */
export interface JowaEncodeOutput {
  /** [N, E, h, w]: after pre_quant_conv. */
  z: Array32;
  /** [N, E, h, w]: the codebook rows of the tokens. */
  zQuantized: Array32;
  /** [N, h * w] token ids, raster order. */
  tokens: Int32Array;
}

/** [N*h*w, E] rows -> [N, E, h, w]. */
function rowsToNchw(rows: Float32Array, N: number, E: number, g: number): Float32Array {
  const out = new Float32Array(rows.length);
  const P = g * g;
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < P; p++) {
      for (let e = 0; e < E; e++) out[(n * E + e) * P + p] = rows[(n * P + p) * E + e];
    }
  }
  return out;
}

/** Their `Tokenizer.encode(frames, should_preprocess=True)` for frames [N, C, H, W] in [0, 1]. */
export async function jowaEncode(
  tokenizer: Tokenizer,
  frames: Float32Array,
  shape: [number, number, number, number],
): Promise<JowaEncodeOutput> {
  const [N] = shape;
  const { embedDim: E } = tokenizer.cfg;
  const g = tokenizer.grid;
  const x = noGrad(() => tidy(() => tensor(Float32Array.from(frames, (v) => v * 2 - 1), shape)));
  try {
    const z = noGrad(() => tidy(() => tokenizer.latents(x)));
    const ids = tokenizer.encode(x);
    const zRows = (await z.read()) as Float32Array;
    const tokens = Int32Array.from(await ids.read());
    z.dispose();
    ids.dispose();
    const book = (await tokenizer.embedding.weight.read()) as Float32Array;
    const q = new Float32Array(zRows.length);
    tokens.forEach((t, r) => q.set(book.subarray(t * E, (t + 1) * E), r * E));
    return {
      z: { data: rowsToNchw(zRows, N, E, g), shape: [N, E, g, g] },
      zQuantized: { data: rowsToNchw(q, N, E, g), shape: [N, E, g, g] },
      tokens,
    };
  } finally {
    x.dispose();
  }
}

/**
 * Their `Tokenizer.decode(z_q, should_postprocess)` for z_q [N, E, h, w]: frames
 * [N, C, H, W], in [0, 1] scale with `postprocess` ((y + 1) / 2, not clamped; their
 * imagination clamps afterwards), else in [-1, 1] scale.
 */
export async function jowaDecode(
  tokenizer: Tokenizer,
  zQuantized: Float32Array,
  shape: [number, number, number, number],
  postprocess = true,
): Promise<Array32> {
  const [N, E, h, w] = shape;
  const rows = new Float32Array(zQuantized.length);
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < h * w; p++) {
      for (let e = 0; e < E; e++) {
        rows[(n * h * w + p) * E + e] = zQuantized[(n * E + e) * h * w + p];
      }
    }
  }
  const y = noGrad(() => tidy(() => tokenizer.decodeRows(tensor(rows, [N * h * w, E]))));
  const out = await read(y);
  y.dispose();
  if (postprocess) out.data = out.data.map((v) => (v + 1) / 2);
  return out;
}
