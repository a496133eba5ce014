/**
 * `deno task import`: convert the authors' released JOWA checkpoints into a checkpoint
 * directory of this toolkit (see checkpoint/import_jowa.ts). Needs neither Python nor torch,
 * nor a GPU.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runCli, UsageError } from "../util/cli.ts";
import { TorchCheckpointError } from "../models/torch/mod.ts";
import { importJowaCheckpoint, type ImportProgress, JowaImportError } from "./import_jowa.ts";

const HELP =
  `Import the authors' JOWA checkpoints (torch.save state dicts) as a checkpoint directory.

Usage: deno task import --world JOWA_150M.pt --tokenizer tokenizer.pt --out DIR [options]

  --world FILE      their world-action model (JOWA_40M.pt, JOWA_70M.pt, JOWA_150M.pt)
  --tokenizer FILE  their tokenizer.pt (its LPIPS network becomes DIR/lpips_vgg16.safetensors)
  --out DIR         the checkpoint directory to create (must not exist)
  --heads N         attention heads (default: num_heads of a meta.json beside the file, as the
                    parity fixtures have, else width / 64 as their 40M/70M/150M configs)
  --quiet           no progress lines
  -h, --help        this text

DIR then holds world_action.safetensors, tokenizer.safetensors (and lpips_vgg16.safetensors,
import.json), and loads like any checkpoint: deno task eval --checkpoint DIR ...
Every tensor is checked before anything is written; on any error DIR is not created.`;

/** Prints a line at every 10% of each file's tensor bytes. */
function progressPrinter(): (p: ImportProgress) => void {
  const next = new Map<string, number>();
  return (p) => {
    const pct = Math.floor((100 * p.bytesDone) / Math.max(1, p.bytesTotal));
    if (pct < (next.get(p.file) ?? 10) && p.tensorsDone < p.tensorsTotal) return;
    next.set(p.file, pct + 10);
    const mb = (b: number) => (b / 2 ** 20).toFixed(1);
    console.error(
      `${p.file}: ${Math.min(pct, 100)}% (${mb(p.bytesDone)} of ${mb(p.bytesTotal)} MiB, ` +
        `${p.tensorsDone}/${p.tensorsTotal} tensors)`,
    );
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      world: { type: "string" },
      tokenizer: { type: "string" },
      out: { type: "string" },
      heads: { type: "string" },
      quiet: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  for (const k of ["world", "tokenizer", "out"] as const) {
    if (!values[k]) throw new UsageError(`--${k} is required`);
  }
  let heads: number | undefined;
  if (values.heads !== undefined) {
    heads = Number(values.heads);
    if (!Number.isInteger(heads) || heads < 1) {
      throw new UsageError(`--heads ${values.heads}: expected a positive integer`);
    }
  }
  try {
    const r = await importJowaCheckpoint(values.world!, values.tokenizer!, values.out!, {
      heads,
      onProgress: values.quiet ? undefined : progressPrinter(),
    });
    const w = r.worldAction;
    console.log(
      `wrote ${r.dir}: world-action model ${w.name} (${w.layers} layers, width ${w.d}, ` +
        `${w.heads} heads, Q ensemble ${w.qEnsemble} x ${w.qHidden}), tokenizer ` +
        `(${r.tokenizer.vocab} codes)${r.lpips ? ", LPIPS weights" : ""}`,
    );
    return 0;
  } catch (e) {
    // The whole list of problems, not only its first line.
    if (e instanceof JowaImportError) console.error(`import: ${e.message}`);
    else if (e instanceof TorchCheckpointError) console.error(`import: ${e.message}`);
    else throw e;
    return 1;
  }
}

if (import.meta.main) await runCli(main, { prefix: "import: ", usageHint: "see --help" });
