/**
 * Float64 CPU references of the tokenizer's ops (convolution, nearest upsampling, group norm,
 * vector quantization, full softmax attention over pixels), written as plain loops that share
 * no index math with the WGSL generators.
 */

/** A float64 NCHW image batch. */
export interface Img {
  data: Float64Array;
  shape: [number, number, number, number];
}

/** PyTorch's conv2d with padding [top, bottom, left, right]. */
export function conv2dRef(
  x: Img,
  w: ArrayLike<number>,
  wShape: [number, number, number, number],
  bias: ArrayLike<number> | null,
  stride: number,
  pad: [number, number, number, number],
): Img {
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = wShape;
  const OH = Math.floor((H + pad[0] + pad[1] - kh) / stride) + 1;
  const OW = Math.floor((W + pad[2] + pad[3] - kw) / stride) + 1;
  const out = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let s = bias ? bias[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * stride + ky - pad[0];
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * stride + kx - pad[2];
                if (ix < 0 || ix >= W) continue;
                s += w[((o * C + c) * kh + ky) * kw + kx] * x.data[((n * C + c) * H + iy) * W + ix];
              }
            }
          }
          out[((n * O + o) * OH + oy) * OW + ox] = s;
        }
      }
    }
  }
  return { data: out, shape: [N, O, OH, OW] };
}

/** Nearest-neighbour upsampling by integer factors. */
export function upsampleRef(x: Img, fy: number, fx: number): Img {
  const [N, C, H, W] = x.shape;
  const OH = H * fy, OW = W * fx;
  const out = new Float64Array(N * C * OH * OW);
  for (let p = 0; p < N * C; p++) {
    for (let y = 0; y < OH; y++) {
      for (let xx = 0; xx < OW; xx++) {
        out[(p * OH + y) * OW + xx] =
          x.data[(p * H + Math.floor(y / fy)) * W + Math.floor(xx / fx)];
      }
    }
  }
  return { data: out, shape: [N, C, OH, OW] };
}

/** torch.nn.GroupNorm (biased variance over each group's channels and pixels). */
export function groupNormRef(
  x: Img,
  groups: number,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  eps = 1e-6,
): Img {
  const [N, C, H, W] = x.shape;
  const cg = C / groups, HW = H * W, size = cg * HW;
  const out = new Float64Array(x.data.length);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      const base = (n * C + g * cg) * HW;
      let mean = 0;
      for (let i = 0; i < size; i++) mean += x.data[base + i];
      mean /= size;
      let v = 0;
      for (let i = 0; i < size; i++) v += (x.data[base + i] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / size + eps);
      for (let i = 0; i < size; i++) {
        const c = g * cg + Math.floor(i / HW);
        out[base + i] = (x.data[base + i] - mean) * rstd * w[c] + b[c];
      }
    }
  }
  return { data: out, shape: x.shape };
}

/** Nearest codebook rows (first on ties) and the quantized vectors, for z [n, D], e [V, D]. */
export function vqRef(
  z: ArrayLike<number>,
  e: ArrayLike<number>,
  n: number,
  V: number,
  D: number,
): { indices: Int32Array; zq: Float64Array; mse: number } {
  const indices = new Int32Array(n);
  const zq = new Float64Array(n * D);
  let mse = 0;
  for (let i = 0; i < n; i++) {
    let best = Infinity, arg = 0;
    for (let v = 0; v < V; v++) {
      let d = 0;
      for (let k = 0; k < D; k++) d += (z[i * D + k] - e[v * D + k]) ** 2;
      if (d < best) {
        best = d;
        arg = v;
      }
    }
    indices[i] = arg;
    for (let k = 0; k < D; k++) {
      zq[i * D + k] = e[arg * D + k];
      mse += (z[i * D + k] - e[arg * D + k]) ** 2;
    }
  }
  return { indices, zq, mse: mse / (n * D) };
}

/** Softmax attention of one head over positions: q, k, v are [T, D] (row-major), scale 1/sqrt(D). */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  T: number,
  D: number,
): Float64Array {
  const out = new Float64Array(T * D);
  const s = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    let m = -Infinity;
    for (let j = 0; j < T; j++) {
      let d = 0;
      for (let c = 0; c < D; c++) d += q[i * D + c] * k[j * D + c];
      s[j] = d / Math.sqrt(D);
      m = Math.max(m, s[j]);
    }
    let z = 0;
    for (let j = 0; j < T; j++) z += s[j] = Math.exp(s[j] - m);
    for (let j = 0; j < T; j++) {
      for (let c = 0; c < D; c++) out[i * D + c] += (s[j] / z) * v[j * D + c];
    }
  }
  return out;
}
