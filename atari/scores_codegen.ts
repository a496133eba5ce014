/**
 * Regenerates `atari/reference_scores.ts` from the shared `scores.json`, so that library code
 * carries the reference data without reading files outside the repository.
 *
 * Usage (from the repository root):
 *
 * ```sh
 * deno run --allow-read --allow-write atari/scores_codegen.ts [path/to/scores.json]
 * deno fmt atari/reference_scores.ts
 * ```
 *
 * The default input is `../shared/reference/scores.json` relative to the repository root.
 * `tests/atari_catalog_test.ts` checks that the generated module still equals
 * the JSON file.
 *
 * @module
 */

const HEADER = `/**
 * Reference Atari scores and per-game settings used by JOWA evaluation, generated from
 * \`shared/reference/scores.json\` by \`atari/scores_codegen.ts\`. Do not edit by hand; regenerate.
 * Field meanings are in {@linkcode REFERENCE_SCORES}'s \`_about\` entry.
 *
 * @module
 */

/** Which stage of the JOWA protocol a game belongs to. */
export type GameSplit = "pretrain" | "finetune";

/** Reference data of one game, as stored in \`scores.json\`. */
export interface GameReference {
  /** ale-py ROM id. */
  readonly rom: string;
  /** Pretraining (15 games) or held-out fine-tuning (5 games). */
  readonly split: GameSplit;
  /** Size of the game's minimal action set. */
  readonly validActions: number;
  /** Random-policy score (human-normalization low point). */
  readonly random: number;
  /** Human score (human-normalization high point). */
  readonly human: number;
  /** DQN reference return for DQN-normalized scores (fine-tuning games only). */
  readonly dqn?: number;
  /** Beam width K used at evaluation with planning horizon 2 (pretraining games only). */
  readonly beamWidth?: number;
  /** JOWA-150M return reported in the paper. */
  readonly jowa150m: number;
  /** Full-action ids (0..17) of the minimal action set in ALE's order. */
  readonly minimalActions: readonly number[];
}

/** The whole reference file: field documentation and per-game data. */
export interface ReferenceScores {
  /** Provenance and meaning of each field. */
  readonly _about: Readonly<Record<string, string>>;
  /** Per-game data keyed by game name (e.g. "SpaceInvaders"), in the file's order. */
  readonly games: Readonly<Record<string, GameReference>>;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Contents of \`scores.json\` (deeply frozen). */
export const REFERENCE_SCORES: ReferenceScores = deepFreeze(`;

/** Renders the TypeScript source of `atari/reference_scores.ts` for the parsed JSON `data`. */
export function renderReferenceScoresModule(data: unknown): string {
  const json = JSON.stringify(data, null, 2).replace(
    /\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g,
    (_m, items: string) => `[${items.split(/,\s*/).join(", ")}]`,
  );
  return `${HEADER}${json});\n`;
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const input = Deno.args[0] ?? new URL("../shared/reference/scores.json", root).pathname;
  const output = new URL("atari/reference_scores.ts", root);
  const data = JSON.parse(await Deno.readTextFile(input));
  await Deno.writeTextFile(output, renderReferenceScoresModule(data));
  console.log(`wrote ${output.pathname} from ${input}`);
}
