/**
 * The `deno task pretrain` command line (train/pretrain.ts): --help, one-line errors without
 * stack traces for bad options, and Ctrl-C (SIGINT) writing a checkpoint before a clean exit.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeTokenStores } from "./helpers/pretrain_stores.ts";

const SCRIPT = new URL("../train/pretrain.ts", import.meta.url).pathname;

async function cli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("--help documents every option", async () => {
  const r = await cli(["--help"]);
  assert.equal(r.code, 0);
  for (
    const opt of [
      "--data",
      "--preset",
      "--resume",
      "--stage1-steps",
      "--stage2-steps",
      "--lr1",
      "--lr2",
      "--weight-decay",
      "--grad-clip",
      "--target-every",
      "--batch",
      "--games",
      "--model",
      "--log-every",
      "--ckpt-every",
      "--lpips",
      "paper-40M",
    ]
  ) assert.ok(r.stdout.includes(opt), `help mentions ${opt}`);
});

Deno.test("bad options give one-line errors and status 2", async () => {
  const cases: [string[], RegExp][] = [
    [["--batch", "x"], /--batch must be an integer >= 1, got 'x'/],
    [["--lr1=-1"], /--lr1 must be a number >= 0, got '-1'/],
    [["--gamma", "1.5"], /--gamma must be <= 1/],
    [["--preset", "paper-1B"], /--preset must be one of paper-40M, paper-70M, paper-150M/],
    [["--model", "huge"], /--model must be one of/],
    [["--bogus"], /Unknown option '--bogus'/],
    [["--data", "/nonexistent/jowa"], /--data \/nonexistent\/jowa: no such directory/],
    [
      ["--lpips", "/nonexistent/lpips.safetensors"],
      /--lpips \/nonexistent\/lpips.safetensors: no such file/,
    ],
    [["--resume", "/nonexistent/run"], /no config.json there/],
    [["--resume", "/tmp", "--batch", "4"], /cannot change: batch/],
  ];
  for (const [args, want] of cases) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(" ")}: status ${r.code} (${r.stderr})`);
    const lines = r.stderr.trim().split("\n").filter((l) => !/XDG_RUNTIME_DIR/.test(l));
    assert.equal(lines.length, 1, `${args.join(" ")}: one line, got ${JSON.stringify(lines)}`);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], want);
  }
});

Deno.test("Ctrl-C writes a checkpoint and exits with status 130", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "pretrain_cli_" });
  const data = await writeTokenStores(path.join(tmp, "data"), ["Pong"], {
    episodes: 2,
    steps: 10,
    vocab: 16,
    seed: 1,
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-webgpu",
      SCRIPT,
      "--data",
      data,
      "--runs-dir",
      tmp,
      "--name",
      "sig",
      "--batch",
      "2",
      "--segment-length",
      "2",
      "--stage1-steps",
      "1000",
      "--stage2-steps",
      "0",
      "--log-every",
      "1",
      "--ckpt-every",
      "1000",
      "--workers",
      "0",
      "--no-report",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const metrics = path.join(tmp, "sig", "metrics.jsonl");
  const deadline = Date.now() + 120_000;
  while (!(fs.existsSync(metrics) && fs.statSync(metrics).size > 0) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill("SIGINT");
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (Deno.env.get("DBG")) console.log(stderr);
  assert.equal(out.code, 130, stderr);
  assert.match(stderr, /interrupted at step \d+: checkpoint/);
  assert.doesNotMatch(stderr, /^\s+at /m);
  const latest = JSON.parse(
    fs.readFileSync(path.join(tmp, "sig", "checkpoints", "latest.json"), "utf8"),
  );
  assert.ok(latest.step >= 1);
  const state = JSON.parse(
    fs.readFileSync(path.join(tmp, "sig", "checkpoints", latest.dir, "state.json"), "utf8"),
  );
  assert.equal(state.step, latest.step);
  assert.equal(state.sampler.nextBatch, latest.step);
});
