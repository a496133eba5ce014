/**
 * CPU reference of the beam search (one environment at a time, float32 rounding at each
 * step, the same tie-breaking as the GPU kernels) over a tabular MDP.
 */
import type { TabularMdp } from "./eval_stub_model.ts";

const DEAD = -1e30;

interface Node {
  state: number;
  score: number;
  first: number;
  path: number[];
}

/** Indices of the top-k valid values, descending, lower index first on ties. */
function topValid(q: ArrayLike<number>, valid: ArrayLike<number>, k: number): number[] {
  const idx = [...Array(q.length).keys()].filter((a) => valid[a] !== 0);
  idx.sort((a, b) => (q[b] - q[a]) || (a - b));
  return idx.slice(0, k);
}

/** The planner's decision for one environment at root node `root`. */
export function referencePlan(
  mdp: TabularMdp,
  root: number,
  valid: ArrayLike<number>,
  horizon: number,
  k: number,
  gamma = 0.99,
): { action: number; value: number; path: number[] } {
  const A = mdp.actions;
  const qOf = (s: number) => mdp.q.subarray(s * A, s * A + A);
  const maxValid = (s: number) => Math.max(...topValid(qOf(s), valid, 1).map((a) => qOf(s)[a]));
  let beams: Node[] = [{ state: root, score: 0, first: -1, path: [] }];
  let best = { action: -1, value: -Infinity, path: [] as number[] };
  for (let d = 0; d < horizon; d++) {
    const children: (Node & { leaf: number })[] = [];
    for (const b of beams) {
      const acts = topValid(qOf(b.state), valid, k);
      for (let j = 0; j < k; j++) {
        const dead = j >= acts.length;
        const a = dead ? acts[0] : acts[j];
        const next = mdp.next[b.state * A + a];
        const base = dead ? DEAD : b.score;
        const score = Math.fround(
          base + Math.fround(Math.fround(gamma ** d) * mdp.reward[b.state * A + a]),
        );
        const leaf = Math.fround(
          score + Math.fround(Math.fround(gamma ** (d + 1)) * maxValid(next)),
        );
        children.push({
          state: next,
          score,
          first: d === 0 ? a : b.first,
          path: [...b.path, next],
          leaf,
        });
      }
    }
    const order = [...children.keys()].sort((x, y) =>
      (children[y].leaf - children[x].leaf) || (x - y)
    );
    beams = order.slice(0, k).map((i) => children[i]);
    const top = children[order[0]];
    best = { action: top.first, value: top.leaf, path: top.path };
  }
  return best;
}
