/**
 * End to end: `deno task eval` machinery on a randomly initialised tiny checkpoint playing
 * Pong with planning (short, frame-capped episodes), and the CLI's errors.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { evaluate } from "../eval/evaluate.ts";
import { parseEvalArgs } from "../eval/eval_options.ts";
import { resolveCheckpoint } from "../checkpoint/loader.ts";
import type { ResultsDocument } from "../eval/results_writer.ts";
import { writeTinyCheckpoint } from "./helpers/eval_tiny_checkpoint.ts";

async function cli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "eval/evaluate.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("eval CLI: --help, missing checkpoint, unknown game, bad numbers", async () => {
  const help = await cli("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--checkpoint <path>/);
  assert.match(help.stdout, /--no-plan/);
  const missing = await cli("--checkpoint", "/nonexistent/ckpt");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /checkpoint not found: \/nonexistent\/ckpt/);
  const game = await cli("--checkpoint", ".", "--games", "Pongg");
  assert.equal(game.code, 2);
  assert.match(game.stderr, /unknown game "Pongg"; valid games: .*Pong,/);
  const bad = await cli("--checkpoint", ".", "--episodes", "x");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--episodes must be an integer/);
  const noCkpt = await cli("--games", "Pong");
  assert.equal(noCkpt.code, 2);
  assert.match(noCkpt.stderr, /--checkpoint <path> is required/);
});

Deno.test("eval options: groups, ROM ids and defaults", () => {
  const o = parseEvalArgs(["--checkpoint", "c", "--games", "pong,space_invaders,finetune"])!;
  assert.deepEqual(o.games, [
    "Pong",
    "SpaceInvaders",
    "Robotank",
    "YarsRevenge",
    "Gravitar",
    "MsPacman",
  ]);
  assert.equal(o.episodes, 16);
  assert.equal(o.horizon, 2);
  assert.equal(o.epsilon, 0.001);
  assert.equal(o.maxFrames, 108_000);
  assert.equal(o.plan, true);
  assert.equal(parseEvalArgs(["--checkpoint", "c", "--no-plan"])!.plan, false);
  assert.equal(parseEvalArgs(["--checkpoint", "c"])!.games.length, 15);
});

Deno.test("eval checkpoint resolution: checkpoint dir, run dir (newest complete), file", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "jowa-eval-ckpt-" });
  try {
    const step = (n: string, complete: boolean) => {
      const d = path.join(tmp, "run", "checkpoints", n);
      Deno.mkdirSync(d, { recursive: true });
      Deno.writeTextFileSync(path.join(d, "world_action.safetensors"), "");
      Deno.writeTextFileSync(path.join(d, "tokenizer.safetensors"), "");
      if (complete) Deno.writeTextFileSync(path.join(d, "state.json"), "{}");
      return d;
    };
    const s2 = step("step-000002", true);
    step("step-000004", false); // incomplete: skipped
    const run = path.join(tmp, "run");
    assert.equal(resolveCheckpoint(run).worldAction, path.join(s2, "world_action.safetensors"));
    assert.equal(resolveCheckpoint(s2).tokenizer, path.join(s2, "tokenizer.safetensors"));
    const file = path.join(s2, "world_action.safetensors");
    assert.equal(resolveCheckpoint(file).worldAction, file);
    assert.throws(() => resolveCheckpoint(tmp), /no checkpoint here/);
    assert.throws(() => resolveCheckpoint(file, path.join(tmp, "none")), /none not found/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("eval end to end: tiny checkpoint on Pong with planning writes well-formed results", async () => {
  await initRuntime();
  const tmp = await Deno.makeTempDir({ prefix: "jowa-eval-e2e-" });
  try {
    const ckpt = await writeTinyCheckpoint(path.join(tmp, "ckpt"));
    const out = path.join(tmp, "out");
    const opts = parseEvalArgs([
      "--checkpoint",
      ckpt,
      "--games",
      "Pong",
      "--episodes",
      "2",
      "--max-frames",
      "240",
      "--record",
      "1",
      "--bootstrap-reps",
      "50",
      "--out",
      out,
      "--quiet",
    ])!;
    await evaluate(opts);
    const doc = JSON.parse(
      await Deno.readTextFile(path.join(out, "results.json")),
    ) as ResultsDocument;
    assert.equal(doc.games.length, 1);
    const g = doc.games[0];
    assert.equal(g.game, "Pong");
    assert.equal(g.taskId, 39);
    assert.equal(g.horizon, 2);
    assert.equal(g.beamWidth, 2);
    assert.equal(g.returns.length, 2);
    for (const r of g.returns) assert.ok(Number.isFinite(r) && r >= -21 && r <= 21, `return ${r}`);
    // 240 frames at frame skip 4: both episodes are cut at 60 agent steps.
    assert.deepEqual(g.lengths, [60, 60]);
    assert.deepEqual(g.truncated, [true, true]);
    assert.equal(g.agentSteps, 120);
    const res = doc.results;
    assert.equal(res.games[0].game, "Pong");
    assert.equal(res.games[0].episodes, 2);
    assert.ok(Number.isFinite(res.games[0].hns));
    assert.ok(res.games[0].dqnNormalized !== null); // Pong has a DQN reference
    assert.equal(res.games[0].paperReturn, 17.7);
    for (const k of ["mean", "median", "iqm", "iqmOfGameMeans"] as const) {
      const e = res.hns[k];
      assert.ok(e.lower <= e.point + 1e-9 && e.point <= e.upper + 1e-9, `${k} CI`);
    }
    const md = await Deno.readTextFile(path.join(out, "results.md"));
    assert.match(md, /\| Pong \| 2 \|/);
    assert.match(md, /JOWA-150M paper return/);
    assert.match(md, /IQM/);
    const gif = await Deno.readFile(path.join(out, "recordings", "Pong-episode0.gif"));
    assert.equal(new TextDecoder().decode(gif.subarray(0, 6)), "GIF89a");
    // real | imagined t+1 | imagined t+2, 84 high
    assert.equal(gif[6] | (gif[7] << 8), 3 * 84 + 2 * 2);
    assert.equal(gif[8] | (gif[9] << 8), 84);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
