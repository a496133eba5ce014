/**
 * WGSL emission for implicit GEMMs: C[m, n] = sum_k A(m, k) · B(k, n) where A and B are not
 * stored matrices but gathers (a convolution's weights and the im2col view of its input),
 * and C is scattered by a caller-supplied store. The convolution kernels of plan.ts
 * are all instances.
 *
 * Same tiling as the matmul (../matmul/plan.ts): a TM x TN output tile per workgroup, TK-deep
 * k-slices staged in workgroup memory as vec4 rows [k][m/4] and [k][n/4], RM x RN outputs
 * per thread in "split" layout, and the register-blocked, fully unrolled fma block is the
 * matmul's own `emitCompute`. Differences: loads are scalar gathers whose address (and a
 * padding test) the operand computes on the fly, and every load tests k < kEnd, so there is
 * no separate tail slice (a partial last slice just loads zeros). The next slice is fetched
 * into registers while the current one is multiplied, like the matmul.
 *
 * @module
 */

import { emitCompute } from "../matmul/emit.ts";
import type { MatmulTile } from "../matmul/plan.ts";

/** One operand of an implicit GEMM, as WGSL snippets. */
export interface GemmOperand {
  /** Extent along the operand's non-k dimension (M for A, N for B); WGSL when run-time. */
  X: number | string;
  /**
   * True when neighbouring k are neighbouring addresses: then neighbouring threads load
   * neighbouring k (coalesced); otherwise neighbouring x.
   */
  kFast: boolean;
  /**
   * Per-thread constants for one load unit: WGSL statements defining names that start with
   * `v`, given `x` (a u32 expression, the operand's row/column; may be >= X, then unused) and
   * `uk` (the unit's k offset inside every slice: k = slice start + uk).
   */
  setup: (v: string, x: string, uk: string) => string[];
  /**
   * One element at k (a u32 expression, < K) = k0 + uk, k0 the slice start (a multiple of
   * TK, so index math that depends only on k mod TK can live in `setup`): statements (`pre`,
   * may define names starting with `v`), the value, and an extra validity test or null.
   */
  load: (v: string, k: string, k0: string) => {
    pre: string[];
    value: string;
    cond: string | null;
  };
}

/** Everything the emitter needs besides the operands. */
export interface GemmSpec {
  M: number;
  N: number;
  K: number;
  /** Split K into this many ranges of `chunk` (a multiple of TK) elements; 1 = no split. */
  parts: number;
  chunk: number;
  /**
   * N is read at run time from a uniform `dims` (x = N) that `bindings` declares, and the
   * grid follows it (`num_workgroups`): one source for every batch.
   */
  dynamicN?: boolean;
  /** Binding declarations (a_g and b_g are read by the operands, c_g written by `store`). */
  bindings: string[];
  /**
   * Statement storing `value` at output (m, n) (u32 expressions, in range); `s` names the
   * split index in scope.
   */
  store: (m: string, n: string, value: string) => string;
  label: string;
}

interface Side {
  name: "a" | "b";
  op: GemmOperand;
  T: number;
  x0: string;
}

/** Scalar load units per tile slice and rounds of `threads` to cover them. */
function roundsOf(T: number, TK: number, threads: number): number {
  return Math.ceil((T * TK) / threads);
}

function emitSetup(side: Side, TK: number, threads: number): string[] {
  const { name: n, op, T, x0 } = side;
  const units = T * TK;
  const out: string[] = [];
  for (let it = 0; it < roundsOf(T, TK, threads); it++) {
    const u = `(lid + ${it * threads}u)`;
    const v = `${n}${it}`;
    // The fast dimension varies between neighbouring threads, so their loads coalesce.
    const x = op.kFast ? `${u} / ${TK}u` : `${u} % ${T}u`;
    const k = op.kFast ? `${u} % ${TK}u` : `${u} / ${T}u`;
    out.push(`  let ${v}_x = ${x};`, `  let ${v}_k = ${k};`);
    const conds = [`${x0} + ${v}_x < ${typeof op.X === "number" ? `${op.X}u` : op.X}`];
    if (units % threads !== 0) conds.push(`${u} < ${units}u`);
    out.push(`  let ${v}_ok = ${conds.join(" && ")};`);
    out.push(...op.setup(v, `(${x0} + ${v}_x)`, `${v}_k`).map((s) => "  " + s));
    out.push(`  var ${v}_r = 0.0;`);
  }
  return out;
}

/** Loads the slice starting at k0 (WGSL u32 expression) into the registers. */
function emitFetch(side: Side, TK: number, threads: number, k0: string, ind: string): string[] {
  const { name: n, op, T } = side;
  const out: string[] = [];
  for (let it = 0; it < roundsOf(T, TK, threads); it++) {
    const v = `${n}${it}`;
    const kk = `${v}_kk`;
    const { pre, value, cond } = op.load(v, kk, k0);
    const body = cond ? `if (${cond}) { ${v}_r = ${value}; }` : `${v}_r = ${value};`;
    out.push(
      `${ind}{ let ${kk} = ${k0} + ${v}_k; ${v}_r = 0.0; ` +
        `if (${v}_ok && ${kk} < k_end) { ${[...pre, body].join(" ")} } }`,
    );
  }
  return out;
}

/** Registers -> workgroup memory (zeros where the unit was out of range). */
function emitShare(side: Side, TK: number, threads: number, ind: string): string[] {
  const { name: n, T } = side;
  const units = T * TK;
  const out: string[] = [];
  for (let it = 0; it < roundsOf(T, TK, threads); it++) {
    const v = `${n}${it}`;
    const st = `sh_${n}[${v}_k][${v}_x / 4u][${v}_x % 4u] = ${v}_r;`;
    out.push(
      ind + (units % threads !== 0 ? `if (lid + ${it * threads}u < ${units}u) { ${st} }` : st),
    );
  }
  return out;
}

/** The complete shader; `grid` is the (folded) dispatch size. */
export function generateImplicitGemm(
  spec: GemmSpec,
  a: GemmOperand,
  b: GemmOperand,
  tile: MatmulTile,
  grid: [number, number, number],
): string {
  const { M, N, K, parts, chunk } = spec;
  const { TM, TN, TK, RM, RN } = tile;
  const threads = (TM / RM) * (TN / RN);
  const tilesM = Math.ceil(M / TM);
  // A shape-generic N (spec.dynamicN: the batch of images) is dims.x at run time.
  const dyn = !!spec.dynamicN;
  const tilesN = dyn ? `((dims.x + ${TN - 1}u) / ${TN}u)` : `${Math.ceil(N / TN)}u`;
  const tiles = dyn ? `(${tilesM}u * ${tilesN})` : `${tilesM * Math.ceil(N / TN)}u`;
  const total = dyn ? `${tiles} * ${parts}u` : `${tilesM * Math.ceil(N / TN) * parts}u`;
  const sa: Side = { name: "a", op: a, T: TM, x0: "m0" };
  const sb: Side = { name: "b", op: b, T: TN, x0: "n0" };
  const o: string[] = [];
  const shown = dyn ? "*" : N;
  o.push(`// ${spec.label}: implicit GEMM ${M}x${shown}x${K}, tile ${TM}x${TN}x${TK}, ${RM}x${RN}`);
  o.push(...spec.bindings);
  o.push(`var<workgroup> sh_a: array<array<vec4<f32>, ${TM / 4}>, ${TK}>;`);
  o.push(`var<workgroup> sh_b: array<array<vec4<f32>, ${TN / 4}>, ${TK}>;`);
  o.push("");
  o.push(`@compute @workgroup_size(${threads})`);
  o.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
      "@builtin(local_invocation_index) lid: u32" +
      (dyn ? ", @builtin(num_workgroups) nwg: vec3<u32>) {" : ") {"),
  );
  if (dyn) o.push("  let lin = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;");
  else o.push(`  let lin = wid.x + wid.y * ${grid[0]}u + wid.z * ${grid[0] * grid[1]}u;`);
  // Workgroup-uniform exit: barriers below stay legal.
  if (dyn || grid[0] * grid[1] * grid[2] > tilesM * Math.ceil(N / TN) * parts) {
    o.push(`  if (lin >= ${total}) { return; }`);
  }
  o.push(`  let s = lin / ${tiles};`);
  o.push(`  let t = lin % ${tiles};`);
  // Column-major tile order: consecutive workgroups share the A (weight) tile.
  o.push(`  let m0 = (t % ${tilesM}u) * ${TM}u;`);
  o.push(`  let n0 = (t / ${tilesM}u) * ${TN}u;`);
  o.push(`  let k_begin = s * ${chunk}u;`);
  o.push(`  let k_end = min(k_begin + ${chunk}u, ${K}u);`);
  o.push(`  let slices = (k_end - k_begin + ${TK - 1}u) / ${TK}u;`);
  o.push(`  let tx = lid % ${TN / RN}u;`);
  o.push(`  let ty = lid / ${TN / RN}u;`);
  o.push(...emitSetup(sa, TK, threads), ...emitSetup(sb, TK, threads));
  for (let r = 0; r < RM; r++) {
    const accs: string[] = [];
    for (let j = 0; j < RN / 4; j++) accs.push(`var c${r}_${j} = vec4<f32>();`);
    o.push("  " + accs.join(" "));
  }
  o.push(...emitFetch(sa, TK, threads, "k_begin", "  "));
  o.push(...emitFetch(sb, TK, threads, "k_begin", "  "));
  o.push(`  for (var kt = 0u; kt < slices; kt++) {`);
  o.push(...emitShare(sa, TK, threads, "    "), ...emitShare(sb, TK, threads, "    "));
  o.push("    workgroupBarrier();");
  // Prefetch the next slice (past the end it loads nothing: every load tests k < k_end).
  o.push(`    { let kn = k_begin + (kt + 1u) * ${TK}u;`);
  o.push(...emitFetch(sa, TK, threads, "kn", "    "), ...emitFetch(sb, TK, threads, "kn", "    "));
  o.push("    }");
  o.push(emitCompute(tile, TK, null, "    "));
  o.push("    workgroupBarrier();");
  o.push("  }");
  o.push(emitStores(spec, tile));
  o.push("}");
  return o.join("\n") + "\n";
}

/** Scalar, guarded stores of every accumulator through `spec.store`. */
function emitStores(spec: GemmSpec, tile: MatmulTile): string {
  const { TM, TN, RM, RN } = tile;
  const ty = TM / RM, tx = TN / RN;
  const out: string[] = [];
  for (let i = 0; i < RM / 4; i++) {
    for (let r = 0; r < 4; r++) {
      const row: string[] = [];
      for (let j = 0; j < RN / 4; j++) {
        for (let c = 0; c < 4; c++) {
          const n = `(n0 + ${4 * j * tx + c}u + 4u * tx)`;
          const st = spec.store("m", n, `c${i * 4 + r}_${j}.${"xyzw"[c]}`);
          row.push(`if (${n} < ${spec.dynamicN ? "dims.x" : `${spec.N}u`}) { ${st} }`);
        }
      }
      out.push(
        `  { let m = m0 + ${4 * i * ty + r}u + 4u * ty; if (m < ${spec.M}u) { ${row.join(" ")} } }`,
      );
    }
  }
  return out.join("\n");
}
