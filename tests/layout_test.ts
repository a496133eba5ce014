/**
 * The repository layout, read from the imports: product folders (atari, checkpoint, envs, eval,
 * kernels, models, offline, train, util, ...) form no loop between top-level folders, never
 * import tests/, bench/, scripts/ or the root mod.ts, and a private `_name.ts` file is imported
 * only from its own folder. tests/, bench/, scripts/ and the root files may import anything.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** Folders that may import anything: they are not part of the library. */
const FREE = new Set(["tests", "bench", "scripts"]);
/**
 * Never scanned: dependencies, tool and run outputs (deno.json's excludes), and hidden folders
 * (.git, .gpu, .venv, a developer's ignored scratch folder).
 */
const SKIP = new Set(["node_modules", "runs", "data", "shared"]);

/**
 * Relative specifiers a TypeScript source depends on: static `import`/`export ... from`
 * statements (which deno fmt starts on their own line, so JSDoc examples behind ` * ` do not
 * count), side-effect imports, dynamic `import("./x")` and worker URLs
 * `new URL("./x.ts", import.meta.url)`.
 */
export function relativeImports(source: string): string[] {
  const patterns = [
    /^[ \t]*(?:import|export)\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']/gm,
    /^[ \t]*import\s*["'](\.{1,2}\/[^"']+)["']/gm,
    /\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g,
    /\bnew URL\(\s*["'](\.{1,2}\/[^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g,
  ];
  const out = new Set<string>();
  for (const re of patterns) for (const m of source.matchAll(re)) out.add(m[1]);
  return [...out];
}

/** One cycle of the directed graph (as a closed node list), or null when it has none. */
export function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    state.set(n, "open");
    stack.push(n);
    for (const m of [...(graph.get(n) ?? [])].sort()) {
      if (state.get(m) === "open") return [...stack.slice(stack.indexOf(m)), m];
      if (!state.has(m)) {
        const c = visit(m);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, "done");
    return null;
  };
  for (const n of [...graph.keys()].sort()) {
    if (!state.has(n)) {
      const c = visit(n);
      if (c) return c;
    }
  }
  return null;
}

/** Every .ts file of the repository, as a path relative to its root with "/" separators. */
function sourceFiles(dir = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory() && !SKIP.has(e.name) && !e.name.startsWith(".")) {
      out.push(...sourceFiles(rel));
    } else if (e.isFile() && e.name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

/** Top-level folder of a repository-relative path ("." for files at the root). */
function topOf(rel: string): string {
  return rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : ".";
}

interface Edge {
  from: string;
  to: string;
}

function importEdges(): Edge[] {
  const edges: Edge[] = [];
  for (const from of sourceFiles()) {
    const text = readFileSync(path.join(ROOT, from), "utf8");
    for (const spec of relativeImports(text)) {
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec));
      edges.push({ from, to });
    }
  }
  return edges;
}

const isProduct = (top: string) => top !== "." && !FREE.has(top);

Deno.test("layout: the import reader and cycle finder see what they must", () => {
  const src = [
    '/** ```ts\n * import { x } from "../not_an_edge.ts";\n * ``` */',
    'import { a } from "./a.ts";',
    "import {\n  b,\n  type C,\n} from '../b/b.ts';",
    'export { d } from "../d/mod.ts";',
    'export * as e from "./e.ts";',
    'import "./side_effect.ts";',
    'const m = await import("../dyn/x.ts");',
    'new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });',
    'const url = new URL("../shared/reference/scores.json", import.meta.url);',
    'import { assert } from "node:assert/strict";',
  ].join("\n");
  assert.deepStrictEqual(relativeImports(src).sort(), [
    "../b/b.ts",
    "../d/mod.ts",
    "../dyn/x.ts",
    "./a.ts",
    "./e.ts",
    "./side_effect.ts",
    "./worker.ts",
  ]);
  const g = (o: Record<string, string[]>) =>
    new Map(Object.entries(o).map(([k, v]) => [k, new Set(v)]));
  assert.equal(findCycle(g({ a: ["b"], b: ["c"], c: [] })), null);
  assert.deepStrictEqual(findCycle(g({ a: ["b"], b: ["c"], c: ["a"] })), ["a", "b", "c", "a"]);
  assert.deepStrictEqual(findCycle(g({ a: ["b"], b: ["b"] })), ["b", "b"]);
});

Deno.test("layout: no import loop between top-level product folders", () => {
  const edges = importEdges();
  assert.ok(edges.length > 100, `only ${edges.length} relative imports found: reader broken?`);
  const graph = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    const [a, b] = [topOf(from), topOf(to)];
    if (a === b || !isProduct(a) || !isProduct(b)) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    graph.get(a)!.add(b);
  }
  const cycle = findCycle(graph);
  if (cycle) {
    const why = cycle.slice(1).map((b, i) => {
      const a = cycle[i];
      const e = edges.find((e) => topOf(e.from) === a && topOf(e.to) === b)!;
      return `  ${a} -> ${b}: ${e.from} imports ${e.to}`;
    });
    assert.fail(`folder import loop ${cycle.join(" -> ")}:\n${why.join("\n")}`);
  }
});

Deno.test("layout: product folders import neither tests/, bench/, scripts/ nor the root mod.ts", () => {
  const bad = importEdges().filter(({ from, to }) =>
    isProduct(topOf(from)) && !isProduct(topOf(to))
  ).map(({ from, to }) => `${from} imports ${to}`);
  assert.deepStrictEqual(bad, []);
});

Deno.test("layout: a private _name.ts file is imported only from its own folder", () => {
  const bad = importEdges().filter(({ from, to }) =>
    path.posix.basename(to).startsWith("_") && !FREE.has(topOf(from)) &&
    path.posix.dirname(from) !== path.posix.dirname(to)
  ).map(({ from, to }) => `${from} imports ${to}`);
  assert.deepStrictEqual(bad, []);
});
