/**
 * Model checkpoints: a world-action model (parameters + target head + config) round-trips
 * bit-exactly; wrong names, shapes or configs fail with clear errors before anything is
 * assigned; any Module saves with extra tensors.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import {
  CheckpointMismatchError,
  readSafetensors,
  writeSafetensors,
} from "../models/safetensors/mod.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import {
  CHECKPOINT_FORMAT,
  loadModule,
  loadWorldActionModel,
  saveModule,
  saveWorldActionModel,
} from "../checkpoint/model_checkpoint.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { InitRng, Linear } from "../kernels/nn/layers.ts";

await initRuntime();

const cfg = worldActionConfig("tiny", { timesteps: 2 });

async function values(m: WorldActionModel): Promise<Map<string, Float32Array>> {
  const named = [...m.namedParameters(), ...m.targetTensors()];
  const vals = await readAll(named.map(([, t]) => t));
  return new Map(named.map(([n], i) => [n, vals[i] as Float32Array]));
}

Deno.test("world-action checkpoint: save/load round-trips bit-exactly with metadata", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = new WorldActionModel({ ...cfg, seed: 1 });
    // Make the target head differ from the online one so both are checked.
    const st = await a.headQ.stateDict();
    for (const v of st.values()) v.data[0] += 1;
    a.headQ.loadStateDict(st);
    const path = `${dir}/wam.safetensors`;
    await saveWorldActionModel(path, a, { step: "12" });
    const b = new WorldActionModel({ ...cfg, seed: 2 });
    const info = await loadWorldActionModel(path, b);
    assert.equal(info.metadata.format, CHECKPOINT_FORMAT);
    assert.equal(info.metadata.step, "12");
    assert.deepEqual(info.config, a.cfg);
    const [va, vb] = [await values(a), await values(b)];
    assert.deepEqual([...vb.keys()], [...va.keys()]);
    for (const [n, v] of va) {
      const w = vb.get(n)!;
      const same = new Uint32Array(v.buffer).every((bits, i) =>
        bits === new Uint32Array(w.buffer)[i]
      );
      assert.ok(same, `${n} differs after the round trip`);
    }
    assert.notDeepEqual(va.get("head_q.0.out.bias"), va.get("target_q.0.out.bias"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("world-action checkpoint: wrong names and shapes throw one clear error, nothing assigned", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = new WorldActionModel(cfg);
    const path = `${dir}/a.safetensors`;
    await saveWorldActionModel(path, a);
    const file = await readSafetensors(path);
    const tensors = new Map(
      [...file.tensors].map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, data: t.data }]),
    );
    const w = tensors.get("head_reward.fc2.weight")!;
    tensors.delete("head_reward.fc2.weight");
    tensors.set("head_rewards.fc2.weight", w); // renamed
    tensors.set("ln_f.bias", {
      dtype: "F32",
      shape: [cfg.d + 1],
      data: new Uint8Array(4 * (cfg.d + 1)),
    });
    const bad = `${dir}/bad.safetensors`;
    await writeSafetensors(bad, tensors, file.metadata);
    const b = new WorldActionModel({ ...cfg, seed: 5 });
    const before = await values(b);
    const err = await loadWorldActionModel(bad, b).catch((e) => e);
    assert.ok(err instanceof CheckpointMismatchError, String(err));
    assert.deepEqual(err.missing, ["head_reward.fc2.weight"]);
    assert.deepEqual(err.unexpected, ["head_rewards.fc2.weight"]);
    assert.deepEqual(err.shapeMismatches.map((m: { name: string }) => m.name), ["ln_f.bias"]);
    assert.match(err.message, /missing 1: "head_reward\.fc2\.weight"/);
    assert.match(err.message, /shape mismatch "ln_f\.bias": expected \[32\], file has \[33\]/);
    assert.deepEqual(await values(b), before);
    // A different size config is named as such.
    const big = new WorldActionModel({ ...cfg, qHidden: 40 });
    await assert.rejects(
      () => loadWorldActionModel(path, big),
      /config differs .*qHidden \(file 48, model 40\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("any Module: parameters plus extra tensors, names checked on load", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lin = new Linear(3, 2, new InitRng(1));
    const extra = tensor([1, 2, 3, 4], [4]);
    const path = `${dir}/lin.safetensors`;
    await saveModule(path, lin, { extra: [["stats", extra]], config: { k: 1 } });
    const lin2 = new Linear(3, 2, new InitRng(2));
    const extra2 = tensor([0, 0, 0, 0], [4]);
    const info = await loadModule(path, lin2, [["stats", extra2]]);
    assert.deepEqual(info.config, { k: 1 });
    assert.deepEqual([...await extra2.read()], [1, 2, 3, 4]);
    assert.deepEqual(await lin2.weight.read(), await lin.weight.read());
    await assert.rejects(() => loadModule(path, lin2), CheckpointMismatchError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
