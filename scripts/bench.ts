/**
 * Runs the benchmarks: every `bench/*_bench.ts` (or those whose name contains a filter),
 * each as its own process, passing extra flags through.
 *
 *   deno task bench [filter...] [flags for every bench]     e.g. bench gpu --json out.json
 *   deno task bench [filter...] [-- flags for every bench]
 *
 * Filters are the leading arguments up to the first one that starts with "-" (or up to "--");
 * everything from there on, flag values included, goes to the benchmarks.
 */
export function splitBenchArgs(
  args: readonly string[],
): { filters: string[]; passThrough: string[] } {
  let cut = args.findIndex((a) => a.startsWith("-"));
  if (cut < 0) cut = args.length;
  const rest = args.slice(cut);
  return { filters: args.slice(0, cut), passThrough: rest[0] === "--" ? rest.slice(1) : rest };
}

if (import.meta.main) {
  const { filters, passThrough } = splitBenchArgs(Deno.args);
  if (filters.length === 0 && (passThrough.includes("--help") || passThrough.includes("-h"))) {
    console.log(`deno task bench [filter...] [flags]

Runs each bench/*_bench.ts whose file name contains one of the filters (all when none).
Flags after the filters (or after --) go to every benchmark, e.g.
  deno task bench gpu --json out.json      deno task bench world_model -- --quick
Each benchmark has its own --help (deno task bench gpu --help).`);
    Deno.exit(0);
  }
  await main(filters, passThrough);
}

async function main(filters: string[], passThrough: string[]): Promise<void> {
  const files = [...Deno.readDirSync(new URL("../bench/", import.meta.url))]
    .map((e) => e.name)
    .filter((n) => n.endsWith("_bench.ts"))
    .filter((n) => filters.length === 0 || filters.some((f) => n.includes(f)))
    .sort();
  if (files.length === 0) {
    console.error(`no benchmark matches ${filters.join(", ")}`);
    Deno.exit(2);
  }
  let failed = 0;
  for (const f of files) {
    console.log(`\n=== ${f}`);
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `bench/${f}`, ...passThrough],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) failed++;
  }
  Deno.exit(failed ? 1 : 0);
}
