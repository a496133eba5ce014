/**
 * Writes `report.html` at the end of a pretraining run: the facts of the run, the loss curves
 * from metrics.jsonl and a few tokenizer reconstructions of frames drawn from the dataset.
 *
 * @module
 */
import { readAll } from "../kernels/core/tensor.ts";
import type { WorldActionConfig } from "../models/world_action/configs.ts";
import { toBytes, type Tokenizer } from "../models/tokenizer/model.ts";
import { FRAME_BYTES, openSampler } from "../offline/mod.ts";
import { readMetrics } from "./metrics_log.ts";
import type { PretrainConfig } from "./pretrain_options.ts";
import { type ReconstructionPair, renderReport } from "./report.ts";
import { type RunDir, writeFileAtomic } from "../checkpoint/run_dir.ts";

/** What the report shows besides metrics.jsonl. */
export interface PretrainReportInput {
  cfg: PretrainConfig;
  wcfg: WorldActionConfig;
  tok: Tokenizer | null;
  /** Frame store directories (reconstructions are drawn from them). */
  dirs: string[];
  adapter: string;
  seconds: number;
  lastLosses: Record<string, number>;
}

/** Render and write `<run>/report.html`. */
export async function writePretrainReport(run: RunDir, r: PretrainReportInput): Promise<void> {
  const reconstructions = r.tok ? await reconstruct(r.tok, r.dirs) : [];
  const facts: Record<string, string | number> = {
    run: run.root,
    adapter: r.adapter,
    "world-action model":
      `${r.cfg.model} (layers ${r.wcfg.layers}, d ${r.wcfg.d}, vocab ${r.wcfg.obsVocab})`,
    tokenizer: r.tok ? r.cfg.tokenizer : "none (token dataset)",
    data: r.cfg.data ?? `collected: ${r.cfg.collectGames.join(", ")} x ${r.cfg.collectSteps}`,
    steps: `${r.cfg.stage1Steps} (stage 1) + ${r.cfg.stage2Steps} (stage 2), batch ${r.cfg.batch}`,
    "wall time": `${r.seconds.toFixed(1)} s`,
  };
  for (const [k, v] of Object.entries(r.lastLosses)) facts[`final ${k}`] = v.toFixed(4);
  const html = renderReport({
    title: `JOWA pretraining: ${r.cfg.name}`,
    facts,
    metrics: readMetrics(run.metrics),
    reconstructions,
  });
  writeFileAtomic(run.report, html);
}

/** Real frames (one per game, up to 4) and their reconstructions through the tokens. */
async function reconstruct(tok: Tokenizer, dirs: string[]): Promise<ReconstructionPair[]> {
  const n = 4; // a fixed count reuses compiled shapes when the tokenizer batch is 4
  const s = await openSampler(dirs, { batchSize: n, segmentLength: 1, seed: 12345, workers: 0 });
  try {
    const b = await s.next();
    const frames = b.frames!;
    const ids = tok.encode(frames);
    const recon = tok.decode(ids);
    const bytes = await toBytes(recon);
    await readAll([ids]);
    ids.dispose();
    recon.dispose();
    return Array.from({ length: n }, (_, i) => ({
      label: `${s.games[b.gameIndex[i]]} row ${b.starts[i]}`,
      real: frames.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES),
      reconstructed: bytes.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES),
      size: 84,
    }));
  } finally {
    s.close();
  }
}
