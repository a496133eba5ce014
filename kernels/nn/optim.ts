/**
 * AdamW as multi-tensor kernels (a chunk of parameters per dispatch, see adamw_kernels.ts),
 * and global-norm gradient clipping that never reads back: chunked sums of squares, then the
 * clip scale computed once on the GPU into a buffer the AdamW kernels read. A step of N
 * parameters is about N/31 + 1 + N/8 dispatches on a device with 32 storage buffers per stage.
 *
 * @module
 */
import { type Kernel, runtime } from "../core/runtime.ts";
import { internId, planCache } from "../core/plan_cache.ts";
import { keep, type Tensor, tidy } from "../core/tensor.ts";
import { zeros } from "../ops/elementwise.ts";
import { binding, f32 } from "../codegen/wgsl.ts";
import { f16Candidates, F16Shadows } from "./f16_shadow.ts";
import { lossScaleGuardWgsl, type LossScaleOptions, LossScaler } from "./loss_scale.ts";
import {
  adamwKernel,
  type ChunkParam,
  chunks,
  PARTIALS,
  sumSquaresKernel,
  WG,
} from "./adamw_kernels.ts";

/** AdamW hyper-parameters (PyTorch's defaults except the learning rate). */
export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value (no clipping when absent). */
  maxGradNorm?: number;
  /** Parameter names (or a predicate) exempt from weight decay, e.g. biases and norms. */
  noDecay?: (name: string) => boolean;
  /**
   * f16 training (`--precision f16`): an f16 copy of every 2-D parameter that the products
   * read, refreshed after each update (f16_shadow.ts), and dynamic loss scaling
   * (loss_scale.ts: call {@link AdamW.scaleLoss} on the loss before `backward`; a step whose
   * gradients are not finite is skipped on the GPU). `true` takes the default scale settings.
   */
  mixedPrecision?: boolean | LossScaleOptions;
}

/** A chunk's kernel and the parameter indices it binds, in binding order. */
interface LiveChunk {
  kernel: Kernel;
  members: number[];
}

interface LiveChunks {
  sumsq: LiveChunk[];
  adamw: LiveChunk[];
}

/** Decoupled-weight-decay Adam over a fixed list of named parameters. */
export class AdamW {
  readonly params: Tensor[];
  readonly state: { m: Tensor; v: Tensor }[];
  step = 0;
  lr: number;
  readonly #opts:
    & Required<Omit<AdamWOptions, "maxGradNorm" | "noDecay" | "mixedPrecision">>
    & AdamWOptions;
  /** With `mixedPrecision`: the loss scale (GPU state) and the f16 weight copies. */
  readonly lossScaler: LossScaler | null = null;
  readonly f16Shadows: F16Shadows | null = null;
  /** [norm, scale]: the last step's global gradient norm and the clip factor applied. */
  readonly clipStats: Tensor;
  readonly #partials: Tensor;
  /** Chunked kernels per set of parameters with a gradient ("1" where p.grad is set). */
  readonly #chunkCache = new Map<string, LiveChunks>();

  /** Full names of the parameters (for `noDecay` and messages). */
  readonly names: readonly string[];

  /**
   * `params` as `module.namedParameters()` (names decide `noDecay`), or plain tensors (their
   * `.name` is used).
   */
  constructor(
    params: readonly Tensor[] | readonly (readonly [string, Tensor])[],
    opts: AdamWOptions,
  ) {
    const named = params.map((p) => (p instanceof Array ? p : [p.name, p] as const));
    this.params = named.map(([, p]) => p);
    this.names = named.map(([n]) => n);
    this.#opts = {
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      ...opts,
    };
    this.lr = opts.lr;
    this.state = this.params.map((p) => ({ m: keep(zeros(p.shape)), v: keep(zeros(p.shape)) }));
    this.clipStats = keep(zeros([2]));
    this.#partials = keep(zeros([Math.max(1, this.params.length) * PARTIALS]));
    if (opts.mixedPrecision) {
      const trainable = this.params.filter((p) => p.requiresGrad);
      this.f16Shadows = new F16Shadows(f16Candidates(trainable));
      this.lossScaler = new LossScaler(opts.mixedPrecision === true ? {} : opts.mixedPrecision);
    }
  }

  /** The root to call `backward` on: the loss times the loss scale (itself without one). */
  scaleLoss(loss: Tensor): Tensor {
    return this.lossScaler ? this.lossScaler.scaleLoss(loss) : loss;
  }

  /** Refill the f16 weight copies from the masters (after weights were loaded). */
  refreshF16(): void {
    this.f16Shadows?.refresh();
  }

  /** Record one update of every parameter that has a gradient. No readback. */
  update(): void {
    this.step++;
    const rt = runtime();
    rt.onReplay(() => this.step++); // a replayed update counts its step too
    const { beta1, beta2, eps, weightDecay, maxGradNorm } = this.#opts;
    if (maxGradNorm !== undefined || this.lossScaler) this.#recordClip(maxGradNorm ?? Infinity);
    else {
      // scale = 1: write through a tiny kernel so no upload races recorded commands.
      const kernel = planCache("adamw.noclip", () => ({
        code: `${binding(0, "s", "f32", true)}
@compute @workgroup_size(1) fn main() { s[0] = 0.0; s[1] = 1.0; s[2] = 0.0; }`,
        label: "adamw.noclip",
        workgroups: [1, 1, 1],
      }));
      rt.dispatch(kernel, [this.clipStats.buffer]);
    }
    // Dynamic: bias correction follows the step, and the schedule may change lr between
    // replays of a captured step.
    const hyper = rt.uploadDynamic(() => {
      const bc1 = 1 - beta1 ** this.step;
      const bc2 = 1 - beta2 ** this.step;
      return new Float32Array([this.lr, beta1, beta2, eps, bc1, bc2, 1 - this.lr * weightDecay, 0]);
    });
    const live = this.#liveChunks();
    for (const c of live.adamw) {
      rt.dispatch(c.kernel, [
        ...c.members.flatMap((k) => {
          const p = this.params[k];
          return [p.buffer, p.grad!.buffer, this.state[k].m.buffer, this.state[k].v.buffer];
        }),
        hyper,
        this.clipStats.buffer,
      ]);
    }
    rt.pool.release(hyper);
    this.f16Shadows?.refresh();
  }

  /** Storage buffers one optimizer kernel may bind (the device's limit, at most 32). */
  #storageLimit(): number {
    return Math.min(32, runtime().ctx.limits.maxStorageBuffersPerShaderStage ?? 8);
  }

  /** The chunked kernels for the parameters that have a gradient now (memoized per set). */
  #liveChunks(): LiveChunks {
    let mask = "";
    for (const p of this.params) mask += p.grad ? "1" : "0";
    let hit = this.#chunkCache.get(mask);
    if (hit) return hit;
    const { weightDecay, noDecay } = this.#opts;
    const members: ChunkParam[] = [];
    this.params.forEach((p, slot) => {
      if (!p.grad) return;
      const decay = noDecay?.(this.names[slot]) ? false : weightDecay !== 0;
      members.push({ n: p.size, slot, decay });
    });
    const limit = this.#storageLimit();
    const build = (c: ChunkParam[], kind: string, make: (c: ChunkParam[]) => Kernel) => ({
      members: c.map((m) => m.slot),
      kernel: planCache(
        `${kind}|${internId(c.map((m) => `${m.n}:${m.slot}:${m.decay}`).join(","))}`,
        () => make(c),
      ),
    });
    hit = {
      sumsq: chunks(members, limit, 1, 1).map((c) => build(c, "clip.sumsq.mt", sumSquaresKernel)),
      adamw: chunks(members, limit, 4, 0).map((c) => build(c, "adamw.mt", adamwKernel)),
    };
    this.#chunkCache.set(mask, hit);
    return hit;
  }

  #recordClip(maxNorm: number): void {
    const rt = runtime();
    for (const c of this.#liveChunks().sumsq) {
      rt.dispatch(c.kernel, [
        ...c.members.map((k) => this.params[k].grad!.buffer),
        this.#partials.buffer,
      ]);
    }
    const total = this.params.length * PARTIALS;
    const hasGrad = this.params.map((p) => (p.grad ? 1 : 0));
    const ls = this.lossScaler;
    const kernel = planCache(
      `clip.scale|${total}|${internId(hasGrad.join(""))}|${maxNorm}|` +
        `${ls ? `${ls.growthInterval}|${ls.minScale}|${ls.maxScale}` : ""}`,
      (): Kernel => {
        // stats[2] = 1 skips the AdamW step (the loss-scale guard); 0 without a guard.
        const tail = ls ? lossScaleGuardWgsl(ls, maxNorm) : `stats[0] = norm;
    stats[1] = min(1.0, ${f32(maxNorm)} / (norm + 1e-6));
    stats[2] = 0.0;`;
        const code = `${binding(0, "partials", "f32")}
${binding(1, "stats", "f32", true)}
${ls ? `${binding(2, "ls", "f32", true)}\n${binding(3, "lc", "f32", true)}` : ""}
const HAS: array<u32, ${hasGrad.length}> = array<u32, ${hasGrad.length}>(${
          hasGrad.map((h) => `${h}u`).join(", ")
        });
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < ${total}u; i += ${WG}u) {
    if (HAS[i / ${PARTIALS}u] == 1u) { s += partials[i]; }
  }
  red[lid] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let norm = sqrt(red[0]);
    ${tail}
  }
}
`;
        return { code, label: "clip.scale", workgroups: [1, 1, 1] };
      },
    );
    rt.dispatch(kernel, [
      this.#partials.buffer,
      this.clipStats.buffer,
      ...(ls ? [ls.scale.buffer, ls.counters.buffer] : []),
    ]);
  }

  /** Drop every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Moments and step, for checkpoints (names follow the parameter order). */
  stateTensors(): { step: number; m: Tensor[]; v: Tensor[] } {
    return { step: this.step, m: this.state.map((s) => s.m), v: this.state.map((s) => s.v) };
  }

  /** Free the optimizer's GPU state. */
  dispose(): void {
    tidy(() => {
      for (const s of this.state) {
        s.m.dispose();
        s.v.dispose();
      }
      this.clipStats.dispose();
      this.#partials.dispose();
      this.lossScaler?.dispose();
      this.f16Shadows?.dispose();
    });
  }
}
