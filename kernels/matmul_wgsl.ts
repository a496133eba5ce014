/**
 * WGSL code generator for f32 batched matmul: C[b] = A[b]·B[b] (+ C[b]) (+ bias).
 *
 * Every size is baked into the generated text as a constant, and the hot loop is emitted as
 * straight-line code: the k-loop over a workgroup tile and the per-thread register block are
 * fully unrolled and the accumulators are separate `vec4` variables. naga clamps dynamic
 * indices into private arrays, which pushes them out of registers on NVIDIA (measured 2 vs 25
 * TFLOP/s on an H100), so the generated code has no private arrays at all.
 *
 * Layout of one workgroup: a TM x TN output tile, TK-deep slices of A and B staged in
 * workgroup memory as `vec4` rows indexed [k][m/4] and [k][n/4]. Each thread owns RM x RN
 * outputs in "split" layout (vec4 column groups tx, tx + TN/RN, ...), so neighbouring threads
 * read neighbouring vec4s from workgroup memory (no bank conflicts on the hot reads).
 * Interior tiles take unguarded loads and stores; only edge tiles test M and N, and only the
 * final partial k-slice tests K.
 *
 * @module
 */

/** One batched matmul. A is [batch, M, K], B is [batch, K, N], C is [batch, M, N]. */
export interface MatmulSpec {
  batch: number;
  M: number;
  N: number;
  K: number;
  /** A is stored [batch, K, M] (i.e. we use A^T) instead of [batch, M, K]. */
  transA: boolean;
  /** B is stored [batch, N, K] instead of [batch, K, N]. */
  transB: boolean;
  /** Element strides between batches; 0 broadcasts one matrix over the batch. */
  aBatchStride: number;
  bBatchStride: number;
  /** C = A·B + C (accumulate into existing output), for gradient accumulation. Default false. */
  accumulate?: boolean;
  /** Optional fused epilogue: add bias[N] (binding 3). Default false. */
  bias?: boolean;
}

/** A generated kernel and how to dispatch it. */
export interface MatmulPlan {
  /** Complete WGSL, all sizes baked in as constants. */
  code: string;
  /** Dispatch size, each <= limits.maxComputeWorkgroupsPerDimension. */
  workgroups: [number, number, number];
  /** E.g. "matmul 64x2048x512 tB" for error messages. */
  label: string;
  /** The tiling picked (for logs and benchmarks). */
  tile: MatmulTile;
  /** Minimum sizes in bytes of the A, B, C (and bias) bindings; the shader declares them. */
  bindingBytes: { a: number; b: number; c: number; bias: number };
}

/** Device limits the planner respects. */
export interface MatmulLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupsPerDimension: number;
}

/** Workgroup tile TM x TN x TK; each thread computes RM x RN outputs (RM, RN in {4, 8}). */
export interface MatmulTile {
  TM: number;
  TN: number;
  TK: number;
  RM: number;
  RN: number;
}

/** Tiles from most to least work per thread; the planner takes the first that fills the GPU. */
const GENERAL_TILES: MatmulTile[] = [
  { TM: 128, TN: 128, TK: 16, RM: 8, RN: 8 },
  { TM: 128, TN: 64, TK: 16, RM: 8, RN: 4 },
  { TM: 64, TN: 128, TK: 16, RM: 4, RN: 8 },
  { TM: 64, TN: 64, TK: 16, RM: 4, RN: 8 },
  { TM: 32, TN: 32, TK: 16, RM: 4, RN: 4 },
];
/** Few rows (decode with 1..16 tokens): a short tile so little of the work is padding. */
const SKINNY_M_TILES: MatmulTile[] = [
  { TM: 16, TN: 128, TK: 16, RM: 4, RN: 4 },
  { TM: 16, TN: 64, TK: 16, RM: 4, RN: 4 },
  { TM: 16, TN: 32, TK: 16, RM: 4, RN: 4 },
];
const SKINNY_N_TILES: MatmulTile[] = SKINNY_M_TILES.map((t) => ({
  TM: t.TN,
  TN: t.TM,
  TK: t.TK,
  RM: t.RN,
  RN: t.RM,
}));
/** Every tile the planner may pick (tests force each one). */
export const MATMUL_TILES: readonly MatmulTile[] = [
  ...GENERAL_TILES,
  ...SKINNY_M_TILES,
  ...SKINNY_N_TILES,
];
/** Enough workgroups to keep every SM of a large GPU busy (an H100 has 132). */
const TARGET_WORKGROUPS = 256;
/** Output tiles handed out in column-major groups of this many tile rows, for L2 reuse. */
const GROUP_M = 8;

/** Threads per workgroup for a tile. */
function threadsOf(t: MatmulTile): number {
  return (t.TM / t.RM) * (t.TN / t.RN);
}

/** Workgroup memory bytes for a tile. */
function sharedBytesOf(t: MatmulTile): number {
  return (t.TM + t.TN) * t.TK * 4;
}

/** Picks a tile for the shape; `override` forces one (for tests of every code path). */
export function chooseTile(spec: MatmulSpec, limits: MatmulLimits): MatmulTile {
  const fits = (t: MatmulTile) =>
    threadsOf(t) <= limits.maxComputeInvocationsPerWorkgroup &&
    sharedBytesOf(t) <= limits.maxComputeWorkgroupStorageSize;
  let family = GENERAL_TILES;
  if (spec.M <= 16 && spec.N > 16) family = SKINNY_M_TILES;
  else if (spec.N <= 16 && spec.M > 16) family = SKINNY_N_TILES;
  const candidates = family.filter(fits);
  if (candidates.length === 0) {
    throw new Error(`matmul: no tile fits the device limits ${JSON.stringify(limits)}`);
  }
  const count = (t: MatmulTile) => Math.ceil(spec.M / t.TM) * Math.ceil(spec.N / t.TN) * spec.batch;
  // A tile more than twice the matrix in either dimension is mostly padding.
  const sensible = candidates.filter((t) => t.TM <= 2 * spec.M && t.TN <= 2 * spec.N);
  for (const t of sensible) if (count(t) >= TARGET_WORKGROUPS) return t;
  // Nothing fills the GPU: take the tile with the most workgroups (the smallest).
  return candidates[candidates.length - 1];
}

/** Validates a spec; throws with a readable message. */
function checkSpec(spec: MatmulSpec): void {
  for (const key of ["batch", "M", "N", "K"] as const) {
    const v = spec[key];
    if (!Number.isInteger(v) || v < 1) throw new Error(`matmul: ${key} must be >= 1, got ${v}`);
  }
  for (const key of ["aBatchStride", "bBatchStride"] as const) {
    const v = spec[key];
    if (!Number.isInteger(v) || v < 0) throw new Error(`matmul: ${key} must be >= 0, got ${v}`);
  }
}

/** Short human label, e.g. "matmul 64x2048x512 tB". */
export function matmulLabel(spec: MatmulSpec): string {
  const flags = [
    spec.batch > 1 ? `b${spec.batch}` : "",
    spec.transA ? "tA" : "",
    spec.transB ? "tB" : "",
    spec.accumulate ? "acc" : "",
    spec.bias ? "bias" : "",
  ].filter((s) => s).join(" ");
  return `matmul ${spec.M}x${spec.N}x${spec.K}${flags ? " " + flags : ""}`;
}

/**
 * Plans a batched matmul: picks a tiling, generates the WGSL and the dispatch size.
 *
 * Bindings: @group(0) @binding(0) A (read), 1: B (read), 2: C (read_write, [batch, M, N]
 * contiguous), 3: bias[N] (read) when `spec.bias`. The shader declares fixed-size arrays, so
 * each binding must be at least `plan.bindingBytes` long (WebGPU validates this at dispatch).
 */
export function planMatmul(
  spec: MatmulSpec,
  limits: MatmulLimits,
  override?: MatmulTile,
): MatmulPlan {
  checkSpec(spec);
  const tile = override ?? chooseTile(spec, limits);
  checkTile(tile, limits);
  const label = matmulLabel(spec);
  const tilesM = Math.ceil(spec.M / tile.TM);
  const tilesN = Math.ceil(spec.N / tile.TN);
  const total = tilesM * tilesN * spec.batch;
  const workgroups = foldGrid(total, limits.maxComputeWorkgroupsPerDimension);
  const sizes = bindingSizes(spec);
  const code = generate(spec, tile, workgroups, tilesM, tilesN, sizes);
  return {
    code,
    workgroups,
    label,
    tile,
    bindingBytes: { a: sizes.a * 4, b: sizes.b * 4, c: sizes.c * 4, bias: sizes.bias * 4 },
  };
}

function checkTile(t: MatmulTile, limits: MatmulLimits): void {
  const ok = t.TM % t.RM === 0 && t.TN % t.RN === 0 && t.RM % 4 === 0 && t.RN % 4 === 0 &&
    t.TK % 4 === 0 && threadsOf(t) <= limits.maxComputeInvocationsPerWorkgroup &&
    sharedBytesOf(t) <= limits.maxComputeWorkgroupStorageSize;
  if (!ok) throw new Error(`matmul: unusable tile ${JSON.stringify(t)}`);
}

/** Spreads `total` workgroups over x, y, z so no dimension exceeds `max`. */
export function foldGrid(total: number, max: number): [number, number, number] {
  const x = Math.min(total, max);
  const rest = Math.ceil(total / x);
  const y = Math.min(rest, max);
  const z = Math.ceil(rest / y);
  if (z > max) throw new Error(`matmul: ${total} workgroups exceed the dispatch limit`);
  return [x, y, z];
}

/** Element counts each binding must hold. */
function bindingSizes(spec: MatmulSpec) {
  const last = spec.batch - 1;
  return {
    a: last * spec.aBatchStride + spec.M * spec.K,
    b: last * spec.bBatchStride + spec.K * spec.N,
    c: spec.batch * spec.M * spec.N,
    bias: spec.bias ? spec.N : 0,
  };
}

/** How one operand tile is fetched from global memory into workgroup memory. */
interface Operand {
  /** "a" or "b"; the shared array is `sh_a` / `sh_b`. */
  name: string;
  /** Tile extent along the non-k dimension (TM or TN) and the matrix extent (M or N). */
  T: number;
  X: number;
  /** True when k is the contiguous dimension in memory ([X, K] storage). */
  kContig: boolean;
  /** True when the global binding is array<vec4<f32>> (4-aligned along the contiguous dim). */
  vec: boolean;
  /** Element offset of the batch matrix (a WGSL expression). */
  base: string;
  /** First row/column of this workgroup's tile along X (a WGSL expression). */
  x0: string;
}

/** Emits WGSL that fills sh_<name> for the k-slice starting at `k0`, covering `kLen` rows. */
function emitLoad(
  op: Operand,
  tile: MatmulTile,
  threads: number,
  K: number,
  k0: string,
  kLen: number,
  guardX: boolean,
): string {
  const { T, X, kContig, vec, name, base, x0 } = op;
  const TK = tile.TK;
  const T4 = T / 4;
  const lines: string[] = [];
  // Units are what one thread fetches at once: a vec4 or a scalar.
  const perUnit = vec ? 4 : 1;
  const units = (T * TK) / perUnit;
  const iters = Math.ceil(units / threads);
  for (let it = 0; it < iters; it++) {
    const u = `(lid + ${it * threads}u)`;
    const body: string[] = [];
    // Unit coordinates: the contiguous dimension varies fastest across threads (coalescing).
    let x: string, k: string;
    if (kContig) {
      const kUnits = TK / perUnit;
      k = vec ? `(${u} % ${kUnits}u) * 4u` : `(${u} % ${TK}u)`;
      x = `(${u} / ${vec ? kUnits : TK}u)`;
    } else {
      const xUnits = T / perUnit;
      x = vec ? `(${u} % ${xUnits}u) * 4u` : `(${u} % ${T}u)`;
      k = `(${u} / ${vec ? xUnits : T}u)`;
    }
    const head = `let x = ${x}; let k = ${k};`;
    const gx = `(${x0} + x)`;
    const gk = `(${k0} + k)`;
    const addr = kContig ? `${base} + ${gx} * ${K}u + ${gk}` : `${base} + ${gk} * ${X}u + ${gx}`;
    const load = vec ? `${name}_g[(${addr}) / 4u]` : `${name}_g[${addr}]`;
    const zero = vec ? "vec4<f32>()" : "0.0";
    // An if rather than select(): select() would still issue the out-of-bounds load.
    if (guardX) body.push(`var v = ${zero};`, `if (${gx} < ${X}u) { v = ${load}; }`);
    else body.push(`let v = ${load};`);
    if (vec && kContig) {
      // Four k values of one row/column: scatter into four shared rows.
      for (let c = 0; c < 4; c++) {
        body.push(`sh_${name}[(k + ${c}u) * ${T4}u + x / 4u][x % 4u] = v[${c}];`);
      }
    } else if (vec) {
      body.push(`sh_${name}[k * ${T4}u + x / 4u] = v;`);
    } else {
      body.push(`sh_${name}[k * ${T4}u + x / 4u][x % 4u] = v;`);
    }
    let text = body.join(" ");
    // In the last partial slice only k < kLen is read, so rows past it are left alone.
    if (kLen < TK) text = `if (k < ${kLen}u) { ${text} }`;
    text = `${head} ${text}`;
    // The last round of an uneven split has fewer units than threads.
    if (units % threads !== 0 && it === iters - 1) text = `if (${u} < ${units}u) { ${text} }`;
    lines.push(`    { ${text} }`);
  }
  return lines.join("\n");
}

/** Emits the fully unrolled multiply-accumulate over `steps` k values of the shared tiles. */
function emitCompute(tile: MatmulTile, steps: number): string {
  const { TM, TN, RM, RN } = tile;
  const TM4 = TM / 4, TN4 = TN / 4;
  const gm = RM / 4, gn = RN / 4;
  const ty = TM / RM, tx = TN / RN; // threads along m and n
  const out: string[] = [];
  for (let k = 0; k < steps; k++) {
    const s: string[] = [];
    for (let i = 0; i < gm; i++) s.push(`let a${i} = sh_a[${k * TM4 + i * ty}u + ty];`);
    for (let j = 0; j < gn; j++) s.push(`let b${j} = sh_b[${k * TN4 + j * tx}u + tx];`);
    for (let i = 0; i < gm; i++) {
      for (let r = 0; r < 4; r++) {
        for (let j = 0; j < gn; j++) {
          const acc = `c${i * 4 + r}_${j}`;
          s.push(`${acc} = fma(vec4<f32>(a${i}.${"xyzw"[r]}), b${j}, ${acc});`);
        }
      }
    }
    out.push(`    { ${s.join(" ")} }`);
  }
  return out.join("\n");
}

/** Emits the stores of all accumulators (with accumulate / bias), guarded when `guard`. */
function emitStore(spec: MatmulSpec, tile: MatmulTile, guard: boolean, cVec: boolean): string {
  const { TM, TN, RM, RN } = tile;
  const { M, N } = spec;
  const ty = TM / RM, tx = TN / RN;
  const out: string[] = [];
  for (let i = 0; i < RM / 4; i++) {
    for (let r = 0; r < 4; r++) {
      const m = `(m0 + ${4 * i * ty + r}u + 4u * ty)`;
      const row: string[] = [];
      for (let j = 0; j < RN / 4; j++) {
        const acc = `c${i * 4 + r}_${j}`;
        const n = `(n0 + ${4 * j * tx}u + 4u * tx)`;
        const idx = `c_base + ${m} * ${N}u + ${n}`;
        if (cVec) {
          let v = acc;
          if (spec.bias) v = `${v} + bias_g[${n} / 4u]`;
          if (spec.accumulate) v = `${v} + c_g[(${idx}) / 4u]`;
          const st = `c_g[(${idx}) / 4u] = ${v};`;
          // With N % 4 == 0 a vec4 group is entirely inside or outside the matrix.
          row.push(guard ? `if (${n} < ${N}u) { ${st} }` : st);
        } else {
          for (let c = 0; c < 4; c++) {
            const e = `${idx} + ${c}u`;
            let v = `${acc}.${"xyzw"[c]}`;
            if (spec.bias) v = `${v} + bias_g[${n} + ${c}u]`;
            if (spec.accumulate) v = `${v} + c_g[${e}]`;
            const st = `c_g[${e}] = ${v};`;
            row.push(guard ? `if (${n} + ${c}u < ${N}u) { ${st} }` : st);
          }
        }
      }
      const body = row.join(" ");
      out.push(guard ? `    if (${m} < ${M}u) { ${body} }` : `    { ${body} }`);
    }
  }
  return out.join("\n");
}

/** Generates the complete shader. */
function generate(
  spec: MatmulSpec,
  tile: MatmulTile,
  grid: [number, number, number],
  tilesM: number,
  tilesN: number,
  sizes: ReturnType<typeof bindingSizes>,
): string {
  const { M, N, K, transA, transB, aBatchStride: sa, bBatchStride: sb } = spec;
  const { TM, TN, TK, RM, RN } = tile;
  const threads = threadsOf(tile);
  // vec4 global access needs the contiguous extent and the batch stride 4-aligned.
  const aVec = (transA ? M % 4 === 0 : K % 4 === 0) && sa % 4 === 0;
  const bVec = (transB ? K % 4 === 0 : N % 4 === 0) && sb % 4 === 0;
  const cVec = N % 4 === 0;
  const biasVec = cVec;
  const arr = (vec: boolean, n: number) => vec ? `array<vec4<f32>, ${n / 4}>` : `array<f32, ${n}>`;
  const a: Operand = {
    name: "a",
    T: TM,
    X: M,
    kContig: !transA,
    vec: aVec,
    base: "a_base",
    x0: "m0",
  };
  const b: Operand = {
    name: "b",
    T: TN,
    X: N,
    kContig: transB,
    vec: bVec,
    base: "b_base",
    x0: "n0",
  };
  const kFull = Math.floor(K / TK);
  const kRem = K % TK;
  const fullM = Math.floor(M / TM), fullN = Math.floor(N / TN);
  const anyEdge = fullM < tilesM || fullN < tilesN;
  const total = tilesM * tilesN * spec.batch;
  const dispatched = grid[0] * grid[1] * grid[2];
  const tilesPerBatch = tilesM * tilesN;

  const loads = (k0: string, kLen: number) => {
    const fast = emitLoad(a, tile, threads, K, k0, kLen, false) + "\n" +
      emitLoad(b, tile, threads, K, k0, kLen, false);
    if (!anyEdge) return fast;
    const slow = emitLoad(a, tile, threads, K, k0, kLen, fullM < tilesM) + "\n" +
      emitLoad(b, tile, threads, K, k0, kLen, fullN < tilesN);
    return `    if (interior) {\n${fast}\n    } else {\n${slow}\n    }`;
  };

  const accDecl: string[] = [];
  for (let r = 0; r < RM; r++) {
    for (let j = 0; j < RN / 4; j++) accDecl.push(`var c${r}_${j} = vec4<f32>();`);
  }

  const body: string[] = [];
  body.push(`// ${matmulLabel(spec)}: tile ${TM}x${TN}x${TK}, ${RM}x${RN} per thread`);
  body.push(`@group(0) @binding(0) var<storage, read> a_g: ${arr(aVec, sizes.a)};`);
  body.push(`@group(0) @binding(1) var<storage, read> b_g: ${arr(bVec, sizes.b)};`);
  body.push(`@group(0) @binding(2) var<storage, read_write> c_g: ${arr(cVec, sizes.c)};`);
  if (spec.bias) {
    body.push(`@group(0) @binding(3) var<storage, read> bias_g: ${arr(biasVec, sizes.bias)};`);
  }
  body.push(`var<workgroup> sh_a: array<vec4<f32>, ${(TK * TM) / 4}>;`);
  body.push(`var<workgroup> sh_b: array<vec4<f32>, ${(TK * TN) / 4}>;`);
  body.push("");
  body.push(`@compute @workgroup_size(${threads})`);
  body.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
      "@builtin(local_invocation_index) lid: u32) {",
  );
  body.push(`  let lin = wid.x + wid.y * ${grid[0]}u + wid.z * ${grid[0] * grid[1]}u;`);
  if (dispatched > total) body.push(`  if (lin >= ${total}u) { return; }`);
  body.push(`  let batch = lin / ${tilesPerBatch}u;`);
  body.push(`  let t = lin % ${tilesPerBatch}u;`);
  // Grouped order: GROUP_M tile rows are walked column by column so B tiles stay in L2.
  body.push(`  let group = t / ${GROUP_M * tilesN}u;`);
  body.push(`  let first_m = group * ${GROUP_M}u;`);
  body.push(`  let group_rows = min(${tilesM}u - first_m, ${GROUP_M}u);`);
  body.push(`  let in_group = t % ${GROUP_M * tilesN}u;`);
  body.push(`  let tm = first_m + in_group % group_rows;`);
  body.push(`  let tn = in_group / group_rows;`);
  body.push(`  let m0 = tm * ${TM}u;`);
  body.push(`  let n0 = tn * ${TN}u;`);
  body.push(`  let a_base = batch * ${sa}u;`);
  body.push(`  let b_base = batch * ${sb}u;`);
  body.push(`  let c_base = batch * ${M * N}u;`);
  body.push(`  let interior = tm < ${fullM}u && tn < ${fullN}u;`);
  body.push(`  let tx = lid % ${TN / RN}u;`);
  body.push(`  let ty = lid / ${TN / RN}u;`);
  body.push("  " + accDecl.join(" "));
  if (kFull > 0) {
    body.push(`  for (var kt = 0u; kt < ${kFull}u; kt++) {`);
    body.push(`    let k0 = kt * ${TK}u;`);
    body.push(loads("k0", TK));
    body.push("    workgroupBarrier();");
    body.push(emitCompute(tile, TK));
    body.push("    workgroupBarrier();");
    body.push("  }");
  }
  if (kRem > 0) {
    body.push("  {");
    body.push(loads(`${kFull * TK}u`, kRem));
    body.push("    workgroupBarrier();");
    body.push(emitCompute(tile, kRem));
    body.push("  }");
  }
  if (anyEdge) {
    body.push("  if (interior) {");
    body.push(emitStore(spec, tile, false, cVec));
    body.push("  } else {");
    body.push(emitStore(spec, tile, true, cVec));
    body.push("  }");
  } else {
    body.push(emitStore(spec, tile, false, cVec));
  }
  body.push("}");
  return body.join("\n") + "\n";
}
