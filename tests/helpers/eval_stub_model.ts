import { mulberry32 } from "../../util/rng.ts";
/**
 * A hand-built world model for planner tests: a tabular MDP on the GPU. A sequence's state is
 * a node id; the context's last token is the root node; action a from node s leads to
 * next[s, a] with reward reward[s, a]; the "Q head" reads q[s, :]. Imagined observations are
 * the next node id repeated over the 36 observation tokens.
 */
import { indexSelect, reshape } from "../../kernels/ops/mod.ts";
import { mapKernel } from "../../kernels/ops/map.ts";
import { keep, type Tensor, tensor } from "../../kernels/core/tensor.ts";
import type { Imagined, PlanningModel, PlanningState } from "../../eval/planning_model.ts";

/** CPU tables of the MDP. */
export interface TabularMdp {
  states: number;
  actions: number;
  /** [states * actions] next node. */
  next: Int32Array;
  /** [states * actions] reward. */
  reward: Float32Array;
  /** [states * actions] Q values read at a node. */
  q: Float32Array;
}

/** Node ids of M sequences. */
export class StubState implements PlanningState {
  constructor(public nodes: Tensor) {
    keep(nodes);
  }
  get n(): number {
    return this.nodes.size;
  }
  dispose(): void {
    this.nodes.dispose();
  }
}

/** PlanningModel over a tabular MDP; counts imagine calls and imagined sequences. */
export class StubPlanningModel implements PlanningModel<StubState> {
  readonly actions: number;
  readonly obsTokens = 36;
  readonly timesteps = 8;
  imagineCalls = 0;
  imaginedSequences = 0;
  readonly #next: Tensor;
  readonly #reward: Tensor;
  readonly #q: Tensor;

  constructor(readonly mdp: TabularMdp) {
    this.actions = mdp.actions;
    this.#next = keep(tensor(mdp.next, [mdp.next.length], "i32"));
    this.#reward = keep(tensor(mdp.reward, [mdp.reward.length]));
    this.#q = keep(tensor(mdp.q, [mdp.states, mdp.actions]));
  }

  prefill(tokens: Tensor, _tasks: Tensor): { state: StubState; q: Tensor } {
    const [N, t] = tokens.shape;
    const last = tensor(Int32Array.from({ length: N }, (_, i) => i * t + t - 1), [N], "i32");
    const nodes = indexSelect(reshape(tokens, [N * t]), last);
    nodes.intRange = [0, this.mdp.states - 1];
    return { state: new StubState(nodes), q: indexSelect(this.#q, nodes) };
  }

  branch(state: StubState, parents: Tensor): StubState {
    const nodes = indexSelect(state.nodes, parents);
    nodes.intRange = [0, this.mdp.states - 1];
    return new StubState(nodes);
  }

  imagine(state: StubState, actions: Tensor): Imagined {
    const M = state.n;
    this.imagineCalls++;
    this.imaginedSequences += M;
    const idx = mapKernel(
      "stub.idx",
      [state.nodes, actions],
      `a * ${this.actions} + b`,
      "i32",
      undefined,
      "",
      true,
    );
    const next = indexSelect(this.#next, idx);
    next.intRange = [0, this.mdp.states - 1];
    const obs = mapKernel("stub.obs", [reshape(next, [M, 1])], "a", "i32", [M, this.obsTokens]);
    // The state moves to the imagined node (the stub's "appended tokens").
    state.nodes.dispose();
    state.nodes = keep(next.view([M]));
    return { reward: indexSelect(this.#reward, idx), obs, q: indexSelect(this.#q, next) };
  }

  dispose(): void {
    for (const t of [this.#next, this.#reward, this.#q]) t.dispose();
  }
}

/** A random MDP: rewards in {-1, 0, 1}, Q uniform in [-2, 2], random transitions. */
export function randomMdp(states: number, actions: number, seed: number): TabularMdp {
  const rand = mulberry32(seed);
  const n = states * actions;
  return {
    states,
    actions,
    next: Int32Array.from({ length: n }, () => Math.floor(rand() * states)),
    reward: Float32Array.from({ length: n }, () => Math.floor(rand() * 3) - 1),
    q: Float32Array.from({ length: n }, () => rand() * 4 - 2),
  };
}
