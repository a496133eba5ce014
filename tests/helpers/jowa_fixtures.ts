/**
 * The JOWA parity fixtures (tests/fixtures/jowa, made by the authors' own classes): `.npy`
 * arrays, meta.json, and our networks loaded from their state dicts.
 */
import { parseNpyHeader } from "../../offline/npy.ts";
import { loadAuthorsTokenizer, loadAuthorsWorldModel } from "../../checkpoint/import_jowa.ts";
import type { WorldActionModel } from "../../models/world_action/model.ts";
import type { Tokenizer } from "../../models/tokenizer/model.ts";

/** The fixture directory. */
export const JOWA_FIXTURES = new URL("../fixtures/jowa/", import.meta.url).pathname;

/** An array read from a fixture `.npy`: float32 as Float32Array, integers and bools as numbers. */
export interface Npy {
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Read `tests/fixtures/jowa/<name>` (float32, int64 within i32 range, or bool). */
export function readNpy(name: string): Npy {
  const file = JOWA_FIXTURES + name;
  const bytes = Deno.readFileSync(file);
  const h = parseNpyHeader(bytes, file)!;
  const body = bytes.slice(h.headerBytes, h.headerBytes + h.dataBytes);
  const n = h.shape.reduce((a, b) => a * b, 1);
  if (h.dtype === "float32") return { shape: h.shape, data: new Float32Array(body.buffer, 0, n) };
  if (h.dtype === "int64") {
    const v = new BigInt64Array(body.buffer, 0, n);
    return { shape: h.shape, data: Int32Array.from(v, (x) => Number(x)) };
  }
  if (h.dtype === "bool" || h.dtype === "uint8") {
    return { shape: h.shape, data: Int32Array.from(body) };
  }
  throw new Error(`${file}: unexpected dtype ${h.dtype}`);
}

/** meta.json of the fixtures. */
export function jowaMeta(): Record<string, unknown> & {
  transformer_config: { num_heads: number };
  plan: { first_action: number; greedy_action: number; horizon: number; beam_width: number };
} {
  return JSON.parse(Deno.readTextFileSync(JOWA_FIXTURES + "meta.json"));
}

/** Our world-action model with the fixture's weights (their config has 2 heads at width 64). */
export function fixtureWorldModel(): Promise<WorldActionModel> {
  return loadAuthorsWorldModel(JOWA_FIXTURES + "world_model.pt", {
    heads: jowaMeta().transformer_config.num_heads,
  });
}

/** Our tokenizer with the fixture's weights. */
export function fixtureTokenizer(): Promise<Tokenizer> {
  return loadAuthorsTokenizer(JOWA_FIXTURES + "tokenizer.pt");
}
