/**
 * WGSL text emission for `planMatmul` (see plan.ts for the tiling scheme).
 *
 * Shape of the generated kernel, per workgroup (one TM x TN output tile):
 *   fetch k-slice 0 from global memory into registers
 *   for each full TK slice: registers -> workgroup memory; barrier;
 *     fetch the next slice into registers (its latency hides behind the math);
 *     fully unrolled TK x RM x RN fma block;
 *     barrier (only with one shared buffer; with two they alternate and one barrier suffices)
 *   partial last slice (K % TK), unrolled over exactly K % TK steps
 *   epilogue: unguarded stores for interior tiles, guarded stores for edge tiles
 *
 * Workgroup memory holds the slices as vec4 rows [k][m/4] and [k][n/4]. A thread owns
 * vec4 groups ty + i*(TM/RM) along m and tx + j*(TN/RN) along n ("split" layout), so
 * neighbouring threads read neighbouring vec4s on the hot path.
 *
 * @module
 */

import type { MatmulSpec, MatmulTile } from "./plan.ts";
import type { SplitK } from "./split.ts";
import { activationWgsl } from "../activation.ts";

/** Output tiles are handed out in column-major groups of this many tile rows, for L2 reuse. */
export const GROUP_M = 8;

/** How one operand's tile travels from global memory into workgroup memory. */
export interface Operand {
  /** "a" or "b": the global binding is `<name>_g`, the shared array `sh_<name>`. */
  name: string;
  /** Tile extent along the non-k dimension (TM or TN) and the matrix extent (M or N). */
  T: number;
  /** A WGSL expression when run-time (`dims.x`: a shape-generic M). */
  X: number | string;
  K: number;
  /** True when k is the contiguous dimension in memory ([X, K] storage). */
  kContig: boolean;
  /** True when the binding is array<vec4<f32>> (4-aligned along the contiguous dimension). */
  vec: boolean;
  /** True when the matrix has a partial tile along X, so loads must test x < X. */
  guardX: boolean;
  /** WGSL expressions: the batch matrix's element offset, and the tile's first row/column. */
  base: string;
  x0: string;
  /** Threads per workgroup and the tile depth. */
  threads: number;
  TK: number;
}

/** A size as WGSL: a number literal, or a run-time expression as is. */
function u32(x: number | string): string {
  return typeof x === "number" ? `${x}u` : x;
}

/** Fetch units (a vec4 or a scalar each) per tile, and rounds of `threads` needed. */
function unitsOf(op: Operand): { units: number; rounds: number } {
  const units = (op.T * op.TK) / (op.vec ? 4 : 1);
  return { units, rounds: Math.ceil(units / op.threads) };
}

/**
 * WGSL: the output tile (tm, tn) of the tile index `lin` in grouped order (GROUP_M tile rows
 * walked column by column, so B tiles stay in L2), and its first row m0 and column n0.
 * `tilesM` is a WGSL expression (a literal, or run-time for a shape-generic M).
 */
export function emitGroupedTile(
  lin: string,
  tilesM: string,
  tilesN: number,
  TM: number,
  TN: number,
): string[] {
  return [
    `  let first_m = (${lin} / ${GROUP_M * tilesN}u) * ${GROUP_M}u;`,
    `  let group_rows = min(${tilesM} - first_m, ${GROUP_M}u);`,
    `  let in_group = ${lin} % ${GROUP_M * tilesN}u;`,
    `  let tm = first_m + in_group % group_rows;`,
    `  let tn = in_group / group_rows;`,
    `  let m0 = tm * ${TM}u;`,
    `  let n0 = tn * ${TN}u;`,
  ];
}

/** WGSL: a thread's RM x RN accumulators `c{r}_{j}` (vec4 each), one line per row. */
export function emitAccumulators(RM: number, RN: number): string[] {
  const rows: string[] = [];
  for (let r = 0; r < RM; r++) {
    const accs: string[] = [];
    for (let j = 0; j < RN / 4; j++) accs.push(`var c${r}_${j} = vec4<f32>();`);
    rows.push("  " + accs.join(" "));
  }
  return rows;
}

/** Per-thread constants for the loads: unit coordinates, offsets, bounds flags, registers. */
export function emitLoadSetup(op: Operand): string {
  const { name: n, T, X, K, TK, kContig, vec, threads, base, x0 } = op;
  const { units, rounds } = unitsOf(op);
  const out: string[] = [];
  for (let it = 0; it < rounds; it++) {
    const u = `(lid + ${it * threads}u)`;
    // The contiguous dimension varies fastest across threads, so loads coalesce.
    let x: string, k: string;
    if (kContig) {
      x = vec ? `${u} / ${TK / 4}u` : `${u} / ${TK}u`;
      k = vec ? `(${u} % ${TK / 4}u) * 4u` : `${u} % ${TK}u`;
    } else {
      x = vec ? `(${u} % ${T / 4}u) * 4u` : `${u} % ${T}u`;
      k = vec ? `${u} / ${T / 4}u` : `${u} / ${T}u`;
    }
    const v = `${n}${it}`;
    out.push(`  let ${v}x = ${x};`, `  let ${v}k = ${k};`);
    const off = kContig ? `(${x0} + ${v}x) * ${K}u + ${v}k` : `${v}k * ${u32(X)} + ${x0} + ${v}x`;
    out.push(`  let ${v}o = ${base} + ${off};`);
    const conds: string[] = [];
    if (op.guardX) conds.push(`${x0} + ${v}x < ${u32(X)}`);
    if (units % threads !== 0 && it === rounds - 1) conds.push(`${u} < ${units}u`);
    if (conds.length) out.push(`  let ${v}ok = ${conds.join(" && ")};`);
    out.push(`  var ${v}r = ${vec ? "vec4<f32>()" : "0.0"};`);
  }
  return out.join("\n");
}

/** Loads the slice starting at element k0 (a WGSL expression) into the registers. */
export function emitFetch(op: Operand, k0: string, kLen: number, indent: string): string {
  const { name: n, X, TK, kContig, vec } = op;
  const { units, rounds } = unitsOf(op);
  const out: string[] = [];
  for (let it = 0; it < rounds; it++) {
    const v = `${n}${it}`;
    const addr = `${v}o + ${kContig ? k0 : `${k0} * ${u32(X)}`}`;
    const load = `${v}r = ${n}_g[${vec ? `(${addr}) / 4u` : addr}];`;
    const conds: string[] = [];
    if (op.guardX || (units % op.threads !== 0 && it === rounds - 1)) conds.push(`${v}ok`);
    if (kLen < TK) conds.push(`${v}k < ${kLen}u`);
    // Out-of-range units keep their zero registers (set once, never loaded).
    out.push(indent + (conds.length ? `if (${conds.join(" && ")}) { ${load} }` : load));
  }
  return out.join("\n");
}

/** Stores the registers into workgroup memory (skipping units past the tile or kLen). */
export function emitShare(op: Operand, kLen: number, buf: string | null, indent: string): string {
  const { name: n, TK, kContig, vec, threads } = op;
  const sh = buf === null ? `sh_${n}` : `sh_${n}[${buf}]`;
  const { units, rounds } = unitsOf(op);
  const out: string[] = [];
  for (let it = 0; it < rounds; it++) {
    const v = `${n}${it}`;
    const s: string[] = [];
    if (vec && kContig) {
      // Four k values of one row: scatter into four shared rows.
      for (let c = 0; c < 4; c++) {
        s.push(`${sh}[${v}k + ${c}u][${v}x / 4u][${v}x % 4u] = ${v}r[${c}];`);
      }
    } else if (vec) {
      s.push(`${sh}[${v}k][${v}x / 4u] = ${v}r;`);
    } else {
      s.push(`${sh}[${v}k][${v}x / 4u][${v}x % 4u] = ${v}r;`);
    }
    const conds: string[] = [];
    if (units % threads !== 0 && it === rounds - 1) conds.push(`${v}ok`);
    if (kLen < TK) conds.push(`${v}k < ${kLen}u`);
    const body = s.join(" ");
    out.push(indent + (conds.length ? `if (${conds.join(" && ")}) { ${body} }` : body));
  }
  return out.join("\n");
}

/**
 * The fully unrolled multiply-accumulate over `steps` k values of the shared slices `sh_a` /
 * `sh_b` (vec4 rows [k][m/4], [k][n/4]) into accumulators `c<r>_<j>`, for thread `ty`, `tx`.
 * With `sumK` the same A (or B) registers are also summed into `sa<i>` (`sb<j>`), the k-sum.
 * Shared with the implicit-GEMM convolution kernels (../conv/emit.ts).
 */
export function emitCompute(
  tile: MatmulTile,
  steps: number,
  buf: string | null,
  indent: string,
  sumK?: "a" | "b",
): string {
  const sa = buf === null ? "sh_a" : `sh_a[${buf}]`;
  const sb = buf === null ? "sh_b" : `sh_b[${buf}]`;
  const { TM, TN, RM, RN } = tile;
  const ty = TM / RM, tx = TN / RN; // threads along m and n
  const out: string[] = [];
  for (let k = 0; k < steps; k++) {
    const s: string[] = [];
    for (let i = 0; i < RM / 4; i++) {
      s.push(`let a${i} = ${sa}[${k}][ty${i ? ` + ${i * ty}u` : ""}];`);
    }
    for (let j = 0; j < RN / 4; j++) {
      s.push(`let b${j} = ${sb}[${k}][tx${j ? ` + ${j * tx}u` : ""}];`);
    }
    for (let i = 0; i < RM / 4; i++) {
      for (let r = 0; r < 4; r++) {
        for (let j = 0; j < RN / 4; j++) {
          const acc = `c${i * 4 + r}_${j}`;
          s.push(`${acc} = fma(vec4<f32>(a${i}.${"xyzw"[r]}), b${j}, ${acc});`);
        }
      }
    }
    if (sumK === "a") { for (let i = 0; i < RM / 4; i++) s.push(`sa${i} += a${i};`); }
    if (sumK === "b") { for (let j = 0; j < RN / 4; j++) s.push(`sb${j} += b${j};`); }
    out.push(`${indent}{ ${s.join(" ")} }`);
  }
  return out.join("\n");
}

/** Stores all accumulators (plus accumulate / bias); `guard` tests M and N. */
export function emitEpilogue(spec: MatmulSpec, tile: MatmulTile, guard: boolean, indent: string) {
  const { TM, TN, RM, RN } = tile;
  const { N } = spec;
  const M = spec.dynamicM ? "dims.x" : `${spec.M}u`;
  const cVec = N % 4 === 0;
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
          if (spec.activation) v = `act4_${spec.activation}(${v})`;
          if (spec.residual) v = `${v} + res_g[(${idx}) / 4u]`;
          if (spec.accumulate) v = `${v} + c_g[(${idx}) / 4u]`;
          const st = `c_g[(${idx}) / 4u] = ${v};`;
          // With N % 4 == 0 a vec4 group lies entirely inside or outside the matrix.
          row.push(guard ? `if (${n} < ${N}u) { ${st} }` : st);
        } else {
          for (let c = 0; c < 4; c++) {
            const e = `${idx} + ${c}u`;
            let v = `${acc}.${"xyzw"[c]}`;
            if (spec.bias) v = `${v} + bias_g[${n} + ${c}u]`;
            if (spec.activation) v = `act_${spec.activation}(${v})`;
            if (spec.residual) v = `${v} + res_g[${e}]`;
            if (spec.accumulate) v = `${v} + c_g[${e}]`;
            const st = `c_g[${e}] = ${v};`;
            row.push(guard ? `if (${n} + ${c}u < ${N}u) { ${st} }` : st);
          }
        }
      }
      const body = row.join(" ");
      out.push(indent + (guard ? `if (${m} < ${M}) { ${body} }` : `{ ${body} }`));
    }
  }
  return out.join("\n");
}

/**
 * Stores the k-sum: threads of the first tile column (sum of A, per row m) or row (sum of B,
 * per column n) that hold the column tx = 0 (ty = 0) of their tile write it, once per row.
 */
function emitSumStore(spec: MatmulSpec, tile: MatmulTile, split: boolean): string {
  const { TM, TN, RM, RN } = tile;
  const ty = TM / RM, tx = TN / RN;
  const isA = spec.sumK === "a";
  const L = isA ? spec.M : spec.N;
  const base = `${split ? `(s * ${spec.batch}u + batch)` : "batch"} * ${L}u`;
  const out: string[] = [];
  for (let i = 0; i < (isA ? RM : RN) / 4; i++) {
    for (let r = 0; r < 4; r++) {
      const x = isA ? `m0 + ${4 * i * ty + r}u + 4u * ty` : `n0 + ${4 * i * tx + r}u + 4u * tx`;
      out.push(
        `    if (${x} < ${L}u) { sum_g[${base} + ${x}] = s${spec.sumK}${i}.${"xyzw"[r]}; }`,
      );
    }
  }
  const who = isA ? "tn == 0u && tx == 0u" : "tm == 0u && ty == 0u";
  return [`  if (${who}) {`, ...out, "  }"].join("\n");
}

/** The complete shader for a spec, tile, (folded) dispatch grid and binding element counts. */
export function generateMatmul(
  spec: MatmulSpec,
  tile: MatmulTile,
  grid: [number, number, number],
  sizes: { a: number; b: number; c: number; sum?: number },
  label: string,
  sharedBuffers: 1 | 2,
  split: SplitK | null,
): string {
  const buffers = sharedBuffers;
  const { M, N, K, transA, transB, aBatchStride: sa, bBatchStride: sb } = spec;
  // Split-K partials go raw into the scratch; the reduce pass adds bias and the old C.
  const epilogueSpec = split
    ? { ...spec, bias: false, accumulate: false, activation: undefined, residual: false }
    : spec;
  const parts = split?.parts ?? 1;
  const { TM, TN, TK, RM, RN } = tile;
  const threads = (TM / RM) * (TN / RN);
  // A shape-generic M (spec.dynamicM, batch 1, A stored [M, K], no split or k-sum) is read
  // from the dims uniform: tile counts in M become WGSL expressions, every tile row tests M.
  const dyn = !!spec.dynamicM;
  const tilesM: number | string = dyn ? `((dims.x + ${TM - 1}u) / ${TM}u)` : Math.ceil(M / TM);
  const tilesN = Math.ceil(N / TN);
  const fullM: number | string = dyn ? `(dims.x / ${TM}u)` : Math.floor(M / TM);
  const fullN = Math.floor(N / TN);
  // vec4 global access needs the contiguous extent and the batch stride 4-aligned.
  const aVec = (transA ? M % 4 === 0 : K % 4 === 0) && sa % 4 === 0;
  const bVec = (transB ? K % 4 === 0 : N % 4 === 0) && sb % 4 === 0;
  const cVec = N % 4 === 0;
  const a: Operand = {
    name: "a",
    T: TM,
    X: dyn ? "dims.x" : M,
    K,
    kContig: !transA,
    vec: aVec,
    guardX: dyn || fullM < tilesM,
    base: "a_base",
    x0: "m0",
    threads,
    TK,
  };
  const b: Operand = {
    name: "b",
    T: TN,
    X: N,
    K,
    kContig: transB,
    vec: bVec,
    guardX: fullN < tilesN,
    base: "b_base",
    x0: "n0",
    threads,
    TK,
  };
  // Full k-slices (a WGSL expression when it differs between split ranges) and the tail.
  let kFull = Math.floor(K / TK);
  let kRem = K % TK;
  if (split) {
    kFull = split.chunk / TK;
    kRem = split.lastRem;
  }
  const kFullExpr = split && split.lastFull !== kFull
    ? `select(${kFull}u, ${split.lastFull}u, s == ${parts - 1}u)`
    : `${kFull}u`;
  const minFull = split ? Math.min(kFull, split.lastFull) : kFull;
  const maxFull = split ? Math.max(kFull, split.lastFull) : kFull;
  const tailFull = split ? split.lastFull : kFull;
  const total = dyn ? `${tilesM} * ${tilesN}u` : (tilesM as number) * tilesN * spec.batch * parts;
  const tilesPerBatch = dyn ? `(${tilesM} * ${tilesN}u)` : (tilesM as number) * tilesN;
  const tpb = typeof tilesPerBatch === "number" ? `${tilesPerBatch}u` : tilesPerBatch;
  // Bindings whose length follows a generic M are runtime-sized.
  const arr = (vec: boolean, n: number, runtimeSized = false) =>
    runtimeSized
      ? `array<${vec ? "vec4<f32>" : "f32"}>`
      : vec
      ? `array<vec4<f32>, ${n / 4}>`
      : `array<f32, ${n}>`;

  const o: string[] = [];
  o.push(`// ${label}: tile ${TM}x${TN}x${TK}, ${RM}x${RN} per thread, ${buffers}x shared`);
  o.push(`@group(0) @binding(0) var<storage, read> a_g: ${arr(aVec, sizes.a, dyn)};`);
  o.push(`@group(0) @binding(1) var<storage, read> b_g: ${arr(bVec, sizes.b)};`);
  o.push(`@group(0) @binding(2) var<storage, read_write> c_g: ${arr(cVec, sizes.c, dyn)};`);
  if (epilogueSpec.bias) {
    o.push(`@group(0) @binding(3) var<storage, read> bias_g: ${arr(cVec, N)};`);
  }
  let at = epilogueSpec.bias ? 4 : 3;
  if (epilogueSpec.residual) {
    o.push(`@group(0) @binding(${at++}) var<storage, read> res_g: ${arr(cVec, sizes.c, dyn)};`);
  }
  if (dyn) o.push(`@group(0) @binding(${at++}) var<uniform> dims: vec4<u32>;`);
  if (epilogueSpec.activation) o.push(activationWgsl(epilogueSpec.activation));
  const sumK = spec.sumK;
  if (sumK) {
    o.push(`@group(0) @binding(${at}) var<storage, read_write> sum_g: array<f32, ${sizes.sum}>;`);
  }
  // 2D so the hot reads are sh[constant k][ty + constant]: naga's index clamp then applies
  // only to loop-invariant values the driver can hoist.
  // With two buffers the outer index is the slice parity, a loop variable: one clamp per use,
  // and the driver folds the rest into immediate offsets.
  const shType = (T: number) => {
    const slice = `array<array<vec4<f32>, ${T / 4}>, ${TK}>`;
    return buffers === 1 ? slice : `array<${slice}, 2>`;
  };
  o.push(`var<workgroup> sh_a: ${shType(TM)};`);
  o.push(`var<workgroup> sh_b: ${shType(TN)};`);
  o.push("");
  o.push(`@compute @workgroup_size(${threads})`);
  if (dyn) {
    // The grid follows M at run time: the linear id comes from num_workgroups.
    o.push(
      "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
        "@builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {",
    );
    o.push("  let lin = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;");
    o.push(`  if (lin >= ${total}) { return; }`);
  } else {
    o.push(
      "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
        "@builtin(local_invocation_index) lid: u32) {",
    );
    o.push(`  let lin = wid.x + wid.y * ${grid[0]}u + wid.z * ${grid[0] * grid[1]}u;`);
    // Folded grids may over-dispatch; the test is workgroup-uniform, so barriers stay legal.
    if (grid[0] * grid[1] * grid[2] > (total as number)) {
      o.push(`  if (lin >= ${total}u) { return; }`);
    }
  }
  if (split) {
    // Split index outermost: [parts, batch, M, N] scratch.
    o.push(`  let s = lin / ${(tilesPerBatch as number) * spec.batch}u;`);
    o.push(`  let batch = (lin / ${tpb}) % ${spec.batch}u;`);
  } else {
    o.push(`  let batch = lin / ${tpb};`);
  }
  o.push(`  let t = lin % ${tpb};`);
  o.push(...emitGroupedTile("t", u32(tilesM), tilesN, TM, TN));
  // A split range starts at k = s * chunk: fold that into the operand base offsets.
  const ks = (X: number, kContig: boolean) =>
    split ? ` + s * ${kContig ? split.chunk : split.chunk * X}u` : "";
  o.push(`  let a_base = batch * ${sa}u${ks(M, !transA)};`);
  o.push(`  let b_base = batch * ${sb}u${ks(N, transB)};`);
  if (dyn) o.push("  let c_base = 0u;");
  else o.push(`  let c_base = ${split ? `(s * ${spec.batch}u + batch)` : "batch"} * ${M * N}u;`);
  o.push(`  let tx = lid % ${TN / RN}u;`);
  o.push(`  let ty = lid / ${TN / RN}u;`);
  o.push(emitLoadSetup(a));
  o.push(emitLoadSetup(b));
  o.push(...emitAccumulators(RM, RN));
  if (sumK) {
    const n = (sumK === "a" ? RM : RN) / 4;
    o.push("  " + Array.from({ length: n }, (_, i) => `var s${sumK}${i} = vec4<f32>();`).join(" "));
  }
  // One full k-slice: registers -> shared buffer `buf`, then prefetch slice kt + 1 into the
  // registers while computing on `buf`. With one buffer a second barrier protects it from the
  // next store; with two, the next store goes to the other buffer, whose readers all passed
  // this step's barrier already.
  const step = (buf: string | null, kt: string, indent: string) => {
    o.push(emitShare(a, TK, buf, indent), emitShare(b, TK, buf, indent));
    o.push(`${indent}workgroupBarrier();`);
    if (maxFull > 1) {
      // The last slice re-fetches itself (in bounds, unused) instead of branching.
      o.push(`${indent}{ let kn = min(${kt} + 1u, ${kFullExpr} - 1u) * ${TK}u;`);
      o.push(emitFetch(a, "kn", TK, indent), emitFetch(b, "kn", TK, indent) + " }");
    }
    o.push(emitCompute(tile, TK, buf, indent, sumK));
    if (buffers === 1) o.push(`${indent}workgroupBarrier();`);
  };
  if (minFull > 0) {
    o.push(emitFetch(a, "0u", TK, "  "), emitFetch(b, "0u", TK, "  "));
    o.push(`  for (var kt = 0u; kt < ${kFullExpr}; kt++) {`);
    step(buffers === 1 ? null : "kt & 1u", "kt", "    ");
    o.push("  }");
  }
  if (kRem > 0) {
    // With two buffers this one was last read before the latest barrier.
    const buf = buffers === 2 ? `${tailFull % 2}u` : null;
    const k0 = `${tailFull * TK}u`;
    // Only the last split range has a tail; the test is workgroup-uniform (barrier inside).
    const ind = split ? "    " : "  ";
    if (split) o.push(`  if (s == ${parts - 1}u) {`);
    o.push(emitFetch(a, k0, kRem, ind), emitFetch(b, k0, kRem, ind));
    o.push(emitShare(a, kRem, buf, ind), emitShare(b, kRem, buf, ind));
    o.push(`${ind}workgroupBarrier();`);
    o.push(emitCompute(tile, kRem, buf, ind, sumK));
    if (split) o.push("  }");
  }
  if (dyn || fullM < tilesM || fullN < tilesN) {
    o.push(`  if (tm < ${u32(fullM)} && tn < ${fullN}u) {`);
    o.push(emitEpilogue(epilogueSpec, tile, false, "    "));
    o.push("  } else {");
    o.push(emitEpilogue(epilogueSpec, tile, true, "    "));
    o.push("  }");
  } else {
    o.push(emitEpilogue(epilogueSpec, tile, false, "  "));
  }
  if (sumK) o.push(emitSumStore(spec, tile, !!split));
  o.push("}");
  return o.join("\n") + "\n";
}
