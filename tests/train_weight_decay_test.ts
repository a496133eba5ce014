/**
 * The weight-decay groups of the authors' `configure_optimizer` on our names: decided here
 * independently from each parameter's shape (a rank-2 non-embedding weight is a Linear
 * weight) and the Q-head rule.
 */
import assert from "node:assert/strict";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { worldActionParamSpec } from "../models/world_action/spec.ts";
import { noDecay } from "../train/weight_decay.ts";

Deno.test("weight decay: Linear weights and every Q-ensemble tensor; not biases, norms, embeddings", () => {
  for (const size of ["tiny", "150M"] as const) {
    const cfg = worldActionConfig(size);
    const spec = worldActionParamSpec(cfg);
    for (const { name, shape } of spec) {
      const linearWeight = name.endsWith(".weight") && shape.length === 2 &&
        !name.startsWith("embed.");
      const want = name.startsWith("head_q.") || linearWeight;
      assert.equal(!noDecay(name), want, `${size}: ${name} [${shape}]`);
    }
    // All ten tensors of each ensemble member, as their stacked params.0..9.
    const q = spec.filter((s) => s.name.startsWith("head_q."));
    assert.equal(q.length, 10 * cfg.qEnsemble);
    assert.ok(q.every((s) => !noDecay(s.name)));
    assert.ok(noDecay("embed.position.weight") && noDecay("blocks.0.ln1.weight"));
    assert.ok(noDecay("ln_f.bias") && noDecay("head_obs.fc1.bias"));
  }
});
