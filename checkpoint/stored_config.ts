/**
 * The network config a checkpoint stores as JSON under its `config` metadata entry, read and
 * checked before anything is built from it: valid JSON, the right kind of network (a
 * world-action model's config has `obsVocab`, a tokenizer's has `resolution` and `down`, so
 * swapped files are told apart), every field at its type. Problems are one-line
 * {@link CheckpointError}s naming the file.
 *
 * @module
 */
import { parseWorldActionConfig, type WorldActionConfig } from "../models/world_action/configs.ts";
import { parseTokenizerConfig, type TokenizerConfig } from "../models/tokenizer/config.ts";

/** A user-facing problem with a checkpoint (printed as one line, without a stack trace). */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** The networks a checkpoint file can hold. */
export type ConfigKind = "world-action" | "tokenizer";

const NOUN: Record<ConfigKind, string> = {
  "world-action": "a world-action model",
  tokenizer: "a tokenizer",
};

/** Which network a parsed config describes, from its distinguishing fields; null if neither. */
export function configKind(raw: unknown): ConfigKind | null {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return null;
  if ("obsVocab" in raw) return "world-action";
  if ("resolution" in raw && "down" in raw) return "tokenizer";
  return null;
}

/** Parse a `config` metadata entry: JSON, or a CheckpointError naming the file. */
export function parseConfigJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(
      `${file}: its config metadata is not valid JSON (${(e as Error).message.split("\n")[0]})`,
    );
  }
}

/** The stored config of `file` checked as `kind` (text: the `config` metadata entry). */
export function checkConfig(file: string, text: string, kind: "world-action"): WorldActionConfig;
/** The stored config of `file` checked as `kind` (text: the `config` metadata entry). */
export function checkConfig(file: string, text: string, kind: "tokenizer"): TokenizerConfig;
export function checkConfig(
  file: string,
  text: string,
  kind: ConfigKind,
): WorldActionConfig | TokenizerConfig {
  const raw = parseConfigJson(file, text);
  const found = configKind(raw);
  if (found !== kind) {
    const what = found ? `holds ${NOUN[found]} (files swapped?)` : "holds no jowa network config";
    throw new CheckpointError(`${file}: expected ${NOUN[kind]} checkpoint, but it ${what}`);
  }
  try {
    return kind === "world-action" ? parseWorldActionConfig(raw) : parseTokenizerConfig(raw);
  } catch (e) {
    throw new CheckpointError(`${file}: bad stored config: ${(e as Error).message}`);
  }
}

/** The `config` metadata entry of a safetensors file, reading only its header. */
export async function storedConfigText(file: string): Promise<string> {
  const f = await Deno.open(file);
  try {
    const head = new Uint8Array(8);
    if ((await f.read(head)) !== 8) throw new CheckpointError(`${file}: not a safetensors file`);
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (n > 100_000_000) throw new CheckpointError(`${file}: not a safetensors file`);
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = await f.read(buf.subarray(got));
      if (r === null) throw new CheckpointError(`${file}: truncated header`);
      got += r;
    }
    let header: { __metadata__?: Record<string, unknown> };
    try {
      header = JSON.parse(new TextDecoder().decode(buf));
    } catch {
      throw new CheckpointError(`${file}: not a safetensors file (its header is not JSON)`);
    }
    const config = header?.__metadata__?.config;
    if (typeof config !== "string") {
      throw new CheckpointError(`${file}: no config in its metadata (not a jowa checkpoint?)`);
    }
    return config;
  } finally {
    f.close();
  }
}

/** The `config` metadata entry of a safetensors file, parsed (JSON) but not checked. */
export async function storedConfig(file: string): Promise<unknown> {
  return parseConfigJson(file, await storedConfigText(file));
}
