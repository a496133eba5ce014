/**
 * `deno task pretrain` (= `deno run -A train/pretrain.ts`): JOWA pretraining from the command
 * line. See `--help` and train/pretrainer.ts. Exit status: 0 done, 2 bad usage or run
 * directory, 3 non-finite loss, 130 interrupted (Ctrl-C or --stop-at; a checkpoint was
 * written), 1 any other error (one line).
 *
 * @module
 */
import * as fs from "node:fs";
import { HELP, parsePretrainArgs, type PretrainConfig, resolveConfig } from "./pretrain_options.ts";
import { pretrain, RunError } from "./pretrainer.ts";
import { runCli, UsageError } from "../util/cli.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { requireUsableAdapter } from "../kernels/core/device.ts";
import { checkF16Support } from "../kernels/core/precision.ts";
import { DistributedError } from "../distributed/mod.ts";
import { loadRunConfig, runTrainingCli } from "./_cli.ts";

async function main(): Promise<number> {
  const args = parsePretrainArgs(Deno.args);
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  const cfg: PretrainConfig = loadRunConfig(args.resume, args.overrides, resolveConfig);
  if (cfg.data !== null && !fs.existsSync(cfg.data)) {
    throw new UsageError(`--data ${cfg.data}: no such directory`);
  }
  if (cfg.lpips && !fs.statSync(cfg.lpips, { throwIfNoEntry: false })?.isFile()) {
    throw new UsageError(`--lpips ${cfg.lpips}: no such file`);
  }
  return await runTrainingCli(
    ({ signal, comm }) => pretrain(cfg, args.resume, { signal, comm }),
    // Refuse an OpenGL CPU adapter up front: training on it makes no visible progress.
    async () => {
      const { ctx } = await initRuntime();
      requireUsableAdapter(ctx);
      if (cfg.precision === "f16") checkF16Support(ctx.hasF16);
    },
  );
}

// Every failure is one line (the stack too with JOWA_DEBUG=1); bad usage and run-directory
// problems exit 2, anything else 1.
await runCli(main, { usageErrors: [RunError], userErrors: [DistributedError], catchAll: true });
