/**
 * Regenerates `atari/public_eval_settings.ts` from the shared `public_eval_settings.json` (the
 * per-game context length, beam width, horizon and raw episode returns of the authors' public
 * release), so that library code carries the data without reading files outside the repository.
 *
 * Usage (from the repository root):
 *
 * ```sh
 * deno run --allow-read --allow-write atari/public_settings_codegen.ts [path/to/public_eval_settings.json]
 * deno fmt atari/public_eval_settings.ts
 * ```
 *
 * The default input is `../shared/reference/public_eval_settings.json` relative to the
 * repository root. `tests/eval_public_protocol_test.ts` checks that the generated module still
 * equals the JSON file.
 *
 * @module
 */

const HEADER = `/**
 * The authors' public evaluation settings and raw scores per model size and game (their
 * \`eval/JOWA_<size>_raw_scores.json\`), generated from
 * \`shared/reference/public_eval_settings.json\` by \`atari/public_settings_codegen.ts\`.
 * Do not edit by hand; regenerate. Field meanings are in {@linkcode PUBLIC_EVAL_SETTINGS}'s
 * \`_about\` entry; eval/public_protocol.ts gives typed access.
 *
 * @module
 */

/** One game's settings and published returns for one model size. */
export interface PublicGameSettings {
  /** Their buffer_size: timesteps of context kept (planning window = min(8 - horizon, context)). */
  readonly context: number;
  /** Beam width K of their planner. */
  readonly beam_width: number;
  /** Planning horizon H. */
  readonly horizon: number;
  /** The episode returns they report with these settings (atari-py 0.2.5 ROMs). */
  readonly raw_scores: readonly number[];
}

/** The whole file: provenance and per-model, per-game settings. */
export interface PublicEvalSettings {
  /** Provenance and meaning of the fields. */
  readonly _about: string;
  /** Keyed by model ("JOWA-40M", "JOWA-70M", "JOWA-150M"), then by game name. */
  readonly models: Readonly<Record<string, Readonly<Record<string, PublicGameSettings>>>>;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Contents of \`public_eval_settings.json\` (deeply frozen). */
export const PUBLIC_EVAL_SETTINGS: PublicEvalSettings = deepFreeze(`;

/** Renders the TypeScript source of `atari/public_eval_settings.ts` for the parsed JSON. */
export function renderPublicSettingsModule(data: unknown): string {
  const json = JSON.stringify(data, null, 2).replace(
    /\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g,
    (_m, items: string) => `[${items.split(/,\s*/).join(", ")}]`,
  );
  return `${HEADER}${json});\n`;
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const input = Deno.args[0] ??
    new URL("../shared/reference/public_eval_settings.json", root).pathname;
  const output = new URL("atari/public_eval_settings.ts", root);
  const data = JSON.parse(await Deno.readTextFile(input));
  await Deno.writeTextFile(output, renderPublicSettingsModule(data));
  console.log(`wrote ${output.pathname} from ${input}`);
}
