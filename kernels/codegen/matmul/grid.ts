/**
 * Dispatch-grid folding shared by the matmul kernels.
 *
 * @module
 */

/** Spreads `total` workgroups over x, y, z so no dimension exceeds `max`. */
export function foldGrid(total: number, max: number): [number, number, number] {
  const x = Math.min(total, max);
  const rest = Math.ceil(total / x);
  const y = Math.min(rest, max);
  const z = Math.ceil(rest / y);
  if (z > max) throw new Error(`matmul: ${total} workgroups exceed the dispatch limit`);
  return [x, y, z];
}
