/**
 * `deno task eval` output reliability: an unwritable --out fails in one line before the GPU
 * starts; when --out becomes unwritable during the run, the results still land in a fallback
 * directory that the one-line error names.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeResults } from "../eval/results_writer.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { writeTinyCheckpoint } from "./helpers/eval_tiny_checkpoint.ts";

async function cli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "eval/evaluate.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stderr: dec.decode(out.stderr).trim() };
}

async function withTemp(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "jowa-eval-out-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const DOC = {
  createdAt: "2025-01-01T00:00:00Z",
  adapter: "test",
  checkpoint: { worldAction: "w.safetensors", tokenizer: "t.safetensors" },
  settings: { episodes: 2 },
  games: [{
    game: "Pong",
    taskId: 39,
    beamWidth: 2,
    horizon: 2,
    returns: [-21, -20],
    lengths: [60, 60],
    truncated: [true, true],
    agentSteps: 120,
    seconds: 1,
    agentStepsPerSecond: 120,
  }],
};

Deno.test("reliability eval: results that cannot go to --out land in a named fallback", async () => {
  await withTemp(async (tmp) => {
    const file = path.join(tmp, "a_file");
    fs.writeFileSync(file, "keep me");
    const w = await writeResults(path.join(file, "out"), DOC, { label: "t", reps: 20, seed: 0 });
    try {
      assert.match(w.fallbackReason ?? "", /a_file\/out: ENOTDIR/);
      assert.ok(!w.json.startsWith(tmp), w.json);
      const doc = JSON.parse(fs.readFileSync(w.json, "utf8"));
      assert.deepEqual(doc.games[0].returns, [-21, -20]);
      assert.match(fs.readFileSync(w.markdown, "utf8"), /\| Pong \| 2 \|/);
    } finally {
      fs.rmSync(path.dirname(w.json), { recursive: true });
    }
    assert.equal(fs.readFileSync(file, "utf8"), "keep me");
    // Writable: no fallback.
    const ok = await writeResults(path.join(tmp, "ok"), DOC, { label: "t", reps: 20, seed: 0 });
    assert.equal(ok.fallbackReason, undefined);
    assert.equal(ok.json, path.join(tmp, "ok", "results.json"));
  });
});

Deno.test("reliability eval CLI: unwritable --out fails in one line before the evaluation", async () => {
  await withTemp(async (tmp) => {
    await initRuntime(); // the tiny checkpoint is built on the GPU
    const ckpt = await writeTinyCheckpoint(path.join(tmp, "ckpt"));
    const file = path.join(tmp, "a_file");
    fs.writeFileSync(file, "keep me");
    const cases: [string, RegExp][] = [
      [path.join(file, "out"), /ENOTDIR/],
      [file, /is an existing file, not a directory/],
      ["/sys/jowa_no_such_dir", /cannot write there/],
    ];
    for (const [out, why] of cases) {
      const r = await cli("--checkpoint", ckpt, "--games", "Pong", "--out", out);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.split("\n").length, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`error: --out ${out}: `), r.stderr);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stderr, /adapter:/); // refused before the GPU started
    }
    assert.equal(fs.readFileSync(file, "utf8"), "keep me");
  });
});

Deno.test("reliability eval CLI: --out replaced by a file mid-run, results saved in the named fallback", async () => {
  await withTemp(async (tmp) => {
    await initRuntime(); // the tiny checkpoint is built on the GPU
    const ckpt = await writeTinyCheckpoint(path.join(tmp, "ckpt"));
    const out = path.join(tmp, "out");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "eval/evaluate.ts",
        // The cheapest run that still records: 1 greedy episode of 2 agent steps.
        ...["--checkpoint", ckpt, "--games", "Pong", "--episodes", "1", "--max-frames", "8"],
        ...["--no-plan", "--record", "1", "--bootstrap-reps", "20", "--out", out],
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let err = "";
    while (!err.includes("checkpoint:")) {
      const { value, done } = await reader.read();
      if (done) break;
      err += value;
    }
    // The evaluation is under way: its output directory turns into a file (mkdir then says EEXIST,
    // a write inside it ENOTDIR, depending on which comes first).
    assert.ok(fs.statSync(out).isDirectory(), err);
    fs.rmSync(out, { recursive: true });
    fs.writeFileSync(out, "not a directory");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      err += value;
    }
    const status = await child.status;
    assert.equal(status.code, 1, err);
    const last = err.trim().split("\n").at(-1)!;
    const m =
      /^error: --out (\S+): could not write the results \(.*(?:ENOTDIR|EEXIST).*\); they were saved to (\S+) and (\S+)$/
        .exec(last);
    assert.ok(m, err);
    assert.equal(m[1], out);
    try {
      const doc = JSON.parse(fs.readFileSync(m[2], "utf8"));
      assert.equal(doc.games[0].game, "Pong");
      assert.equal(doc.games[0].returns.length, 1);
      assert.ok(fs.existsSync(m[3]));
      // The recording went to a fallback too (said on its own line).
      assert.match(err, /recording: cannot write to .*; using (\S+)/);
    } finally {
      fs.rmSync(path.dirname(m[2]), { recursive: true });
      const rec = /recording: cannot write to .*; using (\S+)/.exec(err);
      if (rec) fs.rmSync(path.dirname(rec[1]), { recursive: true, force: true });
    }
    assert.equal(fs.readFileSync(out, "utf8"), "not a directory");
  });
});
