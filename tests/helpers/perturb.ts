/**
 * Perturb every weight of a model (layer norms included) by uniform noise, so tests see
 * gammas, betas and attention far from their initial values.
 *
 * @module
 */
import type { Module } from "../../kernels/nn/module.ts";
import { rng } from "./reference.ts";

/** Add `scale` * (u - 0.5), u uniform from `rng(seed)`, to every weight, in state order. */
export async function perturbWeights(model: Module, seed: number, scale = 0.1): Promise<void> {
  const state = await model.stateDict();
  const r = rng(seed);
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += scale * (r() - 0.5);
  }
  model.loadStateDict(state);
}
