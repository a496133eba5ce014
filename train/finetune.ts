/**
 * `deno task finetune` (= `deno run -A train/finetune.ts`): fine-tune a pretrained JOWA on a
 * held-out game from the command line. See `--help` and train/finetuner.ts. Exit status: 0
 * done, 2 bad usage, input or run directory (nothing written), 3 non-finite loss, 130
 * interrupted (Ctrl-C or --stop-at; a checkpoint was written), 1 any other error (one line).
 *
 * @module
 */
import {
  FINETUNE_HELP,
  type FinetuneConfig,
  parseFinetuneArgs,
  resolveFinetuneConfig,
} from "./finetune_options.ts";
import { finetune } from "./finetuner.ts";
import { FinetuneInputError } from "./finetune_inputs.ts";
import { RunError } from "./trainer.ts";
import { runCli } from "../util/cli.ts";
import { CheckpointError } from "../checkpoint/loader.ts";
import { EnvError } from "../envs/python_env.ts";
import { DistributedError } from "../distributed/mod.ts";
import { loadRunConfig, runTrainingCli } from "./_cli.ts";

async function main(): Promise<number> {
  const args = parseFinetuneArgs(Deno.args);
  if (args.help) {
    console.log(FINETUNE_HELP);
    return 0;
  }
  const cfg: FinetuneConfig = loadRunConfig(args.resume, args.overrides, resolveFinetuneConfig);
  return await runTrainingCli(({ signal, comm }) => finetune(cfg, args.resume, { signal, comm }));
}

await runCli(main, {
  usageErrors: [RunError, FinetuneInputError],
  userErrors: [CheckpointError, EnvError, DistributedError],
  catchAll: true,
});
