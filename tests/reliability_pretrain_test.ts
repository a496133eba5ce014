/**
 * A pretraining run that failed or was killed before its first checkpoint is started over by
 * the same command (and by `--resume`), with one line saying so, instead of "exists: resume
 * it" / "no complete checkpoint": its leftovers (partial checkpoint directories, metrics,
 * diagnostic) go; its collected dataset under <run>/data/ stays byte for byte and is reused
 * when valid (complete, the requested rows and seed), not collected again.
 *
 * The first attempt is a real failure (a NaN injected at step 1 stops the run before any
 * checkpoint) plus what a kill during the first checkpoint leaves (a temp directory and a
 * step directory without state.json). The runs train on small token stores (`--data`), as a
 * tokenizer step takes minutes on a CPU adapter; the reuse rule of the collected frames is
 * checked on ensureCollected directly, with a complete frame store carrying the provenance
 * the emulator collection writes (so no emulator is needed).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { minimalActionsOf, openStoreWriter } from "../offline/mod.ts";
import { RunDir } from "../checkpoint/run_dir.ts";
import { collectedStoreProblem, ensureCollected } from "../train/default_data.ts";
import { writeTokenStores } from "./helpers/pretrain_stores.ts";

const SCRIPT = new URL("../train/pretrain.ts", import.meta.url).pathname;
const STEPS = 24; // collected rows per game

async function cli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", SCRIPT, ...args],
    env: { JOWA_ALLOW_GL: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stderr: dec.decode(out.stderr) };
}

/** A complete frame store of `rows` rows, as `deno task collect` would leave it. */
async function collectedStore(dir: string, seed: number): Promise<void> {
  const actions = minimalActionsOf("Pong");
  const w = await openStoreWriter(dir, {
    game: "Pong",
    minimalActions: actions,
    source: { kind: "emulator", policy: "uniform", epsilon: 1, seed, envs: 8 },
  });
  for (let e = 0, T = STEPS / 2; e < 2; e++) {
    const frames = Uint8Array.from({ length: T * 84 * 84 }, (_, i) => (i * 7 + e * 13) & 255);
    const terminals = new Uint8Array(T);
    terminals[T - 1] = 1;
    await w.addEpisode({
      frames,
      actions: Uint8Array.from({ length: T }, (_, t) => actions[t % actions.length]),
      rewards: Float32Array.from({ length: T }, (_, t) => (t % 5 === 0 ? 1 : 0)),
      terminals,
      truncated: false,
    });
  }
  await w.close();
}

/** Every file under `dir` with its bytes (base64) and modification time. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    const st = fs.statSync(p);
    if (st.isFile()) out[f] = `${st.mtimeMs} ${fs.readFileSync(p).toString("base64")}`;
  }
  return out;
}

const tmp = Deno.makeTempDirSync({ prefix: "jowa-reliability-pretrain-" });
globalThis.addEventListener("unload", () => fs.rmSync(tmp, { recursive: true, force: true }));

const tokens = await writeTokenStores(path.join(tmp, "tokens"), ["Pong"], {
  episodes: 2,
  steps: 10,
  vocab: 16,
  seed: 1,
});

const common = (name: string) => [
  "--runs-dir",
  tmp,
  "--name",
  name,
  "--data",
  tokens,
  "--batch",
  "2",
  "--segment-length",
  "2",
  "--stage1-steps",
  "1",
  "--stage2-steps",
  "1",
  "--log-every",
  "1",
  "--ckpt-every",
  "1",
  "--workers",
  "0",
  "--no-report",
];

/** A first attempt that stopped before its first checkpoint; returns its run directory. */
async function failedFirstAttempt(name: string): Promise<RunDir> {
  const run = new RunDir(path.join(tmp, name));
  await collectedStore(path.join(run.root, "data", "Pong"), 0);
  const first = await cli([...common(name), "--inject-nan-at", "1"]);
  assert.equal(first.code, 3, first.stderr);
  assert.match(first.stderr, /non-finite .* loss at step 1/);
  assert.ok(fs.existsSync(run.config) && fs.existsSync(run.nonfinite));
  assert.equal(run.latestCheckpoint(), null);
  // What a kill while writing the first checkpoint leaves behind.
  fs.mkdirSync(path.join(run.checkpoints, ".step-000001.4242.tmp"), { recursive: true });
  fs.mkdirSync(path.join(run.checkpoints, "step-000001"), { recursive: true });
  fs.writeFileSync(path.join(run.checkpoints, "step-000001", "world_action.safetensors"), "x");
  return run;
}

function assertRestarted(run: RunDir, r: { code: number; stderr: string }, data: object) {
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => /no complete checkpoint/.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.equal(
    lines[0],
    `${run.root}: no complete checkpoint (an earlier attempt stopped before its first); ` +
      "starting it over from step 0, keeping its collected data",
  );
  assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
  assert.deepEqual(snapshot(path.join(run.root, "data")), data, "collected data/ untouched");
  assert.ok(!fs.existsSync(run.nonfinite), "the old diagnostic is gone");
  assert.ok(!fs.existsSync(path.join(run.checkpoints, ".step-000001.4242.tmp")));
  const state = JSON.parse(
    fs.readFileSync(path.join(run.latestCheckpoint()!, "state.json"), "utf8"),
  );
  assert.equal(state.step, 2);
  const steps = fs.readFileSync(run.metrics, "utf8").trim().split("\n").map((l) =>
    JSON.parse(l).step
  );
  assert.deepEqual(steps, [1, 2], "metrics of the new attempt only");
}

Deno.test("the same command starts over a run that stopped before its first checkpoint", async () => {
  const run = await failedFirstAttempt("again");
  const data = snapshot(path.join(run.root, "data"));
  const r = await cli(common("again"));
  assertRestarted(run, r, data);
  // Now it has a checkpoint: the same command refuses to overwrite it, as before.
  const third = await cli(common("again"));
  assert.equal(third.code, 2);
  assert.match(third.stderr, /exists: resume it with --resume/);
});

Deno.test("--resume starts over a run that stopped before its first checkpoint", async () => {
  const run = await failedFirstAttempt("resumed");
  const data = snapshot(path.join(run.root, "data"));
  const r = await cli(["--resume", run.root, "--inject-nan-at", "0"]); // a schedule option
  assertRestarted(run, r, data);
});

Deno.test("RunDir.clearProgress keeps config and data, refuses a run with a checkpoint", () => {
  const run = new RunDir(path.join(tmp, "unit"));
  run.create();
  fs.writeFileSync(run.config, "{}");
  fs.mkdirSync(path.join(run.root, "data", "Pong"), { recursive: true });
  fs.writeFileSync(path.join(run.root, "data", "Pong", "manifest.json"), "{}");
  fs.mkdirSync(path.join(run.tokens, "Pong"), { recursive: true });
  fs.writeFileSync(run.metrics, "{}\n");
  assert.ok(run.neverCheckpointed());
  run.clearProgress();
  assert.deepEqual(fs.readdirSync(run.root).sort(), ["config.json", "data"]);
  run.create();
  fs.mkdirSync(run.checkpoint(5));
  fs.writeFileSync(path.join(run.checkpoint(5), "state.json"), "{}");
  assert.ok(!run.neverCheckpointed());
  assert.throws(() => run.clearProgress(), /has a complete checkpoint/);
  assert.ok(fs.existsSync(run.checkpoint(5)));
});

Deno.test("ensureCollected reuses a valid collected store and names what makes one invalid", async () => {
  const root = path.join(tmp, "collected");
  await collectedStore(path.join(root, "Pong"), 0);
  const before = snapshot(root);
  const logs: string[] = [];
  // Valid: returned as is, without starting the emulator (nothing logged, nothing written).
  assert.equal(await ensureCollected(root, ["Pong"], STEPS, 0, (s) => logs.push(s)), root);
  assert.deepEqual(logs, []);
  assert.deepEqual(snapshot(root), before);
  const dir = path.join(root, "Pong");
  assert.equal(collectedStoreProblem(dir, STEPS, 0), null);
  assert.equal(collectedStoreProblem(path.join(root, "Phoenix"), STEPS, 0), "", "new game");
  assert.match(collectedStoreProblem(dir, STEPS, 1)!, /holds 24 rows \(emulator, seed 0\), not 24/);
  assert.match(collectedStoreProblem(dir, 500, 0)!, /not 500 collected with seed 0/);
  fs.renameSync(path.join(dir, "manifest.json"), path.join(dir, "journal.json"));
  assert.equal(collectedStoreProblem(dir, STEPS, 0), "its store is incomplete");
});
