/**
 * Elementwise ops and their gradient rules, one table row each. A unary rule's backward is a
 * single fused WGSL expression over `a` = incoming gradient, `b` = input x, `c` = output y.
 */
import { record } from "../core/autograd.ts";
import type { DType } from "../core/dtype.ts";
import type { Tensor } from "../core/tensor.ts";
import { f32 } from "../codegen/wgsl.ts";
import { broadcastShapes, mapKernel } from "./map.ts";
import { sumTo } from "./reduce.ts";

const GELU_C = "0.7978845608028654"; // sqrt(2/pi)
const SQRT1_2_NEG = "-0.7071067811865476"; // -1/sqrt(2)
const INV_SQRT_2PI = "0.3989422804014327"; // 1/sqrt(2 pi)

/** Forward expression of x (`a`), backward expression of (g = a, x = b, y = c). */
const UNARY = {
  neg: { fwd: "-a", bwd: "-a" },
  exp: { fwd: "exp(a)", bwd: "a * c" },
  log: { fwd: "log(a)", bwd: "a / b" },
  sqrt: { fwd: "sqrt(a)", bwd: "a * 0.5 / c" },
  rsqrt: { fwd: "inverseSqrt(a)", bwd: "-0.5 * a * c * c * c" },
  tanh: { fwd: "tanh_(a)", bwd: "a * (1.0 - c * c)" },
  sigmoid: { fwd: "1.0 / (1.0 + exp(-a))", bwd: "a * c * (1.0 - c)" },
  relu: { fwd: "max(a, 0.0)", bwd: "select(0.0, a, b > 0.0)" },
  abs: { fwd: "abs(a)", bwd: "a * sign(b)" },
  // GPT-2's tanh approximation.
  gelu: {
    fwd: `0.5 * a * (1.0 + tanh_(${GELU_C} * (a + 0.044715 * a * a * a)))`,
    bwd: `a * gelu_grad(b)`,
  },
  // The exact form x * Phi(x) = 0.5 x erfc(-x / sqrt(2)) (PyTorch's nn.GELU() default).
  gelu_erf: { fwd: `0.5 * a * erfc_(${SQRT1_2_NEG} * a)`, bwd: `a * gelu_erf_grad(b)` },
  silu: { fwd: "a / (1.0 + exp(-a))", bwd: "a * silu_grad(b)" },
  mish: { fwd: "a * tanh_(softplus(a))", bwd: "a * mish_grad(b)" },
} as const;

/** Names of the unary ops. */
export type UnaryOp = keyof typeof UNARY;

// WGSL's tanh overflows to NaN for large |x| on some drivers; these helpers are stable.
const HELPERS = `
fn tanh_(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn softplus(x: f32) -> f32 { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn gelu_grad(x: f32) -> f32 {
  let u = ${GELU_C} * (x + 0.044715 * x * x * x);
  let t = tanh_(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * ${GELU_C} * (1.0 + 3.0 * 0.044715 * x * x);
}
// erfc by Numerical Recipes' Chebyshev fit (erfcc): relative error < 1.2e-7 for every x, so
// the GELU's negative tail (x Phi(x) for x << 0) keeps its relative accuracy too.
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(-z * z + p);
  return select(2.0 - r, r, x >= 0.0);
}
// d/dx x Phi(x) = Phi(x) + x phi(x).
fn gelu_erf_grad(x: f32) -> f32 {
  return 0.5 * erfc_(${SQRT1_2_NEG} * x) + x * ${INV_SQRT_2PI} * exp(-0.5 * x * x);
}
fn silu_grad(x: f32) -> f32 { let s = sigm(x); return s * (1.0 + x * (1.0 - s)); }
fn mish_grad(x: f32) -> f32 {
  let t = tanh_(softplus(x));
  return t + x * (1.0 - t * t) * sigm(x);
}
`;

function unaryKernel(label: string, inputs: readonly Tensor[], expr: string, dtype: DType): Tensor {
  return mapKernel(label, inputs, expr, dtype, undefined, HELPERS);
}

/** Apply a unary op with its gradient rule. */
export function unary(op: UnaryOp, x: Tensor): Tensor {
  const rule = UNARY[op];
  const y = unaryKernel(op, [x], rule.fwd, x.dtype === "f16" ? "f16" : "f32");
  return record(y, op, [x], (g) => [unaryKernel(`${op}.grad`, [g, x, y], rule.bwd, "f32")]);
}

/** -x */
export const neg = (x: Tensor): Tensor => unary("neg", x);
/** e^x */
export const exp = (x: Tensor): Tensor => unary("exp", x);
/** Natural log. */
export const log = (x: Tensor): Tensor => unary("log", x);
/** Square root. */
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);
/** 1 / sqrt(x). */
export const rsqrt = (x: Tensor): Tensor => unary("rsqrt", x);
/** Hyperbolic tangent. */
export const tanh = (x: Tensor): Tensor => unary("tanh", x);
/** Logistic sigmoid. */
export const sigmoid = (x: Tensor): Tensor => unary("sigmoid", x);
/** max(x, 0). */
export const relu = (x: Tensor): Tensor => unary("relu", x);
/** |x|. */
export const abs = (x: Tensor): Tensor => unary("abs", x);
/** GELU, GPT-2's tanh form. */
export const gelu = (x: Tensor): Tensor => unary("gelu", x);
/** GELU, the exact form x * Phi(x) with the normal CDF through erf (PyTorch's `nn.GELU()`). */
export const geluErf = (x: Tensor): Tensor => unary("gelu_erf", x);
/** SiLU / swish: x * sigmoid(x). */
export const silu = (x: Tensor): Tensor => unary("silu", x);
/** Mish: x * tanh(softplus(x)). */
export const mish = (x: Tensor): Tensor => unary("mish", x);

/** Binary ops: forward expression of (a, b); gradient expressions of (g = a, x = b, y = c). */
const BINARY = {
  add: { fwd: "a + b", ga: "a", gb: "a" },
  sub: { fwd: "a - b", ga: "a", gb: "-a" },
  mul: { fwd: "a * b", ga: "a * c", gb: "a * b" },
  div: { fwd: "a / b", ga: "a / c", gb: "-a * b / (c * c)" },
} as const;

/** Names of the binary ops. */
export type BinaryOp = keyof typeof BINARY;

/**
 * Apply a binary op with numpy broadcasting. For `ga`/`gb` the kernel inputs are (g, x, y)
 * where x, y are the forward operands a, b; gradients are summed back to each input's shape.
 */
export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const rule = BINARY[op];
  const out = mapKernel(op, [a, b], rule.fwd);
  return record(out, op, [a, b], (g) => {
    // An identity rule (add, sub's first operand) needs no kernel: the gradient is g itself,
    // as a view (its own tensor, so disposing one input's gradient leaves the other's), or
    // its sum over the broadcast axes.
    const pass = (shape: readonly number[]) =>
      g.shape.join() === shape.join() ? g.view(shape) : sumTo(g, shape);
    const ga = !a.requiresGrad
      ? null
      : rule.ga === "a"
      ? pass(a.shape)
      : sumTo(mapKernel(`${op}.grad_a`, [g, a, b], rule.ga), a.shape);
    const gb = !b.requiresGrad
      ? null
      : rule.gb === "a"
      ? pass(b.shape)
      : sumTo(mapKernel(`${op}.grad_b`, [g, a, b], rule.gb), b.shape);
    return [ga, gb];
  });
}

/** a + b (broadcasting). */
export const add = (a: Tensor, b: Tensor): Tensor => binary("add", a, b);
/** a - b (broadcasting). */
export const sub = (a: Tensor, b: Tensor): Tensor => binary("sub", a, b);
/** a * b (broadcasting). */
export const mul = (a: Tensor, b: Tensor): Tensor => binary("mul", a, b);
/** a / b (broadcasting). */
export const div = (a: Tensor, b: Tensor): Tensor => binary("div", a, b);

/** x * s + t for scalars s, t. */
export function affine(x: Tensor, scale: number, shift = 0): Tensor {
  const out = mapKernel("affine", [x], `a * ${f32(scale)} + ${f32(shift)}`);
  return record(out, "affine", [x], (g) => [mapKernel("affine.grad", [g], `a * ${f32(scale)}`)]);
}

/** x + s. */
export const addScalar = (x: Tensor, s: number): Tensor => affine(x, 1, s);
/** x * s. */
export const mulScalar = (x: Tensor, s: number): Tensor => affine(x, s, 0);

/**
 * WGSL for `v`^p. WGSL's `pow` is undefined for negative bases, so integer exponents use
 * repeated products (small |p|) or |v|^p with the sign restored (odd p).
 */
function powExpr(v: string, p: number): string {
  if (p === 0) return "1.0";
  if (!Number.isInteger(p)) return `pow(${v}, ${f32(p)})`;
  if (Math.abs(p) <= 4) {
    const prod = Array(Math.abs(p)).fill(v).join(" * ");
    return p > 0 ? `(${prod})` : `(1.0 / (${prod}))`;
  }
  const mag = `pow(abs(${v}), ${f32(p)})`;
  return p % 2 === 0 ? mag : `(sign(${v}) * ${mag})`;
}

/** x^p for a scalar exponent p (x > 0 unless p is an integer). */
export function powScalar(x: Tensor, p: number): Tensor {
  const out = mapKernel("pow", [x], powExpr("a", p));
  return record(out, "pow", [x], (g) => {
    const d = p === 0 ? "0.0" : p === 1 ? "a" : `a * ${f32(p)} * ${powExpr("b", p - 1)}`;
    return [mapKernel("pow.grad", [g, x], d)];
  });
}

/** cond ? a : b, where `cond` is nonzero (any dtype). Broadcasting. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const out = mapKernel("where", [cond, a, b], "select(c, b, a != 0.0)");
  return record(out, "where", [cond, a, b], (g) => [
    null,
    a.requiresGrad
      ? sumTo(mapKernel("where.grad_a", [g, cond], "select(0.0, a, b != 0.0)"), a.shape)
      : null,
    b.requiresGrad
      ? sumTo(mapKernel("where.grad_b", [g, cond], "select(a, 0.0, b != 0.0)"), b.shape)
      : null,
  ]);
}

/** Comparisons give 1.0 / 0.0 (no gradient). */
export function compare(op: "gt" | "ge" | "lt" | "le" | "eq" | "ne", a: Tensor, b: Tensor): Tensor {
  const sym = { gt: ">", ge: ">=", lt: "<", le: "<=", eq: "==", ne: "!=" }[op];
  // Two integer operands of one dtype compare exactly (as f32, 2^24 + 1 == 2^24).
  const ints = a.dtype === b.dtype && (a.dtype === "i32" || a.dtype === "u32");
  return mapKernel(op, [a, b], `select(0.0, 1.0, a ${sym} b)`, "f32", undefined, "", ints);
}

/** Convert to another dtype (f32 <-> f16, float -> int truncates). Gradient passes as f32. */
export function cast(x: Tensor, dtype: DType): Tensor {
  // Integers convert directly (not through f32, which rounds beyond 2^24).
  const out = mapKernel(`cast.${dtype}`, [x], "a", dtype, undefined, "", true);
  return record(out, "cast", [x], (g) => [mapKernel("cast.grad", [g], "a", "f32")]);
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
  return mapKernel("full", [], f32(value), dtype, shape);
}

/** Zeros. */
export const zeros = (shape: readonly number[], dtype: DType = "f32"): Tensor =>
  full(shape, 0, dtype);
/** Ones. */
export const ones = (shape: readonly number[], dtype: DType = "f32"): Tensor =>
  full(shape, 1, dtype);

/** Broadcast `x` to `shape` (materialized). Its gradient sums back. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  // The kernel's index math assumes x broadcasts to exactly `shape`; check before dispatch.
  const b = broadcastShapes("expand", x.shape, shape);
  if (b.length !== shape.length || b.some((d, i) => d !== shape[i])) {
    throw new Error(`expand: cannot expand [${x.shape}] to [${shape}]`);
  }
  const out = mapKernel("expand", [x], "a", x.dtype, shape);
  return record(out, "expand", [x], (g) => [sumTo(g, x.shape)]);
}
