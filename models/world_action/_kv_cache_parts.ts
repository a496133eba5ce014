/**
 * KV caches larger than one storage binding (models/world_action/kv_cache.ts). A layer's cache
 * [2, N, H, capacity, D] is bound whole by the kernels that write, read and branch it, and a
 * binding may not exceed the adapter's `maxStorageBufferBindingSize` (128 MiB by default and
 * on lavapipe; 150M planning with 16 environments and 4 beams branches 256 sequences, 470 MB a
 * layer). Such a cache is held as parts: sub-caches of whole groups of sequences, each under
 * the limit, decoded one after the other.
 *
 * Groups are the environments a cache was created for (one sequence each); branching keeps
 * every group's sequences together and never mixes groups (beam search: a child's parent is in
 * its own environment), so a part of a branched cache copies from a single part of its
 * source. Groups per part are a power of two, so a smaller part always lies inside a larger
 * one.
 *
 * @module
 */
import { runtime } from "../../kernels/core/runtime.ts";
import { sizeClass } from "../../kernels/core/buffer_pool.ts";
import { Tensor } from "../../kernels/core/tensor.ts";
import { byteSize } from "../../kernels/core/dtype.ts";
import type { CacheDType } from "../../kernels/ops/cached_attention.ts";
import { concat, slice } from "../../kernels/ops/layout.ts";
import { mapKernel } from "../../kernels/ops/map.ts";
import type { WorldActionConfig } from "./configs.ts";
import type { WorldActionOutputs } from "./model.ts";

/**
 * Test hook: the most bytes one cache part may bind (0: the device's
 * `maxStorageBufferBindingSize`), so tests reach the split path with a tiny model.
 */
export const kvCacheLimits = { maxPartBytes: 0 };

function maxPartBytes(): number {
  if (kvCacheLimits.maxPartBytes > 0) return kvCacheLimits.maxPartBytes;
  const l = runtime().ctx.limits;
  return Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
}

/** Bytes of one layer's cache for `n` sequences (keys and values of `dtype`). */
export function layerBytes(
  cfg: WorldActionConfig,
  n: number,
  capacity: number,
  dtype: CacheDType = "f32",
): number {
  return 2 * n * cfg.d * capacity * byteSize(dtype);
}

/**
 * Groups per part for a cache of `groups` groups of `perGroup` sequences, or 0 when the whole
 * cache fits one binding (and its source, if any, is one part too). `sourceGroups`: groups per
 * part of the cache it is branched from (0: not split). An f16 cache (`dtype`) takes half the
 * bytes, so twice the groups fit a part.
 */
export function groupsPerPart(
  cfg: WorldActionConfig,
  groups: number,
  perGroup: number,
  capacity: number,
  sourceGroups = 0,
  dtype: CacheDType = "f32",
): number {
  const limit = maxPartBytes();
  const bytes = (n: number) => layerBytes(cfg, n, capacity, dtype);
  const fits = (g: number) => sizeClass(bytes(g * perGroup)) <= limit;
  if (sourceGroups === 0 && fits(groups)) return 0;
  if (!fits(1)) {
    throw new Error(
      `KV cache: ${perGroup} sequences of one environment need ` +
        `${bytes(perGroup)} bytes a layer, above the adapter's largest ` +
        `storage binding (${limit} bytes); plan with fewer beams or a shorter context`,
    );
  }
  let g = 1;
  while (2 * g < groups && fits(2 * g)) g *= 2;
  return sourceGroups > 0 ? Math.min(g, sourceGroups) : g;
}

/** Sequence ranges [start, end) of the parts: `per` groups each, `perGroup` sequences a group. */
export function partRanges(groups: number, per: number, perGroup: number): [number, number][] {
  const out: [number, number][] = [];
  for (let g = 0; g < groups; g += per) {
    out.push([g * perGroup, Math.min(groups, g + per) * perGroup]);
  }
  return out;
}

/** parents[start, end) minus `base` (i32, on the GPU): indices into a part of the source. */
export function partParents(parents: Tensor, start: number, end: number, base: number): Tensor {
  const p = start === 0 && end === parents.shape[0] ? parents.view(parents.shape) : slice(
    parents,
    0,
    start,
    end,
  );
  if (base === 0) return p;
  const out = mapKernel("cacheParents", [p], `a - ${base}`, "i32");
  p.dispose();
  return out;
}

/** The decode outputs of consecutive parts joined along the sequences. */
export function joinOutputs(outs: WorldActionOutputs[]): WorldActionOutputs {
  const join = (xs: unknown[]): unknown => {
    const x = xs[0];
    if (x === null || x === undefined) return x;
    if (x instanceof Tensor) return concat(xs as Tensor[], 0);
    if (Array.isArray(x)) return x.map((_, k) => join(xs.map((v) => (v as unknown[])[k])));
    if (typeof x === "object") {
      const o: Record<string, unknown> = {};
      for (const key of Object.keys(x)) {
        o[key] = join(xs.map((v) => (v as Record<string, unknown>)[key]));
      }
      return o;
    }
    return x;
  };
  const first = outs[0];
  return {
    ...first,
    obsLogits: join(outs.map((o) => o.obsLogits)) as Tensor | null,
    rewardLogits: join(outs.map((o) => o.rewardLogits)) as Tensor | null,
    endLogits: join(outs.map((o) => o.endLogits)) as Tensor | null,
    q: join(outs.map((o) => o.q)) as WorldActionOutputs["q"],
    targetQ: join(outs.map((o) => o.targetQ)) as WorldActionOutputs["targetQ"],
  };
}
