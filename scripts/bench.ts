/**
 * Runs the benchmarks: every `bench/*_bench.ts` (or those whose name contains a filter),
 * each as its own process, passing extra flags through.
 *
 *   deno task bench [filter...] [-- flags for every bench]
 */
const sep = Deno.args.indexOf("--");
const filters = sep < 0 ? Deno.args : Deno.args.slice(0, sep);
const passThrough = sep < 0 ? [] : Deno.args.slice(sep + 1);
if (filters.includes("--help") || filters.includes("-h")) {
  console.log(`deno task bench [filter...] [-- flags]

Runs each bench/*_bench.ts whose file name contains one of the filters (all when none).
Flags after -- go to every benchmark (e.g. -- --quick). Each benchmark has its own --help.`);
  Deno.exit(0);
}
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
