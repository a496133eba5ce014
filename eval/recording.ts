/**
 * Recordings of evaluation episodes: each GIF frame shows the real observation on the left
 * and, to its right, the H observations the planner imagined along its best path (decoded by
 * the tokenizer), separated by a white bar.
 *
 * @module
 */
import * as path from "node:path";
import { encodeGif } from "./gif.ts";
import type { EpisodeRecording } from "./episode_runner.ts";

const BAR = 2;

/** Lay out one step: real frame | imagined 1 | ... | imagined H, as bytes. */
export function compositeFrame(
  real: Uint8Array,
  imagined: Float32Array | null,
  horizon: number,
  size = 84,
): { data: Uint8Array; width: number } {
  const panels = 1 + horizon;
  const width = panels * size + (panels - 1) * BAR;
  const data = new Uint8Array(width * size).fill(255);
  for (let p = 0; p < panels; p++) {
    const x0 = p * (size + BAR);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let v = 0;
        if (p === 0) v = real[y * size + x];
        else if (imagined) {
          const f = imagined[(p - 1) * size * size + y * size + x];
          v = Math.max(0, Math.min(255, Math.round((f + 1) * 127.5)));
        }
        data[y * width + x0 + x] = v;
      }
    }
  }
  return { data, width };
}

/** Write a recording as `<dir>/<game>-episode<k>.gif`; returns the path (null when empty). */
export async function writeRecording(
  dir: string,
  game: string,
  rec: EpisodeRecording,
  horizon: number,
): Promise<string | null> {
  if (rec.frames.length === 0) return null;
  await Deno.mkdir(dir, { recursive: true });
  const frames = rec.frames.map((f, i) => compositeFrame(f, rec.imagined[i], horizon));
  const gif = encodeGif(frames.map((f) => f.data), frames[0].width, 84);
  const file = path.join(dir, `${game}-episode${rec.episode}.gif`);
  await Deno.writeFile(file, gif);
  return file;
}
