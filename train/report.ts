/**
 * The end-of-run report: one self-contained HTML file with inline SVG loss curves (one chart
 * per loss part, both stages on one step axis) and PNG images (data: URLs) of tokenizer
 * reconstructions next to the real frames.
 *
 * @module
 */
import { encodeBase64 } from "./base64.ts";
import type { MetricsRecord } from "./metrics_log.ts";
import { encodeGrayPng, upscaleGray } from "./png.ts";

/** A real frame and its reconstruction (84x84 uint8 each). */
export interface ReconstructionPair {
  label: string;
  real: Uint8Array;
  reconstructed: Uint8Array;
  size: number;
}

/** Inputs of {@link renderReport}. */
export interface ReportInput {
  title: string;
  /** Key facts shown in a table (config, adapter, timings, final losses). */
  facts: Record<string, string | number>;
  metrics: MetricsRecord[];
  reconstructions: ReconstructionPair[];
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Render the report as an HTML string. */
export function renderReport(r: ReportInput): string {
  const parts = new Set<string>();
  for (const m of r.metrics) for (const k of Object.keys(m.losses)) parts.add(k);
  const charts = [...parts].map((p) => lossChart(p, r.metrics));
  const facts = Object.entries(r.facts)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`).join("\n");
  const recon = r.reconstructions.map((p) => {
    const img = (px: Uint8Array) =>
      `<img alt="" src="data:image/png;base64,${
        encodeBase64(encodeGrayPng(upscaleGray(px, p.size, p.size, 2), 2 * p.size, 2 * p.size))
      }">`;
    return `<figure>${img(p.real)}${img(p.reconstructed)}<figcaption>${
      esc(p.label)
    }: real | reconstruction</figcaption></figure>`;
  }).join("\n");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 2px 10px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { display: inline-block; margin: 6px; } img { image-rendering: pixelated; margin: 1px; }
</style></head><body>
<h1>${esc(r.title)}</h1>
<table>${facts}</table>
<h2>Losses</h2>
<div class="charts">${charts.join("\n") || "<p>no metrics</p>"}</div>
<h2>Tokenizer reconstructions</h2>
${recon || "<p>none (no tokenizer in this run)</p>"}
</body></html>
`;
}

/** One SVG line chart of a loss part over steps; stage 2 points in another colour. */
export function lossChart(part: string, metrics: MetricsRecord[]): string {
  const W = 360, H = 200, L = 48, R = 10, T = 24, B = 28;
  const pts = metrics
    .filter((m) => Number.isFinite(m.losses[part]))
    .map((m) => ({ x: m.step, y: m.losses[part], stage: m.stage }));
  if (pts.length === 0) return "";
  const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const lines = [1, 2].map((stage) => {
    const s = pts.filter((p) => p.stage === stage);
    if (!s.length) return "";
    const d = s.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`)
      .join("");
    return `<path d="${d}" fill="none" stroke="${stage === 1 ? "#1f77b4" : "#d62728"}" ` +
      `stroke-width="1.5"/>`;
  }).join("");
  const fmt = (v: number) =>
    Math.abs(v) >= 100 || Math.abs(v) < 0.01 ? v.toExponential(1) : v.toFixed(3);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `viewBox="0 0 ${W} ${H}" font-size="10">` +
    `<text x="${W / 2}" y="14" text-anchor="middle" font-weight="bold">${esc(part)}</text>` +
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/>` +
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>` +
    `<text x="${L - 4}" y="${T + 4}" text-anchor="end">${fmt(y1)}</text>` +
    `<text x="${L - 4}" y="${H - B}" text-anchor="end">${fmt(y0)}</text>` +
    `<text x="${L}" y="${H - 10}">${x0}</text>` +
    `<text x="${W - R}" y="${H - 10}" text-anchor="end">step ${x1}</text>` +
    lines + `</svg>`;
}
