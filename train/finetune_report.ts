/**
 * `<run>/report.html` of a fine-tuning run (train/report.ts): loss curves, the evaluations
 * (mean return and DQN-normalized score per evaluation, the best marked), and synthetic
 * segments as images — the last real context observation beside the H imagined ones, all
 * decoded from their tokens by the run's tokenizer.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { tensor } from "../kernels/core/tensor.ts";
import { toBytes, type Tokenizer } from "../models/tokenizer/model.ts";
import { readMetrics } from "./metrics_log.ts";
import { renderReport } from "./report.ts";
import { encodeGrayPng, upscaleGray } from "./png.ts";
import { encodeBase64 } from "./base64.ts";
import { type RunDir, writeFileAtomic } from "../checkpoint/run_dir.ts";
import type { FinetuneConfig } from "./finetune_options.ts";
import type { FinetuneInputs } from "./finetune_inputs.ts";
import type { SyntheticBuffer } from "./synthetic_buffer.ts";
import type { EvalPoint } from "./finetune_eval.ts";

/** What the report shows besides metrics.jsonl and evals.jsonl. */
export interface FinetuneReportInput {
  cfg: FinetuneConfig;
  inputs: FinetuneInputs;
  tok: Tokenizer;
  buffer: SyntheticBuffer | null;
  adapter: string;
  seconds: number;
  lastLosses: Record<string, number>;
  best: EvalPoint | null;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Render and write the report. */
export async function writeFinetuneReport(run: RunDir, r: FinetuneReportInput): Promise<void> {
  const c = r.cfg;
  const facts: Record<string, string | number> = {
    run: run.root,
    adapter: r.adapter,
    checkpoint: r.inputs.files.worldAction,
    game: `${c.game} (task embedding of ${r.inputs.taskGame})`,
    data: `${r.inputs.store} (${r.inputs.manifest.transitions} transitions)`,
    preset: c.preset,
    steps: `${c.steps} (${c.synthesis ? c.realSteps : c.steps} real-only), batch ${c.batch}` +
      (c.synthesis ? ` (${c.batch - c.syntheticBatch} real + ${c.syntheticBatch} synthetic)` : ""),
    synthesis: c.synthesis ? `beam search H ${c.horizon}, K ${c.beamWidth}` : "off",
    "wall time": `${r.seconds.toFixed(1)} s`,
    best: r.best
      ? `step ${r.best.step}: mean return ${r.best.meanReturn.toFixed(2)}, DQN-normalized ${
        r.best.dqnNormalized?.toFixed(3) ?? "n/a"
      }`
      : "no evaluation",
  };
  for (const [k, v] of Object.entries(r.lastLosses)) facts[`final ${k}`] = v.toFixed(4);
  let html = renderReport({
    title: `JOWA fine-tuning: ${c.name}`,
    facts,
    metrics: readMetrics(run.metrics),
    reconstructions: [],
  });
  html = html.replace(
    "</body>",
    `${evalTable(run, r.best)}\n${await syntheticFigures(r)}\n</body>`,
  );
  writeFileAtomic(run.report, html);
}

function evalTable(run: RunDir, best: EvalPoint | null): string {
  const file = path.join(run.root, "evals.jsonl");
  const rows = fs.existsSync(file)
    ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) =>
      JSON.parse(l) as EvalPoint
    )
    : [];
  const body = rows.map((e) =>
    `<tr><td>${e.step}${e.step === best?.step ? " (best)" : ""}</td><td>${
      e.meanReturn.toFixed(2)
    }</td><td>${e.dqnNormalized?.toFixed(3) ?? "n/a"}</td><td>${e.returns.length}</td></tr>`
  ).join("\n");
  return `<h2>Evaluations on the real game</h2>\n<table><tr><th>step</th><th>mean return</th>` +
    `<th>DQN-normalized</th><th>episodes</th></tr>\n${body}</table>`;
}

/** Up to 4 buffered synthetic segments: last real context frame | imagined frames. */
async function syntheticFigures(r: FinetuneReportInput): Promise<string> {
  const b = r.buffer;
  if (!b || b.size === 0) return "<h2>Synthetic segments</h2><p>none</p>";
  const H = r.cfg.horizon, L = b.L, P = b.P, C = L - H;
  const n = Math.min(4, b.size);
  const ids = new Int32Array(n * (H + 1) * P);
  for (let i = 0; i < n; i++) {
    ids.set(b.tokens.subarray((i * L + C - 1) * P, (i + 1) * L * P), i * (H + 1) * P);
  }
  const t = tensor(ids, [n * (H + 1), P], "i32");
  const frames = r.tok.decode(t);
  const px = await toBytes(frames);
  t.dispose();
  frames.dispose();
  const F = 84 * 84;
  const img = (k: number) =>
    `<img alt="" src="data:image/png;base64,${
      encodeBase64(encodeGrayPng(upscaleGray(px.subarray(k * F, (k + 1) * F), 84, 84, 2), 168, 168))
    }">`;
  const figs = Array.from(
    { length: n },
    (_, i) =>
      `<figure>${Array.from({ length: H + 1 }, (_, h) => img(i * (H + 1) + h)).join("")}` +
      `<figcaption>${
        esc(`segment ${i}: last real observation | ${H} imagined`)
      }</figcaption></figure>`,
  ).join("\n");
  return `<h2>Synthetic segments (decoded tokens)</h2>\n${figs}`;
}
