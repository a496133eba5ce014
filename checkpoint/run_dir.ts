/**
 * The run directory of `deno task pretrain`:
 *
 * ```
 * runs/<name>/
 *   config.json            the resolved options (written at start, kept on resume)
 *   metrics.jsonl          one JSON line per logging interval
 *   checkpoints/
 *     step-000500/         complete checkpoints only (built under a temp name, then renamed)
 *       state.json         step, stage, seed, sampler position, optimizer steps (written last)
 *       world_action.safetensors, tokenizer.safetensors, optim_*.safetensors
 *     latest.json          {"step": 500, "dir": "step-000500"} (replaced atomically)
 *   tokens/<Game>/         stage-2 token stores (frames tokenized by the frozen tokenizer)
 *   nonfinite.json         the diagnostic of a run stopped by a non-finite loss
 *   report.html            loss curves and tokenizer reconstructions
 * ```
 *
 * @module
 */
import * as path from "node:path";
import * as fs from "node:fs";

/** Paths inside one run directory. */
export class RunDir {
  /** @param root the run directory (`runs/<name>`). */
  constructor(readonly root: string) {}

  /** Resolved options. */
  get config(): string {
    return path.join(this.root, "config.json");
  }

  /** Metrics, one JSON object per line. */
  get metrics(): string {
    return path.join(this.root, "metrics.jsonl");
  }

  /** Checkpoint parent directory. */
  get checkpoints(): string {
    return path.join(this.root, "checkpoints");
  }

  /** Pointer to the newest complete checkpoint. */
  get latest(): string {
    return path.join(this.checkpoints, "latest.json");
  }

  /** Token stores of stage 2. */
  get tokens(): string {
    return path.join(this.root, "tokens");
  }

  /** Non-finite loss diagnostic. */
  get nonfinite(): string {
    return path.join(this.root, "nonfinite.json");
  }

  /** The HTML report. */
  get report(): string {
    return path.join(this.root, "report.html");
  }

  /** Directory of the checkpoint at `step`. */
  checkpoint(step: number): string {
    return path.join(this.checkpoints, checkpointName(step));
  }

  /**
   * Whether a run was started here (config.json) but never completed a checkpoint: a first
   * attempt that failed or was killed early, which can only be started over.
   */
  neverCheckpointed(): boolean {
    return fs.existsSync(this.config) && this.latestCheckpoint() === null;
  }

  /**
   * Remove what an attempt wrote besides its config and collected data (`data/`): partial
   * checkpoints, metrics, stage-2 token stores, the non-finite diagnostic and the report.
   * Only for a run with no complete checkpoint, which starts over from step 0.
   */
  clearProgress(): void {
    if (this.latestCheckpoint() !== null) {
      throw new Error(`${this.root}: has a complete checkpoint; resume it instead of clearing it`);
    }
    for (const p of [this.checkpoints, this.metrics, this.tokens, this.nonfinite, this.report]) {
      fs.rmSync(p, { recursive: true, force: true });
    }
  }

  /** Create the directory tree. */
  create(): void {
    fs.mkdirSync(this.checkpoints, { recursive: true });
  }

  /**
   * Directory of the newest complete checkpoint, or null. Follows latest.json; falls back to
   * the highest `step-*` directory holding a state.json (a crash between the rename and the
   * pointer update leaves a complete but unpointed checkpoint).
   */
  latestCheckpoint(): string | null {
    const dirs = this.completeCheckpoints();
    return dirs.length ? dirs[dirs.length - 1] : null;
  }

  /** Complete checkpoint directories, oldest first. */
  completeCheckpoints(): string[] {
    if (!fs.existsSync(this.checkpoints)) return [];
    return fs.readdirSync(this.checkpoints)
      .filter((n) => /^step-\d+$/.test(n))
      .sort()
      .map((n) => path.join(this.checkpoints, n))
      .filter((d) => fs.existsSync(path.join(d, "state.json")));
  }
}

/** `step-000500` (zero-padded so names sort by step). */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

/** Write a file atomically: temp file in the same directory, fsync, rename. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${Deno.pid}.tmp`;
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeSync(fd, typeof data === "string" ? new TextEncoder().encode(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** fsync a directory (makes renames inside it durable); best effort. */
export function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch { /* not every platform can open a directory */ }
}
