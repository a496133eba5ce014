/**
 * `deno task params`: parameter counts of every world-action configuration by part
 * (embeddings, backbone, each head, target Q head) from the shape spec that the model's
 * constructor checks itself against, so nothing large is allocated. The tokenizer is counted
 * by constructing models/tokenizer/model.ts's `Tokenizer` (a few million parameters) when a
 * WebGPU adapter is available.
 *
 * Usage: deno run -A models/params_report.ts [--json] [--help]
 *
 * @module
 */
import { lpipsParameterShapes } from "./tokenizer/lpips.ts";
import { parseArgs } from "node:util";
import { GpuUnavailableError } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { runCli } from "../util/cli.ts";
import { TOKENIZER_CONFIGS } from "./tokenizer/config.ts";
import { Tokenizer } from "./tokenizer/model.ts";
import { CONFIGS, type WorldActionConfig } from "./world_action/configs.ts";
import {
  countByPart,
  countParams,
  targetQSpec,
  worldActionParamSpec,
} from "./world_action/spec.ts";

/** One configuration's counts. */
export interface ParamsRow {
  config: string;
  embeddings: number;
  backbone: number;
  head_obs: number;
  head_reward: number;
  head_end: number;
  head_q: number;
  /** World-action model total (trainable). */
  total: number;
  /** Target Q head (a copy, not trained). */
  target_q: number;
}

/** Counts of one configuration from its shape spec. */
export function paramsRow(c: WorldActionConfig): ParamsRow {
  const spec = worldActionParamSpec(c);
  return {
    config: c.name,
    ...countByPart(spec),
    total: countParams(spec),
    target_q: countParams(targetQSpec(c)),
  };
}

/** Tokenizer parameter counts by config name, or why there are none (no WebGPU adapter). */
async function tokenizerCounts(): Promise<Record<string, number> | string> {
  try {
    await initRuntime();
  } catch (e) {
    if (!(e instanceof GpuUnavailableError)) throw e;
    return `not counted: ${e.message.split("\n")[0]}`;
  }
  const out: Record<string, number> = {};
  for (const [name, cfg] of Object.entries(TOKENIZER_CONFIGS)) {
    out[name] = new Tokenizer(cfg).parameterCount();
  }
  return out;
}

const HELP = `Parameter counts of the JOWA world-action configurations and the tokenizer.

Usage: deno task params [--json]

  --json      print the counts as JSON
  -h, --help  this text`;

const fmt = (n: number) => n.toLocaleString("en-US");

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const rows = Object.values(CONFIGS).map(paramsRow);
  const tok = await tokenizerCounts();
  if (values.json) {
    console.log(JSON.stringify({ worldAction: rows, tokenizer: tok }, null, 2));
  } else {
    const cols = [
      "config",
      "embeddings",
      "backbone",
      "head_obs",
      "head_reward",
      "head_end",
      "head_q",
      "total",
      "target_q",
    ] as const;
    const table = [
      [...cols],
      ...rows.map((r) => cols.map((c) => (c === "config" ? r.config : fmt(r[c] as number)))),
    ];
    const widths = cols.map((_, i) => Math.max(...table.map((row) => row[i].length)));
    for (const row of table) {
      console.log(
        row.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i])))
          .join("  "),
      );
    }
    console.log("\ntotal = trainable world-action parameters; target_q is a non-trained copy.");
    if (typeof tok === "string") console.log(`tokenizer: ${tok}`);
    else {
      for (const [name, n] of Object.entries(tok)) {
        console.log(`tokenizer (${name}): ${fmt(n)} (frozen after stage 1; not in total)`);
      }
      const paper = tok.paper;
      if (paper !== undefined) {
        const vgg = [...lpipsParameterShapes().values()]
          .reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
        console.log(`LPIPS VGG16 (frozen, only for the perceptual loss): ${fmt(vgg)}`);
        for (const r of rows.filter((r) => r.config !== "tiny")) {
          const all = r.total + paper + vgg + r.target_q;
          console.log(
            `JOWA-${r.config}: world-action ${fmt(r.total)} + tokenizer ${fmt(paper)} = ${
              fmt(r.total + paper)
            }; with LPIPS and the target Q head ${fmt(all)}`,
          );
        }
        // The paper's size names match the last figure (37.9M, 72.2M, 146.5M) better than the
        // trainable counts: it appears to count every network of the agent.
      }
    }
  }
  return 0;
}

if (import.meta.main) await runCli(main);
