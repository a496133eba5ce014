/**
 * metrics.jsonl: one JSON object per logging interval (step, stage, each loss part, grad norm,
 * lr, steps/s). Appended line by line; on resume, lines past the checkpoint's step are dropped
 * so the file reads as one uninterrupted run.
 *
 * @module
 */
import * as fs from "node:fs";

/** One line of metrics.jsonl. */
export interface MetricsRecord {
  /** Global step (stage 1 and 2 count on). */
  step: number;
  stage: 1 | 2;
  /** Mean of each loss part over the interval's steps. */
  losses: Record<string, number>;
  /** Global gradient norm (before clipping) of the interval's last step, per optimizer. */
  gradNorm: Record<string, number>;
  lr: Record<string, number>;
  stepsPerSec: number;
  /** Seconds since the run (or its resumption) started. */
  elapsed: number;
}

/** Appends records to metrics.jsonl. */
export class MetricsLog {
  /** @param file the metrics.jsonl path. */
  constructor(readonly file: string) {}

  /** Append one record (flushed immediately: a crash loses at most the line being written). */
  append(r: MetricsRecord): void {
    fs.appendFileSync(this.file, JSON.stringify(r) + "\n");
  }

  /** Every record (a torn last line from a crash is skipped). */
  read(): MetricsRecord[] {
    return readMetrics(this.file);
  }

  /** Keep only records with step <= `step` (called when resuming from that checkpoint). */
  truncateAfter(step: number): void {
    if (!fs.existsSync(this.file)) return;
    const kept = this.read().filter((r) => r.step <= step);
    fs.writeFileSync(this.file, kept.map((r) => JSON.stringify(r) + "\n").join(""));
  }
}

/** Parse a metrics.jsonl file; unparsable lines (a torn write) are skipped. */
export function readMetrics(file: string): MetricsRecord[] {
  if (!fs.existsSync(file)) return [];
  const out: MetricsRecord[] = [];
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch { /* torn line */ }
  }
  return out;
}
